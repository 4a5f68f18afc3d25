"""Benches end to end on the tiniest backbones, one round: files written, sections kept.

Timings are never asserted (a shared CI machine makes them meaningless); only that
every number exists, is positive, and lands where it should.
"""
import json

import pytest
import torch

from shoulders.bench.report import replace_section
from shoulders.bench.runner import namespace, run_benches

OTHERS = "# Benchmarks\n\n## Retrieval\n\nkeep me\n\n### FAISS\n\nkeep too\n\n## Serving\n\nkeep serving\n"


def _args(tmp_path, bench, **kw):
    return namespace(bench=bench, root=str(tmp_path), repeats=1, warmup=0, threads=torch.get_num_threads(),
                     argv=["bench", bench, "--test"], **kw)


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "BENCHMARKS.md").write_text(OTHERS + "\n## Training step\n\nold table\n")
    return tmp_path


def _kept(text):
    assert "keep me" in text and "keep too" in text and "keep serving" in text
    assert text.index("## Retrieval") < text.index("## Serving")


def test_train_bench_writes_its_section_and_json(root):
    args = _args(root, "train", sizes="tiny,tiny-gpt2", methods="peft,pt,idpt,ft", batch=2, input_tokens=12,
                 target_tokens=3, prompt=4, ft_max_params=2e8, matmul_n=256)
    assert run_benches(["train"], args) == 0
    text = (root / "BENCHMARKS.md").read_text()
    _kept(text)
    assert "old table" not in text and text.count("## Training step") == 1
    assert "Command: `shoulders bench train --test`" in text and "### Targets" in text
    result = json.loads((root / "benchmarks" / "train.json").read_text())
    assert [s["backbone"] for s in result["sizes"]] == ["tiny", "tiny-gpt2"]
    for size in result["sizes"]:
        assert {"peft", "pt", "ft"} <= set(size["methods"])
        for row in size["methods"].values():
            assert row["step_s"] > 0 and row["peak_bytes"] > 0 and row["time_x_peft"] > 0
        assert size["pt_step_flops"] > 0 and size["pt_flops_per_s"] > 0
    assert result["machine"]["cores"] >= 1 and result["machine"]["versions"]["torch"]
    args.sizes, args.methods = "tiny", "pt"
    run_benches(["train"], args)  # again: still one section, others untouched
    text = (root / "BENCHMARKS.md").read_text()
    _kept(text)
    assert text.count("## Training step") == 1


def test_section_flag_writes_beside_the_main_table(root):
    """`--section` (a run at extra sizes) adds its own section and JSON; the main one stays."""
    args = _args(root, "train", sizes="tiny", methods="pt,idpt", batch=2, input_tokens=8, target_tokens=2, prompt=3,
                 ft_max_params=2e8, matmul_n=128, section="Training step at 35x the encoder")
    assert run_benches(["train"], args) == 0
    text = (root / "BENCHMARKS.md").read_text()
    _kept(text)
    assert "old table" in text and text.count("## Training step at 35x the encoder") == 1
    assert (root / "benchmarks" / "training_step_at_35x_the_encoder.json").is_file()
    assert not (root / "benchmarks" / "train.json").exists()


def test_generate_bench(root):
    args = _args(root, "generate", sizes="tiny", batch=2, input_tokens=6, prompt=3, new_tokens=4)
    assert run_benches(["generate"], args) == 0
    text = (root / "BENCHMARKS.md").read_text()
    _kept(text)
    assert "## Generation" in text and "old table" in text  # the training section is not ours to touch
    size = json.loads((root / "benchmarks" / "generate.json").read_text())["sizes"][0]
    assert size["greedy_rows_identical"] == 1.0  # same model, same prefix: the same greedy tokens as HF
    for mode in ("greedy", "sampled"):
        assert size["modes"][mode]["ours_tok_s"] > 0 and size["modes"][mode]["hf_tok_s"] > 0


def test_idpt_bench(root):
    args = _args(root, "idpt", sizes="tiny")
    assert run_benches(["idpt"], args) == 0
    text = (root / "BENCHMARKS.md").read_text()
    _kept(text)
    assert "## ID-PT overhead" in text
    result = json.loads((root / "benchmarks" / "idpt.json").read_text())
    if "skipped" not in result:
        row = result["sizes"][0]
        assert row["prefix_s"] > 0 and row["backbone_s"] > 0 and row["encoder_params"] > 0


def test_replace_section_keeps_the_others():
    text = OTHERS + "\n## Generation\n\nold\n\n### sub\n\nold sub\n\n## Last\n\nlast\n"
    new = replace_section(text, "Generation", "## Generation\n\nnew\n")
    assert "old" not in new.replace("## ", "") and "new" in new and "last" in new
    _kept(new)
    assert new.index("## Serving") < new.index("## Generation") < new.index("## Last")
    assert replace_section(new, "Generation", "## Generation\n\nnew\n") == new  # idempotent
    appended = replace_section("# Benchmarks\n", "Training step", "## Training step\n\nt\n")
    assert appended == "# Benchmarks\n\n## Training step\n\nt\n\n"


def test_cli_routes_benches(tmp_path, monkeypatch, capsys):
    from shoulders.cli import bench_cmd
    from shoulders.cli.main import main

    assert main(["bench", "generate", "--sizes", "tiny", "--repeats", "1", "--warmup", "0", "--batch", "1",
                 "--input-tokens", "4", "--new-tokens", "2", "--no-write", "--threads",
                 str(torch.get_num_threads())]) == 0
    assert "## Generation" in capsys.readouterr().out and not (tmp_path / "BENCHMARKS.md").exists()
    monkeypatch.setitem(bench_cmd.PLUGINS, "serve", ("shoulders.bench.no_such_bench", [], ["run_from_args"], "x"))
    assert main(["bench", "serve", "--anything"]) == 2
    assert "not available" in capsys.readouterr().err


def test_timing_helpers():
    from shoulders.bench.timing import alternate, paired_ratio, peak_memory

    order = []
    times = alternate({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, torch.device("cpu"),
                      repeats=2, warmup=1)
    assert order == ["a", "b", "b", "a", "a", "b"] and all(len(v) == 2 for v in times.values())
    assert paired_ratio([2.0, 4.0], [1.0, 1.0]) == 3.0

    def allocate():
        x = torch.ones(1 << 20)  # 4 MiB, freed on return
        return float(x.sum())

    assert peak_memory(allocate, torch.device("cpu")) >= 4 << 20


def test_step_flops_formula():
    from shoulders.bench.backbones import build_backbone
    from shoulders.bench.train import Workload, step_flops

    lm = build_backbone("tiny")
    w = Workload(batch=2, input_tokens=10, target_tokens=2, prompt=4)
    s, t = 16, 32
    n_mm = 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64)  # q, k+v (2 kv heads of 8), o, MLP
    expected = 4 * t * n_mm + 12 * 2 * 2 * s * s * 32 + 4 * 2 * 2 * 32 * 512
    assert step_flops(lm, w) == expected


def test_checkpointing_bench_same_gradients_less_memory(root, monkeypatch):
    import sys

    from shoulders.cli.main import main

    argv = ["bench", "checkpointing", "--sizes", "tiny,tiny-gpt2", "--long-sizes", "tiny", "--batch", "2",
            "--input-tokens", "12", "--long-input-tokens", "40", "--target-tokens", "3", "--prompt", "4",
            "--repeats", "1", "--warmup", "0", "--threads", str(torch.get_num_threads()), "--root", str(root)]
    monkeypatch.setattr(sys, "argv", ["shoulders", *argv])  # the command the section records
    assert main(argv) == 0
    text = (root / "BENCHMARKS.md").read_text()
    _kept(text)
    assert text.count("## Gradient checkpointing") == 1 and "old table" in text  # the training section stays
    assert "Command: `shoulders bench checkpointing --sizes tiny,tiny-gpt2" in text
    result = json.loads((root / "benchmarks" / "checkpointing.json").read_text())
    assert [(r["backbone"], r["input_tokens"]) for r in result["rows"]] == [("tiny", 12), ("tiny", 40),
                                                                           ("tiny-gpt2", 12)]
    for r in result["rows"]:
        assert r["layers"] == 2 and r["grad_match"] and r["grad_max_abs"] > 0
        assert r["grad_max_abs_diff"] <= 1e-6 * r["grad_max_abs"]
        assert r["step_s"]["without"] > 0 and r["step_s"]["with"] > 0 and r["time_ratio"] > 0
        # allocation events, not timings: deterministic, so the saving itself can be asserted
        assert 0 < r["peak_bytes"]["with"] < r["peak_bytes"]["without"]
