"""Toyworld ODQA as files, for the YAML presets that train the re-ranker and the reader.

`shoulders experiment toyworld-odqa --out DIR` writes the passage corpus, re-ranker
examples (input, target, choices: a positive and hard negatives mined by the retrievers)
and the reader's question/answer files (configs/reranker_*.yaml, configs/reader_*.yaml).
It lives here, not in reader/, because it joins the reader's mining to the toy world.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from shoulders.data.loaders import write_examples
from shoulders.reader.corpus import Passage, write_passages
from shoulders.reader.reranker_data import merge_negatives, mine_negatives, reranker_examples
from shoulders.reader.retrieval import make_retriever
from shoulders.toyworld import load_world_data
from shoulders.utils.fs import atomic_write_text


def export_toyworld(out_dir: str | Path, *, seed: int = 0, quick: bool = False, negatives: int = 8,
                    dense: bool = False) -> dict[str, int]:
    """Write toyworld ODQA as files: `corpus.jsonl` (id, title, text), `train.jsonl`/`dev.jsonl`
    (re-ranker: question, positive, mined negatives) and `qa_train.jsonl`/`qa_dev.jsonl`
    (reader: question -> answers)."""
    out = Path(out_dir)
    odqa = load_world_data(seed, quick).odqa
    passages = {p.id: Passage(p.id, p.title, p.text) for p in odqa.passages}
    counts = {"corpus": write_passages(passages.values(), out / "corpus.jsonl")}
    retrievers = [make_retriever("bm25")] + ([make_retriever("dense")] if dense else [])
    for r in retrievers:
        r.build(list(passages.values()), show_progress=False)
    for split in ("train", "dev"):
        qs = odqa.split(split)
        negs = merge_negatives(*[mine_negatives(r, qs, passages, negatives) for r in retrievers], k=negatives)
        examples = reranker_examples(qs, passages, negs, seed=seed)
        write_examples(out / f"{split}.jsonl", examples)
        rows = [json.dumps({"id": q.id, "input": q.question, "target": q.answers}) + "\n" for q in qs]
        atomic_write_text(out / f"qa_{split}.jsonl", "".join(rows))
        counts[split], counts[f"qa_{split}"] = len(examples), len(rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shoulders experiment toyworld-odqa",
                                description="write toyworld ODQA files: corpus, re-ranker and reader data")
    p.add_argument("--out", required=True, help="directory for corpus.jsonl, train/dev.jsonl, qa_train/qa_dev.jsonl")
    p.add_argument("--seed", type=int, default=0, help="toyworld seed")
    p.add_argument("--quick", action="store_true", help="the quick (smaller) world")
    p.add_argument("--negatives", type=int, default=8, help="mined negatives per question")
    p.add_argument("--dense", action="store_true", help="also mine dense (MiniLM) negatives (slower)")
    args = p.parse_args(argv)
    counts = export_toyworld(args.out, seed=args.seed, quick=args.quick, negatives=args.negatives, dense=args.dense)
    print(f"wrote {counts} rows to {args.out}")
    return 0
