"""`shoulders bench soak` end to end with a tiny count: the plumbing, not the figures.

50 requests of the seeded mix against a real server on the tiny test backbone, through
the CLI: nothing lost, every request accounted for, RSS figures present, the section and
the JSON written next to the other sections without touching them.
"""
import json

from shoulders.bench.soak import MIX
from shoulders.cli.main import main

OTHERS = "# Benchmarks\n\n## Retrieval\n\nkeep me\n\n## Serving\n\nkeep serving\n\n## Soak\n\nold soak\n"


def test_soak_with_50_requests(tmp_path, tiny_dirs):
    (tmp_path / "BENCHMARKS.md").write_text(OTHERS)
    assert main(["bench", "soak", "--requests", "50", "--concurrency", "4", "--sample-every", "0.5", "--max-tokens",
                 "8", "--backbone", str(tiny_dirs["llama"]), "--root", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "benchmarks" / "soak.json").read_text())
    assert result["requests_sent"] == 50 and result["stopped_by"] == "count"
    assert result["lost"] == 0 and result["passed"], result["lost_examples"]
    assert sum(result["outcomes"].values()) == 50  # every request has an outcome it was allowed to have
    assert result["outcomes"]["200"] > 0 and set(result["by_kind"]) <= set(MIX) and len(result["by_kind"]) >= 5
    rss = result["rss_mb"]
    assert 0 < rss["start"] <= rss["max"] and rss["after_warmup"] > 0 and rss["end"] > 0
    assert rss["growth_after_warmup"] == round(rss["end"] - rss["after_warmup"], 1)
    assert len(result["samples"]) >= 3 and result["samples"][-1]["requests"] == 50
    assert result["after"] == {"running_rows": 0, "queue": 0, "still_answering": True, "server_exited": False}
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "keep me" in text and "keep serving" in text and "old soak" not in text and text.count("## Soak") == 1
    section = text.split("## Soak", 1)[1]
    assert "Command: `shoulders" in section and "| requests sent |" in section and "after warm-up" in section
