import json

from shoulders.bench.retrieval import bench_faiss, retrieval_markdown, write_benchmarks
from shoulders.reader.retrieval import FaissConfig


def _result():
    faiss = bench_faiss({"hnsw": FaissConfig(index_type="hnsw", hnsw_m=8)}, n=1500, dim=16, n_queries=50,
                        k=5, repeats=1)
    machine = {"cpu": "test", "cores": 2, "python": "3", "versions": {"faiss-cpu": "x"}, "date": "today"}
    bm25 = [{"collection": "c", "n_docs": 3, "n_queries": 1, "k": 5, "bm25s": {"build_s": 1.0, "qps": 10.0},
             "rank_bm25": {"build_s": 2.0, "qps": 1.0}, "build_speedup": 2.0, "query_speedup": 10.0,
             "topk_agreement": 1.0}]
    return {"machine": machine, "command": "shoulders bench retrieval", "bm25": bm25, "faiss": faiss}


def test_faiss_bench_reports_exact_recall_one():
    res = _result()
    rows = res["faiss"]["indexes"]
    assert rows["flat (exact)"]["recall@5"] == 1.0 and 0.0 < rows["hnsw"]["recall@5"] <= 1.0
    assert rows["flat (exact)"]["qps_vs_exact"] == 1.0


def test_write_benchmarks_replaces_only_its_section(tmp_path):
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\n## Training\nkeep me\n\n## Retrieval\nold table\n\n## Serving\nkeep too\n")
    res = _result()
    md_path, json_path = write_benchmarks(res, retrieval_markdown(res), tmp_path)
    text = md_path.read_text()
    assert "keep me" in text and "keep too" in text and "old table" not in text
    assert text.count("## Retrieval") == 1 and text.index("## Training") < text.index("## Retrieval") < text.index("## Serving")
    assert json.loads(json_path.read_text())["command"] == "shoulders bench retrieval"
    write_benchmarks(res, retrieval_markdown(res), tmp_path)  # idempotent
    assert md_path.read_text() == text
