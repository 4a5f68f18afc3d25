"""`shoulders experiment knowledge [--quick] [--seed N]`: build (or reuse) the backbones and
report what they know: few-shot closed-book EM per hop count against chance.

This is the sanity check behind every demo number: a frozen toy backbone that does not
beat chance here has no knowledge for prompt tuning, readers or recursion to unlock.
"""
from __future__ import annotations

import argparse
import json
import time

from shoulders.toyworld.bundle import ensure_backbones, load_world_data
from shoulders.toyworld.closedbook import chance
from shoulders.toyworld.fewshot import FewShotConfig, fewshot_eval
from shoulders.utils.fs import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    knowledge_report(argv)
    return 0


def knowledge_report(argv: list[str] | None = None) -> dict:
    """Parse `argv`, pre-train or reuse the backbones, print and return the report."""
    ap = argparse.ArgumentParser(prog="shoulders experiment knowledge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the small world and short pre-training")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--k", type=int, default=5, help="demonstrations per prompt")
    ap.add_argument("--out", default=None, help="also write the report as JSON here")
    args = ap.parse_args(argv)

    start = time.time()
    paths = ensure_backbones(args.seed, quick=args.quick, cache_dir=args.cache_dir)
    data = load_world_data(args.seed, quick=args.quick)
    cb = data.closedbook
    report: dict = {"seed": args.seed, "quick": args.quick, "backbones_ready_s": round(time.time() - start, 1),
                    "n_test": len(cb.test), "chance": {}}
    for hops in (1, 2):
        qs = [ex for ex in cb.test if ex.meta["hops"] == hops]
        report["chance"][f"hops={hops}"] = round(chance(data.world, qs), 4)
    for name, path in paths.items():
        stats = json.loads((path / "pretrain.json").read_text())
        res = fewshot_eval(path, cb.test, cb.train, FewShotConfig(k=args.k))
        report[name] = {"path": str(path), "params": stats["params"], "pretrain_wall_s": stats["wall_time_s"],
                        "final_loss": stats["final_loss"], "fewshot_em": round(res.em, 4),
                        **{g: round(v, 4) for g, v in res.by_group.items()}}
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)
    return report
