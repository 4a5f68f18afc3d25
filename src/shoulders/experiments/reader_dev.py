"""The frozen-reader experiment's choices, measured on the *dev* questions only.

`shoulders experiment reader-dev --world-seed 0 --order descending --order ascending`
trains one re-ranker (module seed `--seed`), then per packing order one reader exactly as
the demo does (`experiments/reader.py`: six-configuration training mixture, weights chosen
on dev), and reports on toyworld ODQA's dev split, per retriever and per interpolation
weight: the question's own passage ranked first, in the window, and the reader's EM
(all questions and unseen ones). The test split is never read. Written to
`OUT/reader_dev.json` and `OUT/reader_dev.md`; docs/reader.md quotes it.
"""
from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from shoulders.utils.fs import atomic_write_json, atomic_write_text


def run_reader_dev(odqa, small_path: str, seed: int, orders: list[str], weights: list[float], out: Path, *,
                   world_seed: int | None = None, progress: bool = True, settings=None) -> dict:
    """`settings`: the demo's full `ReaderSettings` unless given (the tests shrink them)."""
    import torch

    from shoulders.backbone import FrozenLM
    from shoulders.experiments import reader as R
    from shoulders.reader import pipeline
    from shoulders.reader.corpus import Passage
    from shoulders.reader.reader import Reader

    torch.set_num_threads(1)
    if not odqa.dev:
        raise ValueError("reader-dev needs dev questions; this ODQA set has none")
    lm = FrozenLM.from_pretrained(small_path, dtype="float32", device="cpu")
    base = (settings or R.ReaderSettings.full()).model_copy(update={"retriever_weights": tuple(weights)})
    plist = [Passage(p.id, p.title, p.text) for p in odqa.passages]
    passages = {p.id: p for p in plist}
    retr = R._retrievers(plist, progress)
    rtrain = random.Random(0).sample(odqa.train, len(odqa.train))[: base.reader_train_questions]
    dev, dev_q = odqa.dev, [q.question for q in odqa.dev]
    dev_hits, train_hits = R._search(retr, dev_q), R._search(retr, [q.question for q in rtrain])
    reranker, _ = R.train_reranker_for(odqa, passages, R.mined_negatives(odqa, retr, passages, base), base, seed,
                                       progress)
    cache: dict = {}
    chosen, _ = R._choose_weights(reranker, dev, dev_hits, passages, base, cache)
    ranked_train = R._configs(train_hits, [q.question for q in rtrain], reranker, passages, base.candidates, cache,
                              chosen)
    unseen = [not q.meta.get("in_corpus", True) for q in dev]
    rows = []
    for order in orders:
        s = base.model_copy(update={"order": order})
        probe = Reader.build(R._reader_config(s, seed), lm)
        train_ctx = R._packed(probe, lm, [q.question for q in rtrain], ranked_train, passages)
        reader = R._train_reader(lm, s, seed, R.reader_examples(rtrain, train_ctx, seed), out / "runs" / order,
                                 progress)
        cfg = probe.packing(lm)
        for name in R.RETRIEVERS:
            variants = [("no", None, dev_hits[name])]
            variants += [("yes", w, pipeline.rerank_top(reranker, dev_q, dev_hits[name], passages, s.candidates, w,
                                                        cache)) for w in weights]
            for rerank, w, ranked in variants:
                ctx = pipeline.pack_all(dev_q, [h[:20] for h in ranked], passages, lm.tokenizer, cfg,
                                        probe.config.template, probe.prefix_tokens)
                em = R._em(reader, lm, dev, ctx)
                rows.append({
                    "order": order, "retriever": name, "rerank": rerank, "weight": w,
                    "chosen": w == chosen[name],
                    "own_first": R.own_first(dev, ranked),
                    "own_in_window": 100 * statistics.fmean(any(p.id in q.positive_ids for p, _ in c.passages)
                                                            for q, c in zip(dev, ctx)),
                    "em": 100 * statistics.fmean(em),
                    "em_unseen": 100 * statistics.fmean([e for e, u in zip(em, unseen) if u] or [float("nan")]),
                })
    result = {"world_seed": world_seed, "seed": seed, "n_dev": len(dev), "weights_chosen": chosen, "rows": rows}
    atomic_write_json(out / "reader_dev.json", result)
    atomic_write_text(out / "reader_dev.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = [f"Toyworld ODQA **dev** ({result['n_dev']} questions), world seed {result['world_seed']}, module seed "
             f"{result['seed']}; * = the weight the experiment chooses (own passage first most often).", "",
             "| packing | retriever | re-rank (w) | own passage first | own passage in window | EM | EM unseen |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rr = "no" if r["rerank"] == "no" else f"yes ({r['weight']:g}){' *' if r['chosen'] else ''}"
        order = "best last" if r["order"] == "ascending" else "best first"
        lines.append(f"| {order} | {r['retriever']} | {rr} | {r['own_first']:.1f} | {r['own_in_window']:.1f} | "
                     f"{r['em']:.1f} | {r['em_unseen']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shoulders experiment reader-dev", description=__doc__.split("\n\n")[0])
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="module seed (re-ranker and reader)")
    ap.add_argument("--order", action="append", choices=("descending", "ascending"),
                    help="packing order(s) to compare (default: both)")
    ap.add_argument("--weights", default="0,0.5,1,2", help="comma-separated interpolation weights to score")
    ap.add_argument("--cache-dir", default=None, help="toy backbone cache (as `shoulders demo --cache-dir`)")
    ap.add_argument("--out", default="runs/reader_dev")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a ReaderSettings field, e.g. reranker_steps=150 (repeatable)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        ap.error(f"--weights {args.weights!r}: expected comma-separated numbers, e.g. 0,0.5,1,2")
    from shoulders.experiments.reader import ReaderSettings
    from shoulders.experiments.sweep import _pairs
    from shoulders.toyworld import ensure_backbones, load_world_data

    try:
        overrides = dict(kv for text in args.set for kv in _pairs(text, text))
        settings = ReaderSettings.model_validate({**ReaderSettings.full().model_dump(), **overrides})
    except ValueError as e:  # a pydantic ValidationError names the field and what it expects
        ap.error(f"--set: {e}")
    odqa = load_world_data(args.world_seed).odqa
    small = ensure_backbones(args.world_seed, names=("toy-small",), cache_dir=args.cache_dir, threads=1)["toy-small"]
    result = run_reader_dev(odqa, str(small), args.seed, args.order or ["descending", "ascending"], weights,
                            Path(args.out), world_seed=args.world_seed, progress=not args.no_progress,
                            settings=settings)
    print(markdown(result))
    return 0
