"""shoulders index build|query|eval-squad (the retrieval half of the frozen reader)."""
from __future__ import annotations


def add_parser(sub) -> None:
    from shoulders.reader.retrieval.cli import add_index_parser

    add_index_parser(sub)
