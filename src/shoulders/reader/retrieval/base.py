"""One interface for every retriever, so the reader never cares which one it is given.

A retriever is built from passages, answers `search(queries, k)` with ranked `Hit`s
(best first), and saves itself to a directory that `load` reads back. What a
retriever indexes is `passage_text(p)`: the title and the text, as DPR does,
because the title often names the entity a question asks about.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from shoulders.reader.corpus import Passage


class Hit(NamedTuple):
    passage_id: str
    score: float


def passage_text(p: Passage, with_title: bool = True) -> str:
    return f"{p.title}. {p.text}" if with_title and p.title else p.text


class Retriever(ABC):
    """The protocol: `build` -> `search` -> `save`; `load(dir)` restores a saved one."""

    kind: ClassVar[str]

    @abstractmethod
    def build(self, passages: Sequence[Passage], show_progress: bool = True) -> None:
        """Index the passages (replacing any previous index)."""

    @abstractmethod
    def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query, highest score first (fewer if the corpus is smaller)."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the index and its config into `directory` (created if absent)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path, **options: Any) -> Retriever:
        """Rebuild a retriever from what `save` wrote."""

    @property
    @abstractmethod
    def passage_ids(self) -> list[str]:
        """Indexed passage ids, in index order."""

    def __len__(self) -> int:
        return len(self.passage_ids)


def save_ids(directory: Path, ids: Sequence[str]) -> None:
    (directory / "passage_ids.json").write_text(json.dumps(list(ids), ensure_ascii=False), encoding="utf-8")


def load_ids(directory: Path) -> list[str]:
    path = directory / "passage_ids.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing passage id list (was the index saved completely?)")
    ids = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(ids, list):
        raise ValueError(f"{path}: expected a JSON list of passage ids")
    return ids


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing retriever config")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return cfg
