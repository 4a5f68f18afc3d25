"""shoulders train CONFIG.yaml [--set key=value ...]"""
from __future__ import annotations

from shoulders.cli.common import add_output_args


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a module (on a frozen backbone, or a re-ranker on its own) from a YAML config")
    p.add_argument("config", help="YAML config (see configs/ for examples)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=100 --set module.num_virtual_tokens=8")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from shoulders.cli.common import print_json
    from shoulders.train import Trainer, load_config

    config = load_config(args.config, args.overrides)
    trainer = Trainer(config, progress=not args.no_progress)
    result = trainer.fit()
    if not trainer.acc.is_main_process:  # under torchrun every rank runs this; rank 0 has the scores
        return 0
    print_json({
        "output_dir": str(result.output_dir),
        "best": str(result.best_dir) if result.best_dir else None,
        "final": str(result.final_dir) if result.final_dir else None,
        "best_dev_score": result.best_score,
    })
    return 0
