"""shoulders train CONFIG.yaml [--set key=value ...]"""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a module on a frozen backbone from a YAML config")
    p.add_argument("config", help="YAML config (see configs/ for examples)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=100 --set module.num_virtual_tokens=8")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from shoulders.cli.common import print_json
    from shoulders.train import Trainer, load_config

    config = load_config(args.config, args.overrides)
    result = Trainer(config, progress=not args.no_progress).fit()
    print_json({
        "output_dir": str(result.output_dir),
        "best": str(result.best_dir) if result.best_dir else None,
        "final": str(result.final_dir),
        "best_dev_score": result.best_score,
    })
    return 0
