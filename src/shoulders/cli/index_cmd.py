"""shoulders index build|query|eval-squad (the retrieval half of the frozen reader)."""
from __future__ import annotations

import argparse

from shoulders.cli.common import add_output_args


def add_parser(sub) -> None:
    from shoulders.reader.retrieval.cli import add_index_parser

    index = add_index_parser(sub)
    # The library's parser cannot import the CLI's shared flags, so they are added here.
    commands = next(a for a in index._actions if isinstance(a, argparse._SubParsersAction))
    for p in commands.choices.values():
        add_output_args(p)
