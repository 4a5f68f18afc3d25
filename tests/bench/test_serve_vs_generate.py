"""`shoulders bench serve --vs-generate-only` end to end on the tiny Llama: the plumbing
and the fairness check, not the figures (a shared CI machine makes timings meaningless).

A real server process against transformers `generate` in the test process: both
scenarios land in the JSON with positive tokens/s and ratios, the section says the claim
and whether it was met, the other sections are kept, and every request's greedy tokens
from the server equal `generate`'s for the same soft prompt and input.
"""
import json

import torch

from shoulders.cli.main import main

OTHERS = "# Benchmarks\n\n## Retrieval\n\nkeep me\n\n## Serving\n\nold serving\n\n## Soak\n\nkeep soak\n"


def test_vs_generate_only(tmp_path, tiny_dirs, capsys):
    (tmp_path / "BENCHMARKS.md").write_text(OTHERS)
    threads = torch.get_num_threads()
    assert main(["bench", "serve", "--vs-generate-only", "--backbone", str(tiny_dirs["llama"]), "--modules", "3",
                 "--vs-new-tokens", "6", "--vs-prompt", "4", "--vs-input-tokens", "10", "--vs-concurrency", "4",
                 "--vs-alone-requests", "2", "--repeats", "1", "--threads", "1", "--root", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # the HF side's thread count is put back
    result = json.loads((tmp_path / "benchmarks" / "serve.json").read_text())
    assert "scenarios" not in result and "load_test" not in result  # only the comparison ran
    vs = result["vs_generate"]
    assert vs["threads"] == 1 and vs["modules"] == 3 and vs["claim"] == 1.0
    for scenario, n in (("alone", 2), ("concurrent", 4)):
        row = vs[scenario]
        assert row["requests"] == n and row["tokens"] == n * 6
        assert row["server_tok_s"] > 0 and row["hf_tok_s"] > 0 and row["server_x_hf"] > 0
        assert len(row["server_s"]) == len(row["hf_s"]) == 1
        # same greedy tokens, so the same work: the speeds compare like for like
        assert vs["identical"][scenario] == {"requests": n, "same": n, "mismatches": []}
    assert 1 <= vs["concurrent"]["server_rows_per_step"] <= 4
    assert vs["all_identical"] and vs["met"] == (min(vs["alone"]["server_x_hf"], vs["concurrent"]["server_x_hf"]) >= 1)
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "keep me" in text and "keep soak" in text and "old serving" not in text and text.count("## Serving") == 1
    section = text.split("## Serving", 1)[1].split("## Soak")[0]
    assert "### Against transformers `generate`" in section and ">= 1.0x" in section
    assert ("**met**" in section) == vs["met"] and "load average" in section
    assert "Greedy tokens identical to `generate`'s: 6 / 6 requests" in section
    assert "| scenario | server tokens/s |" in capsys.readouterr().out


def test_hf_generate_left_pads_rows_of_different_lengths(tiny_dirs):
    """A row's tokens do not depend on its batch: left padding and its own soft prompt."""
    from shoulders.backbone import FrozenLM
    from shoulders.bench.generate import hf_generate

    lm = FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")
    g = torch.Generator().manual_seed(0)
    rows = [torch.randn(n, lm.hidden_size, generator=g) * 0.02 for n in (7, 3, 5)]
    together = hf_generate(lm, rows, 5)
    assert [len(t) for t in together] == [5, 5, 5]
    assert together == [hf_generate(lm, [r], 5)[0] for r in rows]
