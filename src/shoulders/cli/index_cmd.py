"""shoulders index build|query|eval-squad (the retrieval half of the frozen reader).

    shoulders index build --corpus FILE --kind bm25|dense|hybrid --out DIR [--index-type hnsw ...]
    shoulders index query DIR "question" -k 20
    shoulders index query DIR --questions FILE.jsonl -k 100 --out HITS.jsonl
    shoulders index eval-squad [--limit N] [--cache DIR] [--out REPORT.json] [--rerank [--rerank-set K=V ...]]

Each sub-command sets `func=run_index_command`, which returns a process exit code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shoulders.cli.common import add_output_args

# flag -> option name understood by make_retriever / load_index
BUILD_FLAGS = {
    "index_type": (str, "FAISS index: flat | ivf | hnsw | ivfpq"), "nlist": (int, "IVF cells (default 4*sqrt(N))"),
    "nprobe": (int, "IVF cells searched per query"), "hnsw_m": (int, "HNSW links per node"),
    "ef_construction": (int, "HNSW build beam"), "ef_search": (int, "HNSW query beam"),
    "pq_m": (int, "IVF-PQ sub-quantisers"), "pq_nbits": (int, "bits per PQ code"),
    "refine": (str, "re-score candidates with finer vectors: Flat | SQ8 | SQ4 | SQfp16"),
    "k_factor": (int, "refine: candidates re-scored per result"),
    "model": (str, "sentence-transformers directory (default: bundled all-MiniLM-L6-v2)"),
    "batch_size": (int, "encoder batch size"), "k1": (float, "BM25 k1"), "b": (float, "BM25 b"),
    "method": (str, "bm25s variant: lucene | robertson | atire | bm25l | bm25+"),
    "fusion": (str, "hybrid: rrf | minmax"), "alpha": (float, "hybrid minmax: dense weight"),
    "depth": (int, "hybrid: candidates fetched from each retriever"),
}
QUERY_FLAGS = ("nprobe", "ef_search", "k_factor", "fusion", "alpha", "depth")


def _add_flags(p: argparse.ArgumentParser, names) -> None:
    for name in names:
        typ, help_ = BUILD_FLAGS[name]
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)


def _set_pairs(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    index = subparsers.add_parser("index", help="build, query and evaluate retrieval indexes")
    sub = index.add_subparsers(dest="index_command", required=True)

    b = sub.add_parser("build", help="index a JSONL/TSV passage corpus")
    b.add_argument("--corpus", required=True, help="passages: JSONL or TSV with id, title, text")
    b.add_argument("--kind", required=True, choices=["bm25", "dense", "hybrid"],
                   help="sparse (BM25), dense (sentence-transformers + FAISS) or both fused")
    b.add_argument("--out", required=True, help="index directory (replaced atomically)")
    _add_flags(b, BUILD_FLAGS)
    b.add_argument("--no-title", dest="with_title", action="store_false", default=None, help="index text only")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config field")

    q = sub.add_parser("query", help="search an index with one question or a JSONL file of them")
    q.add_argument("index_dir", help="index directory made by `shoulders index build`")
    q.add_argument("question", nargs="?", help="one question (prints the ranking)")
    q.add_argument("-k", type=int, default=20, help="hits per question")
    q.add_argument("--questions", help="JSONL of questions: the text in `question` or `input`, an optional `id`")
    q.add_argument("--out", help="hits JSONL: {id, hits: [{id, score}]} per question")
    q.add_argument("--batch-size", type=int, default=256, help="questions searched together (--questions)")
    q.add_argument("--mmap", action="store_true", help="memory-map the index instead of loading it")
    _add_flags(q, QUERY_FLAGS)

    e = sub.add_parser("eval-squad", help="recall@k of BM25 / dense / hybrids on SQuAD v1.1 dev")
    e.add_argument("--data", help="squad-v1.1-dev.json (default: in $SHOULDERS_DATA, else in shared/data beside "
                   "the repository checkout)")
    e.add_argument("--limit", type=int, help="first N questions only")
    e.add_argument("--alpha", type=float, default=0.5, help="hybrid minmax dense weight")
    e.add_argument("--cache", help="directory to keep the built indexes between runs")
    e.add_argument("--out", help="write the full report as JSON")
    e.add_argument("--rerank", action="store_true", help="also train the cross-encoder re-ranker on the training "
                   "articles and report every retriever with it on the test articles (indexes, re-ranker and "
                   "report kept in --cache, default runs/squad_rerank)")
    e.add_argument("--rerank-set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --rerank: a SquadRerankSettings field, e.g. test_questions=400 depth=20")

    for p in (b, q, e):
        add_output_args(p)
        p.set_defaults(func=run_index_command)
    return index


def run_index_command(args: argparse.Namespace) -> int:
    from shoulders.reader.retrieval import index as ix

    progress = not getattr(args, "no_progress", False)
    if args.index_command == "build":
        options = {k: getattr(args, k) for k in [*BUILD_FLAGS, "with_title"] if getattr(args, k) is not None}
        options.update(_set_pairs(args.set))
        try:
            ix.make_retriever(args.kind, **options)  # a bad option: one line, before reading the corpus
        except (TypeError, ValueError) as e:  # an unknown option, a bad value, PyStemmer missing
            from shoulders.errors import ShouldersError, one_line

            raise ShouldersError(f"--set/flags: {one_line(e)}") from None
        r = ix.build_index(args.corpus, args.kind, args.out, show_progress=progress, **options)
        print(f"built {args.kind} index of {len(r)} passages in {args.out}")
        return 0
    if args.index_command == "query":
        overrides = {k: getattr(args, k) for k in QUERY_FLAGS if getattr(args, k) is not None}
        from pydantic import ValidationError

        try:
            retriever = ix.load_index(args.index_dir, mmap=args.mmap, **overrides)
        except ValidationError as e:  # a query flag out of range (--alpha 2): one line naming it
            from shoulders.errors import ShouldersError, one_line

            raise ShouldersError(f"flags: {one_line(e)}") from None
        if args.questions:
            if not args.out:
                raise SystemExit("--questions needs --out HITS.jsonl")
            n = ix.query_file(retriever, args.questions, args.out, args.k, args.batch_size, show_progress=progress)
            print(f"wrote hits for {n} questions to {args.out}")
            return 0
        if not args.question:
            raise SystemExit('give a question, or --questions FILE.jsonl --out HITS.jsonl')
        _print_hits(args.index_dir, retriever.search([args.question], args.k)[0])
        return 0
    if args.index_command == "eval-squad" and args.rerank:
        from shoulders.reader.retrieval.io import atomic_write_json
        from shoulders.experiments.squad_rerank import evaluate_reranker_on_squad, rerank_table, settings_from_pairs

        given = {"alpha": args.alpha, **({"test_questions": args.limit} if args.limit else {})}
        report = evaluate_reranker_on_squad(args.data, args.cache or "runs/squad_rerank",
                                            settings_from_pairs(args.rerank_set, **given), progress=progress)
        print(rerank_table(report))
        if args.out:
            atomic_write_json(args.out, report)
        return 0
    if args.index_command == "eval-squad":
        from shoulders.reader.retrieval.io import atomic_write_json
        from shoulders.experiments.squad import evaluate_retrievers_on_squad, recall_table

        report = evaluate_retrievers_on_squad(args.data, limit=args.limit, alpha=args.alpha, index_dir=args.cache,
                                              show_progress=progress)
        print(recall_table(report))
        if args.out:
            atomic_write_json(args.out, report)
        return 0
    raise SystemExit(f"unknown index command {args.index_command!r}")


def _print_hits(index_dir: str, hits) -> None:
    """Print the ranking, with passage text when the indexed corpus file is still there."""
    from shoulders.reader.corpus import iter_passages
    from shoulders.reader.retrieval.index import read_index_meta

    corpus = read_index_meta(index_dir).get("corpus")
    wanted = {h.passage_id for h in hits}
    texts = {}
    if corpus and Path(corpus).is_file():
        texts = {p.id: f"{p.title}: {p.text}" for p in iter_passages(corpus) if p.id in wanted}
    for rank, h in enumerate(hits, 1):
        snippet = texts.get(h.passage_id, "")
        snippet = snippet if len(snippet) <= 100 else snippet[:97] + "..."
        print(f"{rank:3d}  {h.score:9.4f}  {h.passage_id}  {snippet}", file=sys.stdout)
