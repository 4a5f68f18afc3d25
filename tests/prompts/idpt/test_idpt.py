"""ID-PT: what is learned and what stays frozen, per-input prompts, batching, the module
format, P3 multi-task training through the config/Trainer/CLI, and real learning.

Encoders: the bundled pretrained MiniLM (loaded once per module and shared) and tiny
random T5 / BERT encoders built offline with the tests' BPE tokenizer.
"""
from pathlib import Path

import pytest
import torch

from shoulders.data.examples import Example
from shoulders.modules import ModuleFormatError, load_module, save_module
from shoulders.prompts.encoders import DEFAULT_ENCODER, FrozenEncoder
from shoulders.prompts.idpt import EncoderMismatchError, IDPTConfig, InputDependentPrompt

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"

MIXED = [  # different tasks, lengths and templates in one batch
    Example("Review: the film was great\nIs this review positive or negative?", "positive", task="sentiment"),
    Example("Q: what city is the capital of france? A:", "paris", task="qa"),
    Example("a sad story", "no", task="sentiment"),
    Example("Sentence 1: the cat was born in rome\nSentence 2: rome is where the cat was born\nSame?", "yes",
            task="paraphrase"),
]


def build_tiny_encoder(out_dir: Path, kind: str, seed: int = 0) -> Path:
    """A randomly initialised T5 encoder or BERT with the tests' tiny BPE tokenizer."""
    from transformers import BertConfig, BertModel, T5Config, T5EncoderModel

    from tests.helpers import train_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out_dir)
    torch.manual_seed(seed)
    if kind == "t5":
        model = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    else:
        model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id))
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def minilm():
    return FrozenEncoder.from_pretrained(DEFAULT_ENCODER)


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("t5"), "t5")


def make(lm, frozen: FrozenEncoder, **kw) -> InputDependentPrompt:
    """Build with an already loaded encoder (`kw["encoder"]` must name the same one)."""
    return InputDependentPrompt.build(IDPTConfig(**kw), lm, encoder=frozen)


def test_config_validation():
    cfg = IDPTConfig()
    assert (cfg.prompt_length, cfg.encoder, cfg.encoder_prompt_length, cfg.fixed_prompt_length) == (
        8, DEFAULT_ENCODER, 4, 0)
    assert IDPTConfig(encoder_prompt_length=0).encoder_prompt_length == 0
    for bad in ({"hidden_size": 30, "heads": 4}, {"prompt_length": 0}, {"pooling": "max"}, {"nope": 1}):
        with pytest.raises(ValueError):
            IDPTConfig(**bad)


def test_prefix_scale_and_only_module_gets_gradients(lm, minilm):
    m = make(lm, minilm, prompt_length=5, fixed_prompt_length=2, encoder_prompt_length=3, hidden_size=32)
    prefix = m.prefix(lm, MIXED)
    assert prefix.shape == (4, 2 + 5, lm.hidden_size)
    ratio = prefix[:, 2:].std().item() / lm.input_embeddings.weight.std().item()
    assert 0.5 < ratio < 2.0, ratio  # starts at the scale of the LM's token embeddings
    m.loss(lm, MIXED).backward()
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert {"encoder_prompt", "fixed_prompt"} <= trainable
    assert all(n in ("encoder_prompt", "fixed_prompt") or n.startswith("generator.") for n in trainable)
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in m.encoder.parameters())
    assert all(p.grad is None for p in lm.model.parameters())
    assert not any(k.startswith("encoder.model") for k in m.state_to_save())


def test_shared_prompt_starts_as_prompt_tuning_and_takes_its_own_lr(lm, minilm, tmp_path):
    """p(x) = P + g(x): at step 0 every input gets P exactly (g's output projection is
    zero); after a step g(x) differs per input; P sits in its own optimizer group."""
    m = make(lm, minilm, prompt_length=3, encoder_prompt_length=0, hidden_size=32, shared_prompt=True,
             shared_lr=0.05)
    with torch.no_grad():
        start = m.prefix(lm, MIXED)
    assert torch.equal(start, m.shared_prompt.detach().unsqueeze(0).expand(len(MIXED), -1, -1))
    ratio = m.shared_prompt.std().item() / lm.input_embeddings.weight.std().item()
    assert 0.5 < ratio < 2.0, ratio  # vocabulary-initialised, as prompt tuning is
    groups = m.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 0.05]
    assert groups[1]["params"] == [m.shared_prompt]
    assert sum(len(g["params"]) for g in groups) == len(list(m.trainable_parameters()))
    opt = torch.optim.AdamW(groups)
    m.loss(lm, MIXED).backward()
    assert m.generator.proj_out.weight.grad.abs().sum() > 0  # the generator learns from the first step
    opt.step()
    with torch.no_grad():
        after = m.prefix(lm, MIXED)
    assert (after[0] - after[1]).abs().max() > 0  # now input-dependent
    save_module(m, tmp_path / "m", lm)
    with torch.no_grad():
        assert torch.equal(load_module(tmp_path / "m", lm).eval().prefix(lm, MIXED), m.eval().prefix(lm, MIXED))
    assert make(lm, minilm, prompt_length=3, hidden_size=32).param_groups(0.1)[0]["lr"] == 0.1


def test_training_steps_leave_encoder_and_lm_bit_identical(lm, minilm):
    m = make(lm, minilm, prompt_length=4, encoder_prompt_length=2, hidden_size=32, dropout=0.1)
    enc_before = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    lm_before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    learned_before = {k: v.clone() for k, v in m.state_to_save().items()}
    m.train()
    assert not m.encoder.training and not m.encoder.model.training and m.generator.training
    opt = torch.optim.AdamW(list(m.trainable_parameters()), lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        m.loss(lm, MIXED).backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(v, m.encoder.state_dict()[k]) for k, v in enc_before.items())
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in lm_before.items())
    assert all(not torch.equal(v, m.state_to_save()[k]) for k, v in learned_before.items())


def test_per_input_prompts_and_batch_independence(lm, minilm):
    m = make(lm, minilm, prompt_length=3, encoder_prompt_length=2, hidden_size=32).eval()
    with torch.no_grad():
        batch = m.prefix(lm, MIXED)
        assert (batch[0] - batch[1]).abs().max() > 1e-3 * batch.abs().max()  # different inputs, different p(x)
        ids = m.encode_inputs(lm, MIXED)
        tgt = m.encode_targets(lm, [ex.target for ex in MIXED])
        rows = lm(batch, ids, tgt).row_logprob(len(MIXED))
        for i, ex in enumerate(MIXED):
            alone = m.prefix(lm, [ex])
            torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(rows[i : i + 1], lm(alone, ids[i : i + 1], tgt[i : i + 1]).row_logprob(1),
                                       atol=1e-4, rtol=1e-4)


def test_encoder_cache_without_encoder_prompt(lm, t5_dir):
    """With nothing learned before the encoder, its outputs are memoised per input and the
    prompts are unchanged; a module with an encoder prompt never uses the cache."""
    enc = FrozenEncoder.from_pretrained(str(t5_dir))
    m = make(lm, enc, encoder=str(t5_dir), encoder_prompt_length=0, prompt_length=3, hidden_size=16, heads=2).eval()
    with torch.no_grad():
        plain = m.prefix(lm, MIXED)
        enc.enable_cache()
        first, again = m.prefix(lm, MIXED), m.prefix(lm, MIXED[::-1])
    assert len(enc._cache) == len(MIXED)
    torch.testing.assert_close(first, plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again, plain.flip(0), atol=1e-5, rtol=1e-4)
    tuned = make(lm, enc, encoder=str(t5_dir), encoder_prompt_length=2, prompt_length=3, hidden_size=16, heads=2)
    tuned.loss(lm, MIXED).backward()
    assert tuned.encoder_prompt.grad.abs().sum() > 0 and len(enc._cache) == len(MIXED)


def test_precomputed_encoder_states_depend_only_on_the_set(lm, t5_dir):
    """`precompute` encodes a set of inputs in one canonical order: two encoders given the
    same set in different orders hold bit-identical states; the same set again is free; a
    different set rebuilds the cache from scratch; `cache_paused` keeps it."""
    first, second = FrozenEncoder.from_pretrained(str(t5_dir)), FrozenEncoder.from_pretrained(str(t5_dir))
    kw = {"encoder": str(t5_dir), "encoder_prompt_length": 0, "prompt_length": 3, "hidden_size": 16, "heads": 2}
    a, b = make(lm, first, **kw).eval(), make(lm, second, **kw).eval()
    with torch.no_grad():
        plain = a.prefix(lm, MIXED)
        assert not a.precompute_encoder(MIXED)  # no cache enabled: nothing to fill
        first.enable_cache()
        second.enable_cache()
        b.prefix(lm, MIXED[:1])  # a history the precompute must not depend on
        assert a.precompute_encoder(MIXED) and b.precompute_encoder(MIXED[::-1])
        assert not a.precompute_encoder(MIXED[::-1])  # the same set: nothing recomputed
        held = list(first._precomputed)
        assert held == sorted(held, key=lambda k: (len(k), k)) and len(held) == len(MIXED)  # canonical order
        assert held == list(second._precomputed) and not second._cache  # b's earlier history is gone
        assert all(torch.equal(first._precomputed[k], second._precomputed[k]) for k in held)
        torch.testing.assert_close(a.prefix(lm, MIXED), plain, atol=1e-5, rtol=1e-4)
        first.enable_cache(max_entries=1)  # a tiny LRU: other inputs must not evict the precomputed set
        a.precompute_encoder(MIXED)
        a.prefix(lm, [Example(input="an input outside the set", target="x")])
        a.prefix(lm, [Example(input="another one", target="x")])
        assert len(first._precomputed) == len(MIXED) and len(first._cache) == 1
        assert not a.precompute_encoder(MIXED)
        assert a.precompute_encoder(MIXED[:1]) and len(first._precomputed) == 1  # another set: rebuilt, not mixed
        with first.cache_paused():
            assert not first.caching
        assert first.caching and len(first._precomputed) == 1


def test_save_load_round_trip_exact(lm, minilm, tmp_path):
    m = make(lm, minilm, prompt_length=3, fixed_prompt_length=1, hidden_size=32)
    with torch.no_grad():
        for p in m.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))  # not the initialisation: load must restore these
    save_module(m, tmp_path / "m", lm)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert not any(k.startswith("encoder.") for k in saved) and set(saved) == set(m.state_to_save())
    back = load_module(tmp_path / "m", lm)
    assert back.frozen_components() == m.frozen_components()
    assert len(back.frozen_components()["encoder"]["embedding_fingerprint"]) == 16
    with torch.no_grad():
        assert torch.equal(back.eval().prefix(lm, MIXED), m.eval().prefix(lm, MIXED))


def test_t5_encoder_trains_saves_and_loads(lm, t5_dir, tmp_path):
    m = InputDependentPrompt.build(IDPTConfig(encoder=str(t5_dir), prompt_length=4, hidden_size=16, heads=2), lm)
    assert type(m.encoder.model).__name__ == "T5EncoderModel"
    m.loss(lm, MIXED).backward()
    assert m.encoder_prompt.grad.abs().sum() > 0
    save_module(m, tmp_path / "t5", lm)
    back = load_module(tmp_path / "t5", lm)
    with torch.no_grad():
        assert torch.equal(back.eval().prefix(lm, MIXED), m.eval().prefix(lm, MIXED))


def test_mismatched_or_missing_encoder_is_refused(lm, tmp_path):
    enc = build_tiny_encoder(tmp_path / "enc", "bert", seed=0)
    m = InputDependentPrompt.build(IDPTConfig(encoder=str(enc), prompt_length=2, hidden_size=16, heads=2), lm)
    save_module(m, tmp_path / "m", lm)
    build_tiny_encoder(enc, "bert", seed=1)  # same architecture and path, other weights
    with pytest.raises(EncoderMismatchError, match="embedding_fingerprint: module has") as err:
        load_module(tmp_path / "m", lm)
    assert str(enc) in str(err.value)
    import shutil

    shutil.rmtree(enc)
    with pytest.raises(ModuleFormatError, match="could not be loaded"):
        load_module(tmp_path / "m", lm)


def test_p3_mixture_through_config_trainer_and_cli(tiny_dirs, tmp_path):
    """P3 files (inputs_pretokenized / targets_pretokenized / answer_choices) train ID-PT via
    the example config and the `shoulders train` command."""
    from shoulders.cli.main import main
    from shoulders.train import load_config

    cfg_path = ROOT / "configs" / "idpt_tiny_cpu.yaml"
    sets = [f"backbone.name_or_path={tiny_dirs['llama']}", "train.steps=3", "train.eval_every=3",
            f"output_dir={tmp_path / 'run'}", "module.hidden_size=32"]
    cfg = load_config(cfg_path, sets)
    assert cfg.method == "idpt" and [t.name for t in cfg.tasks] == ["p3_sentiment", "p3_qa"]
    assert main(["train", str(cfg_path), "--no-progress"] + [a for s in sets for a in ("--set", s)]) == 0
    import json

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert set(history["eval"][-1]["tasks"]) == {"p3_sentiment", "p3_qa"}
    from shoulders.backbone import FrozenLM

    lm = FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")
    module = load_module(tmp_path / "run" / "final", lm)
    preds = module.predict(lm, [Example("the film was great\nyes or no?", "yes", choices=["no", "yes"])])
    assert preds[0] in ("no", "yes")


def test_idpt_learns_a_skill_behind_a_prompt(minilm, tmp_path_factory):
    """The tiny LM knows the review skill only behind a mode word; p(x) learns to supply it."""
    from shoulders.backbone import FrozenLM
    from shoulders.train import Trainer, evaluate, load_config
    from tests.helpers import mode_task, pretrain_tiny_backbone

    path = pretrain_tiny_backbone(tmp_path_factory.mktemp("skill") / "gpt2", "gpt2")
    lm = FrozenLM.from_pretrained(path, dtype="float32", device="cpu")
    task = mode_task()
    cfg = load_config(data={
        "method": "idpt", "backbone": {"name_or_path": str(path), "device": "cpu"},
        "module": {"prompt_length": 4, "encoder_prompt_length": 0, "layers": 1, "hidden_size": 64},
        "optim": {"lr": 3e-3}, "output_dir": str(tmp_path_factory.mktemp("run")),
        "train": {"steps": 50, "batch_size": 16, "eval_every": 0, "eval_max_examples": 100},
    })
    module = InputDependentPrompt.build(cfg.module_config(), lm, encoder=minilm)
    before = evaluate(module, lm, [task], split="test")["average"]
    result = Trainer(cfg, backbone=lm, tasks=[task], module=module, progress=False).fit()
    after = evaluate(load_module(result.best_dir, lm), lm, [task], split="test")["average"]
    assert before < 60.0 and after >= 90.0, (before, after)


def test_encoder_prompt_and_a_long_input_fit_the_encoder_positions(lm, tmp_path):
    """The learned encoder prompt takes positions too: a long input is cut to what is left."""
    bert = FrozenEncoder.from_pretrained(build_tiny_encoder(tmp_path / "bert", "bert"))  # 128 positions
    m = make(lm, bert, encoder=str(tmp_path / "bert"), prompt_length=3, encoder_prompt_length=4,
             max_encoder_tokens=512, hidden_size=32)
    hidden, mask = m.encode([Example("word " * 400, "x")])
    assert hidden.shape[1] == 128 and int(mask.sum()) == 128
    assert torch.isfinite(m.loss(lm, [Example("word " * 400, "x")]))
