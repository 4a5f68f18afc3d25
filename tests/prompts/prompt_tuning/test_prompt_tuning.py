"""Prompt tuning: initialisation, gradients, learning, PEFT interchange."""
import pytest
import torch

from shoulders.data.examples import Example
from shoulders.prompts import PromptTuning, PromptTuningConfig
from shoulders.prompts.prompt_tuning.peft_io import export_peft, import_peft


def test_initialisations(lm):
    vocab = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=5, init="vocab"), lm)
    rows = lm.input_embeddings.weight
    assert all(any(torch.equal(r, e) for e in rows) for r in vocab.prompt.detach())
    text = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=7, init="text", init_text="the cat"), lm)
    ids = lm.encode(["the cat"], add_special_tokens=False)[0]
    assert torch.equal(text.prompt.detach()[0], rows[ids[0]])
    rnd = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=5, init="random", seed=3), lm)
    again = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=5, init="random", seed=3), lm)
    assert torch.equal(rnd.prompt, again.prompt)
    with pytest.raises(ValueError, match="init_text"):
        PromptTuningConfig(init="text")


def test_only_prompt_receives_gradients(lm):
    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=4), lm)
    loss = module.loss(lm, [Example("the cat", "yes"), Example("a dog", "no")])
    loss.backward()
    assert module.prompt.grad is not None and module.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())
    assert [n for n, _ in module.named_parameters()] == ["prompt"]


def test_peft_export_gives_same_logits(lm, tmp_path):
    from peft import PeftModel

    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=6, init="random", seed=1), lm)
    export_peft(module, lm, tmp_path / "adapter")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(lm.name_or_path)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = lm.encode(["the cat is happy"])
    with torch.no_grad():
        theirs = peft_model(input_ids=torch.tensor(ids)).logits[0]  # [6 + T, V]
        layout = lm.layout(module.prompt, ids)
        ours = lm.model_logits(lambda h: h[0], **lm.model_inputs(layout))[0]
    assert ours.shape == theirs.shape  # PEFT returns logits for the virtual tokens too
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    back = import_peft(tmp_path / "adapter", lm)
    assert torch.equal(back.prompt, module.prompt)


def test_prompt_tuning_learns(skill_gpt2, tmp_path_factory):
    """On a tiny LM that knows a skill only behind a mode word, a learned prompt unlocks it."""
    from shoulders.backbone import FrozenLM
    from shoulders.train import Trainer, evaluate, load_config
    from tests.helpers import mode_task

    path = skill_gpt2
    lm = FrozenLM.from_pretrained(path, dtype="float32", device="cpu")
    task = mode_task()
    out = tmp_path_factory.mktemp("run")
    cfg = load_config(data={
        "method": "prompt_tuning", "backbone": {"name_or_path": str(path), "device": "cpu"},
        "module": {"num_virtual_tokens": 4}, "optim": {"lr": 0.1},
        "train": {"steps": 60, "batch_size": 16, "eval_every": 30, "eval_max_examples": 100},
        "output_dir": str(out),
    })
    trainer = Trainer(cfg, backbone=lm, tasks=[task], progress=False)
    before = evaluate(trainer.module, lm, [task], split="test")["average"]
    result = trainer.fit()
    from shoulders.modules import load_module

    after = evaluate(load_module(result.best_dir, lm), lm, [task], split="test")["average"]
    assert before < 60.0  # without the mode word the LM mostly answers a topic
    assert after >= 90.0, (before, after)
    assert (out / "training_curve.png").stat().st_size > 1000
