"""shoulders info MODULE"""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a saved module (reads module.json; --verify checks the weights)")
    p.add_argument("module", help="module directory")
    p.add_argument("--verify", action="store_true", help="check the weights file's size and sha256")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from shoulders.cli.common import print_json
    from shoulders.modules.io import read_module_json, verify_weights

    meta = read_module_json(args.module)
    if args.verify:
        verify_weights(Path(args.module), meta)
        meta["weights"]["verified"] = True
    print_json(meta)
    return 0
