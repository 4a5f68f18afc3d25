"""`shoulders bench retrieval`: the retrieval libraries we lean on, measured side by side.

1. BM25: bm25s against rank_bm25 with the same tokens and the same Okapi variant, on
   the SQuAD dev paragraphs and on a larger Zipf-distributed synthetic corpus
   (index build time, queries/s, top-k agreement).
2. FAISS: exact `flat` against `ivf` and `hnsw` on clustered synthetic vectors
   (dim 384, like MiniLM): build time, queries/s, index bytes, recall@k vs exact.
3. `scale=True`: IVF-PQ (alone and with its candidates re-scored by 8-bit vectors) and
   HNSW on `scale_n` clustered vectors (default 1M: about 15 min on an idle 2-core box, 3 of
   them building HNSW; `--scale-n 250000` for a quicker look).

Timings: one warm-up, then `repeats` runs, median reported. Builds of the large
FAISS indexes run once (minutes each); their query timings still use repeats.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np



def _timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, Any]:
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("bm25s", "rank-bm25", "faiss-cpu", "numpy", "sentence-transformers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "versions": versions, "load_avg_1m": os.getloadavg()[0],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _bm25_pair(docs: list[list[str]], queries: list[list[str]], name: str, repeats: int, k: int,
               rank_repeats: int) -> dict[str, Any]:
    """Time bm25s and rank_bm25 on the same tokens with the same Okapi variant
    (bm25s atire + robertson idf = rank_bm25 BM25Okapi with epsilon=0)."""
    import bm25s
    import rank_bm25

    def build_bm25s():
        m = bm25s.BM25(k1=1.5, b=0.75, method="atire", idf_method="robertson")
        m.index(docs, show_progress=False)
        return m

    t_bs, m = _timed(build_bm25s, repeats)
    t_rk, ref = _timed(lambda: rank_bm25.BM25Okapi(docs, k1=1.5, b=0.75, epsilon=0.0), rank_repeats)
    q_bs, (_, top_bs) = _timed(lambda: m.retrieve(queries, k=k, show_progress=False), repeats)
    q_rk, top_rk = _timed(lambda: [-np.sort(-ref.get_scores(q))[:k] for q in queries],
                          rank_repeats, warmup=0 if rank_repeats == 1 else 1)
    # Compare the top-k *scores*: ids can differ legitimately among tied scores.
    agree = float(np.mean([np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(top_bs, top_rk)]))
    return {"collection": name, "n_docs": len(docs), "n_queries": len(queries), "k": k,
            "bm25s": {"build_s": t_bs, "qps": len(queries) / q_bs},
            "rank_bm25": {"build_s": t_rk, "qps": len(queries) / q_rk},
            "build_speedup": t_rk / t_bs, "query_speedup": q_rk / q_bs, "topk_agreement": agree}


def zipf_corpus(n_docs: int, doc_len: int = 60, vocab: int = 50_000, seed: int = 0) -> list[list[str]]:
    """Token lists with Zipf-distributed words, like natural text's word frequencies."""
    rng = np.random.default_rng(seed)
    words = np.minimum(rng.zipf(1.2, size=(n_docs, doc_len)), vocab)
    return [[f"w{w}" for w in row] for row in words]


def bench_bm25(n_queries: int = 1000, repeats: int = 3, k: int = 10, data_path: str | None = None,
               synthetic_docs: int = 100_000) -> list[dict[str, Any]]:
    """SQuAD paragraphs (real text, small), then a larger Zipf corpus (fewer rank_bm25 queries)."""
    from shoulders.experiments.squad import load_squad
    from shoulders.reader.retrieval import BM25Config, BM25Retriever
    from shoulders.reader.retrieval.base import passage_text

    coll = load_squad(data_path)
    r = BM25Retriever(BM25Config(method="atire", idf_method="robertson"))
    docs = r.tokenize([passage_text(p) for p in coll.passages])
    queries = [q for q in r.tokenize([q.question for q in coll.questions[:n_queries]]) if q]
    out = [_bm25_pair(docs, queries, "SQuAD v1.1 dev paragraphs", repeats, k, repeats)]
    if synthetic_docs:
        docs = zipf_corpus(synthetic_docs)
        queries = [d[:5] for d in zipf_corpus(min(n_queries, 200), seed=1)]
        out.append(_bm25_pair(docs, queries, "synthetic Zipf text", repeats, k, rank_repeats=1))
    return out


def clustered_vectors(n: int, dim: int = 384, n_clusters: int = 1000, intrinsic_dim: int = 64, noise: float = 1.0,
                      seed: int = 0, chunk: int = 200_000) -> np.ndarray:
    """Unit vectors from a Gaussian mixture in `intrinsic_dim` dimensions, mapped linearly
    into `dim` (plus a little isotropic noise). Text embeddings are clustered and have a
    low intrinsic dimension; isotropic noise in 384-d has neither and makes every ANN
    index (PQ, HNSW) look far worse than on real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, intrinsic_dim), dtype=np.float32)
    proj = rng.standard_normal((intrinsic_dim, dim), dtype=np.float32) / np.sqrt(intrinsic_dim)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = centres[rng.integers(0, n_clusters, m)] + noise * rng.standard_normal((m, intrinsic_dim), dtype=np.float32)
        x = z @ proj + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))


def _params(cfg) -> dict[str, int]:
    out = {}
    if cfg.index_type in ("ivf", "ivfpq"):
        out = {"nprobe": cfg.nprobe}
    if cfg.index_type == "hnsw":
        out = {"M": cfg.hnsw_m, "efConstruction": cfg.ef_construction, "efSearch": cfg.ef_search}
    if cfg.refine:
        out["k_factor"] = cfg.k_factor
    return out


def bench_faiss(configs: dict[str, Any], n: int, dim: int = 384, n_queries: int = 1000, k: int = 10,
                repeats: int = 3, build_repeats: int = 1, seed: int = 0) -> dict[str, Any]:
    """Build each config on the same vectors; recall@k of each against exact flat search."""
    from shoulders.reader.retrieval.faiss_index import FaissConfig, build_faiss_index, index_nbytes, search

    both = clustered_vectors(n + n_queries, dim, seed=seed)
    xb, xq = both[:n], both[n:]
    exact_cfg = FaissConfig(index_type="flat")
    rows: dict[str, Any] = {}
    exact_ids = None
    for name, cfg in {"flat (exact)": exact_cfg, **configs}.items():
        t_build, index = _timed(lambda cfg=cfg: build_faiss_index(xb, cfg, seed), build_repeats, warmup=0)
        t_query, (_, ids) = _timed(lambda index=index: search(index, xq, k), repeats)
        exact_ids = ids if exact_ids is None else exact_ids
        rows[name] = {"factory": cfg.factory_string(n), "build_s": t_build, "qps": n_queries / t_query,
                      "bytes": index_nbytes(index), f"recall@{k}": _recall(ids, exact_ids), "params": _params(cfg)}
        del index
    base = rows["flat (exact)"]
    for row in rows.values():
        row["qps_vs_exact"] = row["qps"] / base["qps"]
    return {"n": n, "dim": dim, "n_queries": n_queries, "k": k, "data": "clustered low-rank synthetic unit vectors",
            "indexes": rows}


def run_retrieval_bench(n_queries: int = 1000, repeats: int = 3, faiss_n: int = 100_000, scale: bool = False,
                        scale_n: int = 1_000_000, k: int = 10, data_path: str | None = None,
                        synthetic_docs: int = 100_000, command: str | None = None) -> tuple[dict[str, Any], str]:
    """Run the benchmark; return (result dict, markdown table)."""
    from shoulders.reader.retrieval.faiss_index import FaissConfig

    result: dict[str, Any] = {"machine": machine_info(), "command": command or " ".join(["shoulders", *sys.argv[1:]])}
    t0 = time.perf_counter()
    result["bm25"] = bench_bm25(n_queries, repeats, k, data_path, synthetic_docs)
    result["faiss"] = bench_faiss({
        "ivf": FaissConfig(index_type="ivf", nprobe=16),
        "hnsw": FaissConfig(index_type="hnsw", hnsw_m=32, ef_construction=80, ef_search=128),
    }, faiss_n, n_queries=n_queries, k=k, repeats=repeats)
    if scale:
        result["scale"] = bench_faiss({
            "ivfpq": FaissConfig(index_type="ivfpq", nlist=1024, nprobe=32, pq_m=48, pq_nbits=8),
            "ivfpq + SQ8 re-scoring": FaissConfig(index_type="ivfpq", nlist=1024, nprobe=32, pq_m=48, pq_nbits=8,
                                                  refine="SQ8", k_factor=4),
            "hnsw": FaissConfig(index_type="hnsw", hnsw_m=16, ef_construction=40, ef_search=64),
        }, scale_n, n_queries=n_queries, k=k, repeats=repeats)
    result["total_s"] = time.perf_counter() - t0
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]  # other jobs on the box skew timings
    return result, retrieval_markdown(result)


def _faiss_table(block: dict[str, Any]) -> list[str]:
    k = block["k"]
    lines = [f"| index | factory | build s | queries/s | x exact | recall@{k} | MB |", "|---|---|---|---|---|---|---|"]
    for name, r in block["indexes"].items():
        params = ", ".join(f"{a}={b}" for a, b in r["params"].items())
        lines.append(f"| {name}{f' ({params})' if params else ''} | `{r['factory']}` | {r['build_s']:.2f} | "
                     f"{r['qps']:,.0f} | {r['qps_vs_exact']:.1f} | {r[f'recall@{k}']:.3f} | {r['bytes'] / 2**20:,.1f} |")
    return lines


def retrieval_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = ", ".join(f"{p} {ver}" for p, ver in m["versions"].items())
    out = ["## Retrieval", "", f"Command: `{result['command']}`  ", f"Machine: {m['cpu']}, {m['cores']} cores; "
           f"Python {m['python']}; {v}; {m['date']}.  ",
           f"Load average (1 min) at start/end: {m.get('load_avg_1m', float('nan')):.1f} / "
           f"{m.get('load_avg_1m_end', float('nan')):.1f} (above the core count means other jobs shared the CPU).  ",
           "Medians of repeated runs after a warm-up (large FAISS builds and rank_bm25 on the Zipf corpus: one run).",
           "", "### BM25: bm25s vs rank_bm25 (same tokens, same Okapi variant)", "",
           "| collection | docs | queries | bm25s build s | rank_bm25 build s | bm25s q/s | rank_bm25 q/s "
           "| query speed-up | same top-k scores |", "|---|---|---|---|---|---|---|---|---|"]
    for b in result["bm25"]:
        out.append(f"| {b['collection']} | {b['n_docs']:,} | {b['n_queries']:,} | {b['bm25s']['build_s']:.2f} | "
                   f"{b['rank_bm25']['build_s']:.2f} | {b['bm25s']['qps']:,.0f} | {b['rank_bm25']['qps']:,.0f} | "
                   f"{b['query_speedup']:.1f}x | {b['topk_agreement']:.3f} |")
    out.append("")
    for key, title in (("faiss", "FAISS: exact vs approximate"), ("scale", "FAISS at scale")):
        if key in result:
            f = result[key]
            out += [f"### {title} ({f['n']:,} x {f['dim']} {f['data']}, {f['n_queries']} queries)", "",
                    *_faiss_table(f), ""]
    return "\n".join(out).rstrip() + "\n"


def write_benchmarks(result: dict[str, Any], markdown: str, root: str | Path = ".") -> tuple[Path, Path]:
    """Replace (or append) the `## Retrieval` section of BENCHMARKS.md, keeping the other
    sections, and write benchmarks/retrieval.json; both atomically (shared bench writer)."""
    from shoulders.bench.report import write_section

    return write_section(root, "Retrieval", markdown, "retrieval", result)


def add_retrieval_bench_arguments(p) -> None:
    """Flags for `shoulders bench retrieval` (the lead's bench parser calls this)."""
    p.add_argument("--queries", type=int, default=1000, help="questions / query vectors timed")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--faiss-n", type=int, default=100_000, help="vectors for the exact-vs-approximate FAISS table")
    p.add_argument("--scale", action="store_true", help="also IVF-PQ and HNSW on --scale-n vectors")
    p.add_argument("--scale-n", type=int, default=1_000_000,
                   help="vectors for --scale (1,000,000: about 15 min on an idle 2-core box; see BENCHMARKS.md)")
    p.add_argument("--synthetic-docs", type=int, default=100_000, help="Zipf BM25 corpus size (0: skip)")
    p.add_argument("--data", help="squad-v1.1-dev.json (default: $SHOULDERS_DATA or ../shared/data)")
    p.add_argument("--root", default=".", help="where BENCHMARKS.md and benchmarks/ live")
    p.add_argument("--no-write", action="store_true", help="print only")


def _command(args) -> str:
    """The command with every effective setting spelled out, so it reproduces the run."""
    parts = ["shoulders bench retrieval", f"--queries {args.queries}", f"--repeats {args.repeats}",
             f"--faiss-n {args.faiss_n}", f"--synthetic-docs {args.synthetic_docs}"]
    if args.scale:
        parts += ["--scale", f"--scale-n {args.scale_n}"]
    return " ".join(parts + ([f"--data {args.data}"] if args.data else []))


def run_retrieval_bench_command(args) -> int:
    result, table = run_retrieval_bench(args.queries, args.repeats, args.faiss_n, args.scale, args.scale_n,
                                        data_path=args.data, synthetic_docs=args.synthetic_docs,
                                        command=_command(args))
    print(table)
    if not args.no_write:
        for path in write_benchmarks(result, table, args.root):
            print(f"wrote {path}")
    return 0
