"""`shoulders bench precision` at toy sizes, one round: structure, files, the markdown.

No timing is asserted (a shared machine makes them meaningless); only that every number
exists and lands where it should, and that the score comparison is made at equal weights.
"""
import json
import sys

import pytest
import torch

from shoulders.bench.precision import PrecisionWorkload, pretrain_shape, synthetic_examples
from shoulders.cli.main import main
from shoulders.toyworld.pretrain import resolve_compile

TINY = ["--questions", "2", "--score-questions", "3", "--batch", "2", "--seq-len", "64", "--repeats", "1",
        "--warmup", "0", "--threads", str(torch.get_num_threads())]


def test_synthetic_examples_have_the_asked_lengths():
    from transformers import AutoTokenizer

    from shoulders.prompts.encoders import DEFAULT_ENCODER, resolve_encoder_path

    w = PrecisionWorkload()
    exs = synthetic_examples(4, w, seed=0)
    assert exs == synthetic_examples(4, w, seed=0)  # seeded
    tok = AutoTokenizer.from_pretrained(resolve_encoder_path(DEFAULT_ENCODER))
    for ex in exs:
        assert len(ex.meta["negatives"]) == w.negatives
        assert len(tok.tokenize(ex.input)) == w.question_words  # one word piece per word
        for text in (ex.target, *ex.meta["negatives"]):
            assert len(tok.tokenize(text)) == w.passage_words
        content = ex.input.split()[1:-1]
        assert set(content) <= set(ex.target.split())  # the positive holds the question's content words


def test_precision_bench_writes_its_section_and_json(tmp_path, monkeypatch):
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\n## Retrieval\n\nkeep me\n")
    argv = ["bench", "precision", "--sizes", "tiny", *TINY, "--root", str(tmp_path), "--no-compile"]
    monkeypatch.setattr(sys, "argv", ["shoulders", *argv])  # the command the section records
    assert main(argv) == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "keep me" in text and text.count("## Precision: float32 vs bf16 autocast") == 1
    assert "Command: `shoulders bench precision --sizes tiny" in text and "bf16 units (AVX512-BF16 or AMX)" in text
    assert "| what | fp32 median s | bf16 median s | speedup |" in text
    result = json.loads((tmp_path / "benchmarks" / "precision.json").read_text())
    assert isinstance(result["cpu_has_bf16"], bool) and result["cpu"] and result["device"] == "cpu"
    assert [r["key"] for r in result["rows"]] == ["reranker_train", "reranker_score", "pretrain:tiny"]
    for r in result["rows"]:
        assert r["what"] in text
        for p in ("fp32", "bf16"):
            assert r["step_s"][p] > 0 and len(r["times"][p]) == 1
        assert r["speedup"] > 0
    train, score, pre = result["rows"]
    assert train["pairs"] == 2 * 5 and 20 < train["mean_pair_tokens"] <= 64
    assert all(v == v for v in (*train["first_loss"].values(), *pre["last_loss"].values()))  # no NaN
    assert score["pairs"] == 3 * 5 and 0 <= score["top1_agreement"] <= 1
    # same weights both ways: bf16 moves the scores a little, not wholesale
    assert 0 <= score["max_abs_score_diff"] < 0.1 * score["max_abs_score"]
    assert pre["hidden"] == 32 and pre["layers"] == 2 and pre["params"] > 0
    assert 0 < pre["grad_rel_diff_vs_fp32"]["bf16"] < 0.2  # bf16 rounds the gradient, it does not change it
    assert "Pre-training numerics: one step's gradient" in text
    assert set(pre["step_s"]) == {"fp32", "bf16"} and "compile_speedup" not in pre
    assert result["workload"]["compile"] is False


@pytest.mark.skipif(not resolve_compile("auto"), reason="no C++ compiler for inductor")
def test_the_compiled_step_is_timed_beside_bf16(tmp_path):
    assert main(["bench", "precision", "--sizes", "tiny", *TINY, "--root", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "benchmarks" / "precision.json").read_text())
    train, score, pre = result["rows"]
    assert pre["step_s"]["bf16+compile"] > 0 and pre["compile_speedup"] > 0 and result["workload"]["compile"]
    assert 0 < pre["grad_rel_diff_vs_fp32"]["bf16+compile"] < 0.2
    assert "compile_speedup" not in train and "compile_speedup" not in score  # pre-training rows only
    assert "bf16 + torch.compile median s (over bf16)" in (tmp_path / "BENCHMARKS.md").read_text()


def test_pretrain_shape_names():
    from shoulders.errors import ShouldersError
    from shoulders.toyworld.pretrain import TOY_LARGE, TOY_SMALL

    assert pretrain_shape("toy-small")[0] == TOY_SMALL and pretrain_shape("toy-large")[0] == TOY_LARGE
    with pytest.raises(ShouldersError, match="gpt2"):
        pretrain_shape("gpt2")  # not a Llama: not a toy backbone's shape


def test_bad_sizes_and_devices_are_user_errors(capsys):
    assert main(["bench", "precision", "--sizes", "gpt2", *TINY, "--no-write"]) == 2
    assert "not a toy backbone" in capsys.readouterr().err
    assert main(["bench", "precision", "--device", "cuda", *TINY, "--no-write"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_backbone_sweep_step_speed_uses_the_bench():
    from shoulders.experiments.backbone_sweep import step_speed

    rows = step_speed(shapes=((32, 2, 64),), steps=2, vocab=300)
    assert len(rows) == 1 and rows[0]["hidden"] == 32 and rows[0]["layers"] == 2
    assert rows[0]["fp32_s"] > 0 and rows[0]["bf16_s"] > 0 and rows[0]["speedup"] > 0


def test_workloads_whose_texts_cannot_be_built_name_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="passage_words=8: at least question_words - 1 = 9"):
        PrecisionWorkload(question_words=10, passage_words=8)
    with pytest.raises(ValidationError, match="question_words=1000: at most"):
        PrecisionWorkload(question_words=1000, passage_words=2000)
    w = PrecisionWorkload(question_words=10, passage_words=9)  # the smallest positive that holds them all
    ex = synthetic_examples(1, w, seed=0)[0]
    assert len(ex.target.split()) == 9 and set(ex.input.split()[1:-1]) <= set(ex.target.split())
