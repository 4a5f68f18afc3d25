"""Arguments and helpers shared by several sub-commands."""
from __future__ import annotations

import argparse
import json
import sys


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: a clear refusal of 0, negatives and non-numbers."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_output_args(p: argparse.ArgumentParser) -> None:
    """--no-progress, --quiet and --verbose after a long command's name, where users type them
    (`shoulders train c.yaml --quiet`); the same flags before it (`shoulders -q train`) still
    work. SUPPRESS: a flag not given here leaves the top-level value alone instead of
    resetting it to False."""
    p.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="only warnings and errors, no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also third-party logs, warnings and progress bars (transformers, bm25s, ...)")


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", help="backbone hub id or directory (default: the one recorded in module.json)")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")


def load_module_and_backbone(args, path):
    from shoulders.api import load

    return load(path, args.backbone, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
