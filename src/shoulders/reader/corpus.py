"""Passage collections: the text the retriever searches and the reader reads.

A corpus is JSONL (one object per line with `id`, `title`, `text`) or TSV with a
header line naming those three columns in any order (DPR's `psgs_w100.tsv` layout).
A bad line fails loudly, naming the file, the line and what was expected, because a
silently skipped passage only shows up later as a mysteriously low recall.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from shoulders.errors import ShouldersError

FIELDS = ("id", "title", "text")
_EXPECTED = "expected id, title, text"


class CorpusError(ShouldersError):
    """A corpus file that cannot be read; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("jsonl", "tsv"):
            raise CorpusError(f"unknown corpus format {fmt!r}: expected 'jsonl' or 'tsv'")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".tsv" in suffixes:
        return "tsv"
    if ".jsonl" in suffixes or ".json" in suffixes:
        return "jsonl"
    raise CorpusError(f"{path}: cannot tell the corpus format from the name: expected .jsonl or .tsv (or pass fmt=)")


def _unquote(field: str) -> str:
    # DPR's TSV quotes fields that contain quotes, doubling the inner ones.
    if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _lines(path: Path, f) -> Iterator[tuple[int, str]]:
    """Decode a binary file line by line, so that bad bytes are reported with their line."""
    for lineno, raw in enumerate(f, start=1):
        try:
            yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start} of the line); "
                              "re-encode the file as UTF-8") from None


def _records(path: Path, fmt: str) -> Iterator[tuple[int, dict]]:
    """Yield (line number, raw record) pairs; 1-based line numbers as editors show them."""
    with open(path, "rb") as f:
        lines = _lines(path, f)
        if fmt == "jsonl":
            for lineno, line in lines:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{path}:{lineno}: invalid JSON ({e.msg}; {_EXPECTED})") from None
                if not isinstance(rec, dict):
                    raise CorpusError(f"{path}:{lineno}: expected a JSON object with id, title, text, "
                                      f"got {type(rec).__name__}")
                yield lineno, rec
            return
        _, first = next(lines, (1, ""))
        header = first.rstrip("\r\n").split("\t")
        missing = [c for c in FIELDS if c not in header]
        if missing:
            raise CorpusError(f"{path}:1: TSV header {header!r} lacks column(s) {missing} ({_EXPECTED})")
        for lineno, line in lines:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != len(header):
                raise CorpusError(
                    f"{path}:{lineno}: expected {len(header)} tab-separated columns "
                    f"({', '.join(header)}), got {len(cols)}"
                )
            yield lineno, {name: _unquote(value) for name, value in zip(header, cols)}


def _passage(path: Path, lineno: int, rec: dict) -> Passage:
    for name in FIELDS:
        if name not in rec:
            raise CorpusError(f"{path}:{lineno}: missing field {name!r} ({_EXPECTED})")
    pid, title, text = rec["id"], rec["title"], rec["text"]
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or str(pid) == "":
        raise CorpusError(f"{path}:{lineno}: field 'id' must be a non-empty string or integer, got {pid!r}")
    for name, value in (("title", title), ("text", text)):
        if not isinstance(value, str):
            raise CorpusError(f"{path}:{lineno}: field {name!r} must be a string, got {type(value).__name__}")
    if not text.strip():
        raise CorpusError(f"{path}:{lineno}: empty 'text' for passage id {str(pid)!r}")
    return Passage(id=str(pid), title=title, text=text)


def iter_passages(path: str | Path, fmt: str | None = None) -> Iterator[Passage]:
    """Stream passages one at a time (for corpora too large to hold as a list).

    Validation is the same as `load_passages`; only the set of seen ids (id -> line)
    is kept in memory, to report duplicates by both line numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: corpus file not found")
    seen: dict[str, int] = {}
    for lineno, rec in _records(path, _format(path, fmt)):
        p = _passage(path, lineno, rec)
        first = seen.setdefault(p.id, lineno)
        if first != lineno:
            raise CorpusError(f"{path}:{lineno}: duplicate passage id {p.id!r} (first defined on line {first})")
        yield p


def load_passages(path: str | Path, fmt: str | None = None) -> list[Passage]:
    """Read and validate a whole corpus; raises CorpusError (a ValueError) naming file:line on bad input."""
    passages = list(iter_passages(path, fmt))
    if not passages:
        raise CorpusError(f"{path}: the corpus has no passages")
    return passages


def write_passages(passages: Iterable[Passage], path: str | Path) -> int:
    """Write passages as JSONL (atomically); returns how many were written."""
    from shoulders.reader.retrieval.io import atomic_write_jsonl  # lazy: retrieval imports this module

    return atomic_write_jsonl(path, (p.to_dict() for p in passages))
