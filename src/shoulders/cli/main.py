"""`shoulders` command line. Each sub-command lives in its own file under shoulders/cli."""
from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
import warnings

# Sub-commands are the `*_cmd.py` files of this package, in this order first, then the rest
# alphabetically. Each defines add_parser(subparsers), which sets `func` on its parser.
FIRST = ["demo_cmd", "train_cmd", "eval_cmd", "generate_cmd", "info_cmd"]


def command_modules() -> list[str]:
    import pkgutil

    import shoulders.cli as pkg

    found = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.endswith("_cmd"))
    ordered = [m for m in FIRST if m in found] + [m for m in found if m not in FIRST]
    return [f"shoulders.cli.{m}" for m in ordered]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default in --help, except where there is nothing to show (None, False,
    an empty list) or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if d is None or d is False or d == [] or d is argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with defaults in --help and a "did you mean" for a mistyped choice or command
    (sub-command parsers are this class too: add_subparsers makes them with the parent's)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value) -> None:  # argparse's one check of choices
        if action.choices is not None and value not in action.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in action.choices], n=1)
            if close:  # the list stays in --help: a new command would change this message
                raise argparse.ArgumentError(action, f"invalid choice: {value!r} (did you mean {close[0]!r}?)")
        super()._check_value(action, value)


class UserError(Exception):
    """An error caused by the user's input: printed as one line, no traceback."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from shoulders.errors import ShouldersError

    return (UserError, ShouldersError, ValidationError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="shoulders",
        description="Learn small modules around one frozen language model.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also third-party logs, warnings and progress bars (transformers, bm25s, ...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    from shoulders import __version__

    parser.add_argument("--version", action="version", version=f"shoulders {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in command_modules():
        importlib.import_module(name).add_parser(sub)
    return parser


def _ours_or_warning(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] == "shoulders" or record.levelno >= logging.WARNING


def configure_output(args: argparse.Namespace) -> None:
    """Our log lines at INFO (WARNING with --quiet, and on every torchrun rank but 0, which
    would only repeat rank 0's). Third-party logs below WARNING (bm25s sets its own logger to
    DEBUG, so a handler filter rather than a level), their FutureWarnings and transformers'
    "Loading weights" bars only with --verbose: they came with every command and buried ours."""
    if int(os.environ.get("RANK", "0") or 0) > 0:
        args.quiet = True
    if args.quiet:
        args.no_progress = True
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not args.verbose:
        handler.addFilter(_ours_or_warning)
        warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    if args.no_progress:
        # tqdm's own switch: bars created without an explicit `disable` (and ours that check
        # it) stay off, in worker processes too (they inherit the environment).
        os.environ["TQDM_DISABLE"] = "1"
    if args.no_progress or not args.verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is imported
        if "transformers" in sys.modules:  # imported already (tests, a caller of main): switch it off now
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    from shoulders.cli.experiment_cmd import hoist_output_flags

    parser = build_parser()
    args = parser.parse_args(hoist_output_flags(sys.argv[1:] if argv is None else list(argv)))
    configure_output(args)
    try:
        result = args.func(args)
    except _user_errors() as e:
        if args.debug:
            raise
        print(f"shoulders {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)

