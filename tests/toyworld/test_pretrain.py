"""Smoke test of the pre-training pipeline on a tiny world: 30 steps, tiny models.

Real knowledge acquisition takes minutes and is checked by `shoulders experiment knowledge`
(see the module docs for the figures), not here.
"""
import json

import pytest

from shoulders.toyworld import ModelConfig, PretrainConfig, ensure_backbones, fewshot_eval
from shoulders.toyworld import pretrain as pt
from tests.toyworld.conftest import tiny_config

TINY_MODELS = (ModelConfig(name="toy-small", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                           max_positions=128),
               ModelConfig(name="toy-large", hidden_size=48, num_layers=2, num_heads=2, intermediate_size=96,
                           max_positions=128))


def _cfg():
    return tiny_config(models=TINY_MODELS, train=PretrainConfig(seq_len=128, batch_size=4, max_steps=30,
                                                             warmup_steps=5, threads=1))


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("toycache")
    return root, ensure_backbones(seed=0, config=_cfg(), cache_dir=root, progress=False)


def test_pretraining_saves_loadable_backbones_that_learnt(backbones):
    from transformers import AutoModelForCausalLM

    root, paths = backbones
    assert set(paths) == {"toy-small", "toy-large"}
    small = json.loads((paths["toy-small"] / "pretrain.json").read_text())
    large = json.loads((paths["toy-large"] / "pretrain.json").read_text())
    assert small["steps"] == 30 and small["tokens_seen"] > 0
    assert small["final_loss"] < small["first_loss"] - 1.0
    assert large["params"] > 1.5 * small["params"]
    model = AutoModelForCausalLM.from_pretrained(paths["toy-small"])
    assert model.config.tie_word_embeddings and model.config.max_position_embeddings == 128
    assert not list(root.glob("*/.tmp-*"))  # nothing half-written left behind


def test_backbones_are_reused_not_retrained(backbones, monkeypatch):
    root, paths = backbones
    monkeypatch.setattr(pt, "pretrain", lambda *a, **k: pytest.fail("retrained a cached backbone"))
    assert ensure_backbones(seed=0, config=_cfg(), cache_dir=root, progress=False) == paths


def test_cache_key_follows_config_and_corpus(backbones, monkeypatch, tmp_path):
    root, paths = backbones
    seen = []
    monkeypatch.setattr(pt, "pretrain", lambda m, t, tok, docs, out, **kw: seen.append(m.name))
    other = _cfg()
    other.train.lr = 1e-3  # a new training config: a new backbone
    ensure_backbones(seed=0, config=other, cache_dir=root, names=("toy-small",), progress=False)
    monkeypatch.setattr("shoulders.toyworld.bundle.build_corpus", lambda w, c: ["changed text"] * 4)
    ensure_backbones(seed=0, config=_cfg(), cache_dir=root, names=("toy-small",), progress=False)
    assert seen == ["toy-small", "toy-small"]  # the corpus text itself is part of the key
    monkeypatch.setenv("SHOULDERS_CACHE", str(tmp_path))
    assert pt.cache_root() == tmp_path / "toyworld"


def test_tokenizer_and_frozen_backbone_loading(backbones):
    from shoulders.backbone import FrozenLM

    _, paths = backbones
    lm = FrozenLM.from_pretrained(paths["toy-small"], dtype="float32", device="cpu")
    tok = lm.tokenizer
    ids = tok("Q: Where was he born? A:")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.pad_token_id not in (None, tok.eos_token_id)
    assert tok.decode(ids, skip_special_tokens=True) == "Q: Where was he born? A:"
    assert lm.max_context == 128


def test_fewshot_eval_runs_on_a_backbone(backbones, data):
    _, paths = backbones
    qs = data.closedbook.test[:6]
    res = fewshot_eval(paths["toy-small"], qs, data.closedbook.train)
    assert res.n == 6 and 0.0 <= res.em <= 1.0 and len(res.predictions) == 6
    assert "hops=1" in res.by_group


def test_config_hash_ignores_unset_options_and_threads():
    from shoulders.toyworld import TOY_SMALL

    base = pt.config_hash(TOY_SMALL, PretrainConfig())
    assert base == pt.config_hash(TOY_SMALL, PretrainConfig(threads=3))
    assert base != pt.config_hash(TOY_SMALL.model_copy(update={"lr": 1e-3}), PretrainConfig())
    assert base != pt.config_hash(TOY_SMALL, PretrainConfig(seed=1))
    assert base == pt.config_hash(TOY_SMALL.model_copy(update={"epochs": None}), PretrainConfig())
    assert base != pt.config_hash(TOY_SMALL.model_copy(update={"epochs": 2.0}), PretrainConfig())


def test_a_models_own_epochs_override_the_shared_ones(tmp_path):
    """A token budget per size: the model's `epochs` wins over PretrainConfig.epochs."""
    from shoulders.toyworld.tokenizer import train_tokenizer

    docs = [f"Q: Where was Ana {i} born? A: Tamwick" for i in range(40)]
    tok = train_tokenizer(docs)
    n_rows = len(pt.pack(tok, docs, 32))
    cfg = PretrainConfig(seq_len=32, batch_size=4, warmup_steps=2, threads=1)
    longer = TINY_MODELS[0].model_copy(update={"epochs": 2.5})
    assert pt.pretrain(longer, cfg, tok, docs, tmp_path / "m", progress=False)["steps"] == int(n_rows * 2.5) // 4
    assert pt.pretrain(TINY_MODELS[0], cfg, tok, docs, tmp_path / "n", progress=False)["steps"] == n_rows // 4


def test_doc_mask_keeps_each_packed_document_alone():
    """With restarting position ids, a packed document gives the logits it gives alone,
    whatever precedes it in the row (transformers' packed-sequence mask)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    row = torch.tensor([[1, 5, 6, 7, 2, 1, 8, 9, 2, 0]])
    other = row.clone()
    other[0, 2] = 11  # change the first document only
    pos = pt.doc_positions(row, bos_id=1)
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]
    packed = model(input_ids=row, position_ids=pos, use_cache=False).logits
    changed = model(input_ids=other, position_ids=pt.doc_positions(other, 1), use_cache=False).logits
    alone = model(input_ids=row[:, 5:9]).logits
    torch.testing.assert_close(packed[:, 5:], changed[:, 5:])
    torch.testing.assert_close(packed[:, 5:9], alone)
    assert (packed[:, 2:5] - changed[:, 2:5]).abs().max() > 1e-3  # the first document did change


def test_warmup_rows_come_first_once_then_the_corpus_passes():
    import torch

    order = pt.row_order(3, 5, 2, torch.Generator().manual_seed(0)).tolist()
    assert sorted(order[:3]) == [0, 1, 2]
    assert sorted(order[3:8]) == sorted(order[8:]) == [3, 4, 5, 6, 7]
    assert pt.row_order(0, 4, 1, torch.Generator().manual_seed(0)).tolist() == \
        torch.randperm(4, generator=torch.Generator().manual_seed(0)).tolist()  # no warm-up: as before


def test_copy_warmup_rows_repeat_random_runs_and_come_first(tmp_path):
    import torch

    from shoulders.toyworld.tokenizer import train_tokenizer

    docs = [f"Q: Where was Ana {i} born? A: Tamwick" for i in range(40)]
    tok = train_tokenizer(docs)
    rows = pt.copy_rows(tok, 3, 64, torch.Generator().manual_seed(0))
    assert rows.shape == (3, 64) and pt.copy_rows(tok, 0, 64, torch.Generator()).shape == (0, 64)
    for row in rows.tolist():
        row = [t for t in row if t != tok.pad_token_id]
        cut = [i for i, t in enumerate(row) if t == tok.bos_token_id] + [len(row)]
        for a, b in zip(cut, cut[1:]):
            body = row[a + 1:b - 1]  # between <bos> and <eos>
            half = len(body) // 2
            assert row[b - 1] == tok.eos_token_id and body[:half] == body[half:] and len(set(body[:half])) == half
            assert min(body) >= 3 + 256
    cfg = PretrainConfig(seq_len=32, batch_size=4, warmup_steps=2, threads=1, copy_warmup_steps=3)
    stats = pt.pretrain(TINY_MODELS[0], cfg, tok, docs, tmp_path / "m", progress=False)
    assert stats["steps"] == 3 + len(pt.pack(tok, docs, 32)) // 4
    assert stats["copy_warmup_tokens"] > 0 and stats["corpus_tokens"] > 0


def test_copy_mix_adds_copy_rows_to_every_pass(tmp_path):
    from shoulders.toyworld.tokenizer import train_tokenizer

    docs = [f"Q: Where was Ana {i} born? A: Tamwick" for i in range(40)]
    tok = train_tokenizer(docs)
    n_rows = len(pt.pack(tok, docs, 32))
    cfg = PretrainConfig(seq_len=32, batch_size=4, warmup_steps=2, threads=1, copy_mix=0.5)
    stats = pt.pretrain(TINY_MODELS[0], cfg, tok, docs, tmp_path / "m", progress=False)
    assert stats["steps"] == 2 * n_rows // 4  # as many copy rows as corpus rows at a 0.5 share
    assert stats["copy_mix_tokens"] > 0 and stats["copy_warmup_tokens"] == 0
    with pytest.raises(ValueError, match="copy_mix"):  # a share in [0, 1): refused by the config itself
        PretrainConfig(seq_len=32, copy_mix=1.0)



def test_a_cache_miss_says_what_changed_since_the_cached_backbone(backbones, monkeypatch, caplog):
    root, paths = backbones
    record = json.loads((paths["toy-small"] / "key.json").read_text())
    assert record["corpus.n_passes"] == _cfg().corpus.n_passes and "corpus_text_sha256" in record
    monkeypatch.setattr(pt, "pretrain", lambda *a, **k: None)
    other = _cfg()
    other.corpus.n_passes += 1
    with caplog.at_level("INFO", logger="shoulders.toyworld.pretrain"):
        ensure_backbones(seed=0, config=other, cache_dir=root, names=("toy-small",), progress=False)
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "shoulders.toyworld.pretrain"]
    assert f"corpus.n_passes: {_cfg().corpus.n_passes} -> {other.corpus.n_passes}" in msg
    assert "corpus_text_sha256" in msg and "pre-training anew" in msg


def test_an_empty_cache_says_it_pre_trains(tmp_path):
    msg = pt.cache_miss_message(tmp_path / "abc" / "toy-small", {"corpus.n_passes": 1})
    assert msg.startswith("toy-small: no cached backbone in ")


def test_compile_resolves_and_only_on_changes_the_cache_key(monkeypatch):
    from shoulders.toyworld import TOY_SMALL

    monkeypatch.delenv("TORCHDYNAMO_DISABLE", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    assert pt.resolve_compile(None) is False and pt.resolve_compile("off") is False
    assert pt.resolve_compile("on") is True
    with pytest.raises(ValueError, match="compile"):
        PretrainConfig(compile="yes")

    def key(compile):
        return pt.config_hash(TOY_SMALL, pt.resolved(PretrainConfig(compile=compile)))

    eager, on = key(None), key("on")
    assert eager != on and key("off") == eager  # off hashes as runs before the option did
    monkeypatch.setattr(pt.shutil, "which", lambda name: None)
    assert pt.resolve_compile("auto") is False and key("auto") == eager  # no C++ compiler: eager
    seen = []
    monkeypatch.setattr(pt.shutil, "which", lambda name: seen.append(name) or f"/usr/bin/{name}")
    assert pt.resolve_compile("auto") is True and key("auto") == on
    assert seen[0] in ("g++", "clang++")  # the compiler inductor itself calls
    monkeypatch.setenv("CXX", "my-cxx")
    pt.resolve_compile("auto")
    assert seen[-1] == "my-cxx"
    monkeypatch.setenv("TORCHDYNAMO_DISABLE", "1")  # torch.compile would run eager: so must the key
    assert pt.resolve_compile("auto") is False and key("auto") == eager


def test_a_compile_that_cannot_build_names_the_setting(tmp_path, monkeypatch):
    from shoulders.errors import ShouldersError
    from shoulders.toyworld.tokenizer import train_tokenizer

    def broken(model, **kwargs):
        return lambda **batch: (_ for _ in ()).throw(RuntimeError("no Python.h"))

    monkeypatch.setattr(pt.torch, "compile", broken)
    docs = [f"Q: Where was Ana {i} born? A: Tamwick" for i in range(40)]
    cfg = PretrainConfig(seq_len=32, batch_size=4, warmup_steps=2, threads=1, compile="on")
    with pytest.raises(ShouldersError, match="PretrainConfig.compile.*no Python.h.*'off'"):
        pt.pretrain(TINY_MODELS[0], cfg, train_tokenizer(docs), docs, tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()  # nothing half-written


@pytest.mark.skipif(not pt.resolve_compile("auto"), reason="no C++ compiler for inductor")
def test_a_compiled_pretraining_is_deterministic_and_learns_as_eager(tmp_path):
    import torch
    from safetensors.torch import load_file

    from shoulders.toyworld.tokenizer import train_tokenizer

    docs = [f"Q: Where was Ana {i} born? A: Tamwick" for i in range(40)]
    tok = train_tokenizer(docs)
    runs = {}
    for name, compile in (("c1", "on"), ("c2", "on"), ("eager", None)):
        cfg = PretrainConfig(seq_len=32, batch_size=4, warmup_steps=2, threads=1, compile=compile, precision="fp32")
        runs[name] = pt.pretrain(TINY_MODELS[0], cfg, tok, docs, tmp_path / name, progress=False)
    assert runs["c1"]["compiled"] and not runs["eager"]["compiled"]
    assert runs["c1"]["train"]["compile"] == "on" and runs["eager"]["train"]["compile"] is None
    w1, w2 = (load_file(tmp_path / n / "model.safetensors") for n in ("c1", "c2"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # same seed, same machine: the same weights
    assert runs["c1"]["final_loss"] == pytest.approx(runs["eager"]["final_loss"], rel=1e-3)


def test_ensure_backbones_compile_override_has_its_own_cache_key(backbones, monkeypatch):
    """`shoulders demo --compile` pre-trains compiled backbones beside the eager ones: the
    override changes the key only when it resolves to on."""
    root, eager = backbones
    seen = []

    def fake_pretrain(model_cfg, train_cfg, tokenizer, docs, out_dir, progress=True):
        seen.append(pt.resolved(train_cfg).compile)
        out_dir.mkdir(parents=True)
        (out_dir / "pretrain.json").write_text("{}")

    monkeypatch.setattr(pt, "pretrain", fake_pretrain)
    assert ensure_backbones(seed=0, config=_cfg(), cache_dir=root, progress=False, compile="off") == eager
    assert seen == []  # the eager backbones are found: nothing pre-trained
    compiled = ensure_backbones(seed=0, config=_cfg(), cache_dir=root, progress=False, compile="on")
    assert seen == ["on", "on"] and all(compiled[n] != eager[n] for n in eager)
