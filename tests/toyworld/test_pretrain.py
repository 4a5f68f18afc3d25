"""Smoke test of the pre-training pipeline on a tiny world: 30 steps, tiny models.

Real knowledge acquisition takes minutes and is checked by `python -m shoulders.toyworld`
(see the module docs for the figures), not here.
"""
import json

import pytest

from shoulders.toyworld import ModelConfig, TrainConfig, ensure_backbones, fewshot_eval
from shoulders.toyworld import pretrain as pt
from tests.toyworld.conftest import tiny_config

TINY_MODELS = (ModelConfig("toy-small", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                           max_positions=128),
               ModelConfig("toy-large", hidden_size=48, num_layers=2, num_heads=2, intermediate_size=96,
                           max_positions=128))


def _cfg():
    return tiny_config(models=TINY_MODELS, train=TrainConfig(seq_len=128, batch_size=4, max_steps=30,
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
    monkeypatch.setattr(pt, "pretrain", lambda m, t, tok, docs, out, progress: seen.append(m.name))
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
    from dataclasses import replace

    from shoulders.toyworld import TOY_SMALL

    base = pt.config_hash(TOY_SMALL, TrainConfig())
    assert base == pt.config_hash(TOY_SMALL, TrainConfig(threads=3))
    assert base != pt.config_hash(replace(TOY_SMALL, lr=1e-3), TrainConfig())
    assert base != pt.config_hash(TOY_SMALL, TrainConfig(seed=1))
