"""shoulders lm-eval [lm_eval's arguments]: lm_eval's own CLI with the `shoulders` model registered.

lm_eval 0.4 finds models only among its own files (no plugin discovery), so its `lm-eval`
command cannot see ours; this one imports the registration first, then hands every
argument to lm_eval unchanged (`run` and `--model shoulders` are the defaults).
See docs/training.md.
"""
from __future__ import annotations

import argparse

LM_EVAL_COMMANDS = ("run", "ls", "validate")


def add_parser(sub) -> None:
    # Every argument is lm_eval's, `-h` included: a prefix character no argument starts with
    # keeps this parser from reading any of them as its own option.
    p = sub.add_parser("lm-eval", add_help=False, prefix_chars="\0",
                       help="run lm-evaluation-harness tasks on a saved module (lm_eval's arguments, -h for them; "
                            "needs shoulders[eval])",
                       description="lm_eval's CLI with the `shoulders` model: shoulders lm-eval --model_args "
                                   "module=DIR[,backbone=NAME] --tasks TASKS [--include_path DIR] ...")
    p.add_argument("lm_eval_args", nargs=argparse.ZERO_OR_MORE, help="arguments for lm_eval (see -h)")
    p.set_defaults(func=run)


def _given(args: list[str], *flags: str) -> bool:
    return any(a in flags or a.startswith(tuple(f"{f}=" for f in flags)) for a in args)


def lm_eval_argv(args: list[str]) -> list[str]:
    """lm_eval's argv: `run` unless another of its commands is named, `--model shoulders`
    unless a model is, and for that model `--device auto` unless a device is (lm_eval's
    own default, cuda:0, fails on a machine without one)."""
    if args and args[0] in LM_EVAL_COMMANDS[1:]:
        return args
    rest = args[1:] if args[:1] == ["run"] else args
    if not _given(rest, "--model", "-m"):
        rest = ["--model", "shoulders", *rest]
    shoulders = any(a == "shoulders" and b in ("--model", "-m") for b, a in zip(rest, rest[1:])) \
        or "--model=shoulders" in rest
    if shoulders and not _given(rest, "--device"):
        rest = [*rest, "--device", "auto"]
    return ["run", *rest]


def run(args) -> int:
    import sys

    from shoulders.cli.main import UserError

    argv = lm_eval_argv(list(args.lm_eval_args))
    if argv[0] == "run" and _given(argv, "--use_cache", "-c", "--cache_requests"):
        raise UserError("--use_cache and --cache_requests store lm_eval's results as pickles, which shoulders "
                        "never loads; run without them")
    try:
        import shoulders.train.harness  # noqa: F401  (registers the `shoulders` model)
        from lm_eval.__main__ import cli_evaluate
    except ImportError as e:
        raise UserError(str(e)) from None
    saved = sys.argv
    sys.argv = ["shoulders lm-eval", *argv]  # lm_eval's CLI reads sys.argv
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0
