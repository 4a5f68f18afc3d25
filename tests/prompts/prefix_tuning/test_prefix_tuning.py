"""Prefix tuning: initialisation, gradients, save/load, generation, PEFT interchange,
the reader's prompt, training (the server is tested in tests/serving)."""
import json

import pytest
import torch

from shoulders.data.examples import Example
from shoulders.modules import load_module, save_module
from shoulders.prompts.prefix_tuning import PrefixTuning, PrefixTuningConfig
from shoulders.prompts.prefix_tuning.peft_io import export_peft, import_peft


def build(lm, **cfg) -> PrefixTuning:
    return PrefixTuning.build(PrefixTuningConfig(**{"num_virtual_tokens": 5, **cfg}), lm)


def test_text_init_is_the_backbone_reading_that_text(lm):
    """init: text starts the module as the frozen LM with the text before every input."""
    text = lm.encode(["the cat is happy"], add_special_tokens=False)[0]
    module = build(lm, num_virtual_tokens=len(text), init="text", init_text="the cat is happy")
    ids = lm.encode(["a red dog", "who is"])
    tgt = lm.encode_targets([" yes", " no no"])
    ours = lm(module.prefix(lm, []), ids, tgt).token_logprobs
    ref = lm(None, [text + i for i in ids], tgt).token_logprobs
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_shapes_seeds_and_gradients(lm):
    layers = lm.config.num_hidden_layers
    heads = getattr(lm.config, "num_key_value_heads", None) or lm.config.num_attention_heads
    head_dim = lm.hidden_size // lm.config.num_attention_heads
    module = build(lm)
    assert module.kv_shape == (layers, heads, head_dim)
    assert [n for n, _ in module.named_parameters()] == ["prompt_embeddings"]
    assert module.prompt_embeddings.shape == (5, layers * 2 * heads * head_dim)  # PEFT's layout
    assert module.prefix_length() == 5 and module.capabilities.batchable and module.capabilities.reader_prompt
    assert torch.equal(build(lm, seed=3).prompt_embeddings, build(lm, seed=3).prompt_embeddings)
    assert not torch.equal(build(lm, seed=3).prompt_embeddings, build(lm, seed=4).prompt_embeddings)
    rnd = build(lm, init="random", seed=1)
    assert torch.equal(rnd.prompt_embeddings, build(lm, init="random", seed=1).prompt_embeddings)
    loss = module.loss(lm, [Example("the cat", "yes"), Example("a dog", "no")])
    loss.backward()
    assert module.prompt_embeddings.grad is not None and module.prompt_embeddings.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())


def test_projection_reparameterises_the_prefix(lm):
    module = build(lm, init="random", projection=True, projection_hidden=16, seed=2)
    names = [n for n, _ in module.named_parameters()]
    assert names == ["embedding", "transform.0.weight", "transform.0.bias", "transform.2.weight", "transform.2.bias"]
    assert module.flat().shape[1] == module.kv_shape[0] * 2 * module.kv_shape[1] * module.kv_shape[2]
    again = build(lm, init="random", projection=True, projection_hidden=16, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), again.parameters()))
    module.loss(lm, [Example("the cat", "yes")]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    with pytest.raises(ValueError, match="set init: random"):
        PrefixTuningConfig(projection=True)
    with pytest.raises(ValueError, match="init_text"):
        PrefixTuningConfig(init="text")


@pytest.mark.parametrize("projection", [False, True])
def test_save_load_round_trip_and_generate(lm, tmp_path, projection):
    module = build(lm, init="random", projection=projection, seed=5)
    save_module(module, tmp_path / "m", lm)
    meta = json.loads((tmp_path / "m" / "module.json").read_text())
    assert meta["module_type"] == "prefix_tuning" and meta["trainable_parameters"] == module.num_trainable()
    back = load_module(tmp_path / "m", lm)
    assert isinstance(back, PrefixTuning) and back.config == module.config
    assert all(torch.equal(a, b) for a, b in zip(back.parameters(), module.parameters()))
    back2 = PrefixTuning.from_pretrained(tmp_path / "m", backbone=lm)
    inputs = ["the cat", "a dog was born in paris and", "red"]
    gens = module.generate(lm, inputs, max_new_tokens=6)
    assert [g[0].token_ids for g in gens] == [g[0].token_ids for g in back2.generate(lm, inputs, max_new_tokens=6)]
    for i, text in enumerate(inputs):  # a batch of rows computes what each row computes alone
        assert module.generate(lm, [text], max_new_tokens=6)[0][0].token_ids == gens[i][0].token_ids
    preds = module.predict(lm, [Example("the cat", "yes", choices=["yes", "no"]), Example("a dog", "x")])
    assert preds[0] in ("yes", "no") and isinstance(preds[1], str)


@pytest.mark.parametrize("projection", [False, True])
def test_peft_round_trip_gives_the_same_logits(lm, tmp_path, projection):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    module = build(lm, num_virtual_tokens=6, init="random", projection=projection, seed=1)
    export_peft(module, lm, tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "PREFIX_TUNING" and cfg["num_virtual_tokens"] == 6
    base = AutoModelForCausalLM.from_pretrained(lm.name_or_path)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = lm.encode(["the cat is happy", "a red dog"])
    with torch.no_grad():
        for row in ids:
            theirs = peft_model(input_ids=torch.tensor([row])).logits[0]  # [T, V]: no logits for the prefix
            layout = lm.layout(module.prefix(lm, []), [row])
            ours = lm.model_logits(lambda h: h[0], **lm.model_inputs(layout))[0]
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    back = import_peft(tmp_path / "adapter", lm, text={"template": "Q: {input}"})
    assert torch.equal(back.prompt_embeddings, module.flat().detach())
    assert back.config.text.template == "Q: {input}" and not back.config.projection


def test_peft_peft_written_adapter_imports(lm, tmp_path):
    """An adapter written by PEFT itself (get_peft_model + save_pretrained) imports with the same logits."""
    from peft import PrefixTuningConfig as PeftConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(lm.name_or_path),
                                PeftConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
    peft_model.save_pretrained(tmp_path / "theirs")
    module = import_peft(tmp_path / "theirs", lm)
    row = lm.encode(["the cat is happy"])[0]
    with torch.no_grad():
        theirs = peft_model(input_ids=torch.tensor([row])).logits[0]
        ours = lm.model_logits(lambda h: h[0], **lm.model_inputs(lm.layout(module.prefix(lm, []), [row])))[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_cli_export_and_import_peft(lm, tmp_path):
    from shoulders.cli.main import main

    module = build(lm, init="random", seed=7)
    save_module(module, tmp_path / "m", lm)
    assert main(["-q", "export-peft", str(tmp_path / "m"), str(tmp_path / "peft")]) == 0
    assert main(["-q", "import-peft", str(tmp_path / "peft"), str(tmp_path / "back"), "--backbone",
                 str(lm.name_or_path), "--template", "Q: {input} A:"]) == 0
    back = load_module(tmp_path / "back", lm)
    assert isinstance(back, PrefixTuning) and back.config.text.template == "Q: {input} A:"
    assert torch.equal(back.prompt_embeddings, module.prompt_embeddings)


def test_as_the_reader_prompt(lm, tmp_path):
    from shoulders.reader.reader import Reader, ReaderConfig

    cfg = ReaderConfig(prompt={"type": "prefix_tuning", "num_virtual_tokens": 3, "init": "random"},
                       packing={"answer_tokens": 4})
    reader = Reader.build(cfg, lm)
    assert reader.prefix_tokens == 3
    ex = [Example("who hunts mice?", "cat", meta={"context": "The cat hunts mice."})]
    reader.loss(lm, ex).backward()
    assert reader.prompt_module.prompt_embeddings.grad.abs().sum() > 0
    save_module(reader, tmp_path / "r", lm)
    back = load_module(tmp_path / "r", lm)
    assert back.generate(lm, ex, max_new_tokens=4)[0][0].token_ids == reader.generate(lm, ex, max_new_tokens=4)[0][0].token_ids


def test_prefix_tuning_learns(skill_gpt2, tmp_path):
    """Through the trainer, as prompt tuning's test: on a tiny LM that knows a skill only
    behind a mode word, a learned KV prefix unlocks it."""
    from shoulders.backbone import FrozenLM
    from shoulders.train import Trainer, evaluate, load_config
    from tests.helpers import mode_task

    lm = FrozenLM.from_pretrained(skill_gpt2, dtype="float32", device="cpu")
    task = mode_task()
    cfg = load_config(data={
        "method": "prefix_tuning", "backbone": {"name_or_path": str(skill_gpt2), "device": "cpu"},
        "module": {"num_virtual_tokens": 4}, "optim": {"lr": 0.1},
        "train": {"steps": 60, "batch_size": 16, "eval_every": 30, "eval_max_examples": 100},
        "output_dir": str(tmp_path / "run"),
    })
    trainer = Trainer(cfg, backbone=lm, tasks=[task], progress=False)
    before = evaluate(trainer.module, lm, [task], split="test")["average"]
    result = trainer.fit()
    best = load_module(result.best_dir, lm)
    assert isinstance(best, PrefixTuning)
    after = evaluate(best, lm, [task], split="test")["average"]
    assert before < 60.0 and after >= 90.0, (before, after)
