"""shoulders demo [--quick] [--seed N] [--out DIR] [--seeds K] [--only SECTION ...] [--jobs J] [--multitask-steps N]
[--ablations]"""
from __future__ import annotations

from shoulders.cli.common import add_output_args


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the embedded default end to end: world, toy backbones, the paper's experiments",
                       description="Build the toy world, pre-train (or reuse) toy-small and toy-large, run the "
                       "multi-task, frozen-reader and recursion experiments, and write report.md, results.json "
                       "and PNG plots. Offline; 30-45 minutes on 2 idle CPU cores with bf16 units, more without, "
                       "first-time pre-training included (--quick: about 4).")
    p.add_argument("--quick", action="store_true", help="smaller world, short runs, one module seed")
    p.add_argument("--seed", type=int, default=0, help="world seed (module seeds are seed, seed+1, ...)")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--seeds", type=int, default=None, help="module seeds per experiment (default: 3, --quick: 1)")
    p.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                   help="run only these experiments: multitask reader recursion")
    p.add_argument("--jobs", type=int, default=2, help="worker processes for the experiments (default: 2)")
    p.add_argument("--cache-dir", default=None, help="backbone cache (default: $SHOULDERS_CACHE/toyworld, "
                   "else ~/.cache/shoulders/toyworld)")
    p.add_argument("--multitask-steps", type=int, default=None, metavar="N",
                   help="optimizer steps of every multi-task method (default: 480, --quick: 60)")
    p.add_argument("--ablations", action="store_true",
                   help="also run the ablations (recursion without the Connector's LM pre-training; ~2 more minutes)")
    p.add_argument("--compile", action="store_true",
                   help="pre-train missing backbones with torch.compile'd steps (about 1.2x faster steps where a C++ "
                   "compiler is found; other backbones than the eager default, cached under their own key; on world "
                   "seed 0 they read worse: docs/backbones.md)")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from shoulders.cli.main import UserError
    from shoulders.experiments.demo import SECTIONS, DemoConfig, run_demo

    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.multitask_steps is not None and args.multitask_steps < 1:
        raise UserError(f"--multitask-steps must be at least 1, got {args.multitask_steps}")
    unknown = sorted(set(args.only or ()) - set(SECTIONS))
    if unknown:
        raise UserError(f"--only: unknown section(s) {unknown}; expected some of {list(SECTIONS)}")
    cfg = DemoConfig(seed=args.seed, quick=args.quick, out=Path(args.out), seeds=args.seeds,
                     sections=tuple(args.only) if args.only else SECTIONS, jobs=args.jobs, cache_dir=args.cache_dir,
                     multitask_steps=args.multitask_steps, ablations=args.ablations, progress=not args.no_progress,
                     compile=args.compile)
    results = run_demo(cfg)
    print(f"wrote {cfg.out / 'report.md'}, {cfg.out / 'results.json'} and plots "
          f"in {results['timing']['total_s'] / 60:.1f} min")
    return 0
