"""FullFinetune, the fine-tuned reference: it learns through the shared Trainer, saves all
its weights, and never touches the frozen backbone it was copied from."""
import torch

from shoulders.data.examples import Example
from shoulders.modules import load_module, save_module
from shoulders.modules.finetune import FinetuneConfig, FullFinetune


def test_copy_is_trainable_and_backbone_stays_frozen(lm):
    module = FullFinetune.build(FinetuneConfig(), lm)
    n_model = sum(p.numel() for p in lm.model.parameters())
    assert module.num_trainable() == n_model  # every weight of the copy (tied ones once)
    assert all(not p.requires_grad for p in lm.model.parameters()) and not lm.model.training
    module.loss(lm, [Example("the cat", "yes"), Example("a dog was sad", "no")]).backward()
    assert all(p.grad is None for p in lm.model.parameters())
    assert sum(p.grad.abs().sum() for p in module.trainable_parameters() if p.grad is not None) > 0
    assert module.prefix(lm, []) is None


def test_finetune_learns_and_original_backbone_untouched(tiny_dirs, tmp_path):
    """A random tiny Llama fine-tuned on a keyword task (a random LM that a prompt cannot steer)."""
    from shoulders.backbone import FrozenLM
    from shoulders.train import Trainer, evaluate, load_config
    from tests.tasks_fixture import keyword_task

    lm = FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")

    task = keyword_task(n_train=400, n_dev=60)
    before_weights = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cfg = load_config(data={
        "method": "finetune", "backbone": {"name_or_path": lm.name_or_path, "device": "cpu"},
        "optim": {"lr": 1e-2}, "output_dir": str(tmp_path / "run"),
        "train": {"steps": 60, "batch_size": 16, "eval_every": 0, "eval_max_examples": 60},
    })
    trainer = Trainer(cfg, backbone=lm, tasks=[task], progress=False)
    before = evaluate(trainer.module, lm, [task], split="test")["average"]
    result = trainer.fit()
    losses = [r["loss"] for r in result.history["train"]]
    assert losses[-1] < 0.5 * losses[0], losses
    loaded = load_module(result.final_dir, lm)
    after = evaluate(loaded, lm, [task], split="test")["average"]
    assert after >= 85.0 and after > before + 20, (before, after)
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in before_weights.items())
    assert not lm.model.training and all(not p.requires_grad for p in lm.model.parameters())


def test_save_load_round_trip_holds_all_weights(lm, tmp_path):
    module = FullFinetune.build(FinetuneConfig(), lm)
    with torch.no_grad():
        for p in module.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_module(module, tmp_path / "ft", lm)
    back = load_module(tmp_path / "ft", lm)
    assert all(torch.equal(v, back.state_to_save()[k]) for k, v in module.state_to_save().items())
    ex = [Example("the movie was great", "yes", choices=["yes", "no"])]
    assert back.eval().choice_logprobs(lm, ex) == module.eval().choice_logprobs(lm, ex)
    gen = back.generate(lm, ["the cat"], max_new_tokens=4)[0][0]
    assert gen.token_ids == module.generate(lm, ["the cat"], max_new_tokens=4)[0][0].token_ids
