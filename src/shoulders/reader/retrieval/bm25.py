"""Sparse retrieval: BM25 over `bm25s` (scores precomputed into a sparse matrix at index time).

The saved index is bm25s's own inspectable files (`.npy` + JSON) under `bm25s/`, plus
our passage ids and config. `load(dir, mmap=True)` memory-maps the score matrix, so a
large corpus is paged in on demand instead of held in RAM at query time.

Variant: bm25s's default `method="lucene"` (idf = log(1 + (N - df + .5)/(df + .5)),
never negative). `method="atire", idf_method="robertson"` reproduces rank_bm25's
`BM25Okapi(epsilon=0)` exactly (the pairing bm25s's own parity tests use).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import bm25s
import numpy as np

from shoulders.errors import ShouldersError
from shoulders.reader.corpus import Passage
from shoulders.reader.retrieval.base import Hit, Retriever, load_ids, passage_text, read_config, save_ids

BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


@dataclass
class BM25Config:
    k1: float = 1.5  # term-frequency saturation (bm25s and rank_bm25 default)
    b: float = 0.75  # document-length normalisation
    method: str = "lucene"  # bm25s variant: lucene | robertson | atire | bm25l | bm25+
    idf_method: str | None = None  # None: same as `method`; "robertson" with atire = rank_bm25's BM25Okapi
    lower: bool = True  # lower-case before tokenising
    token_pattern: str = r"(?u)\b\w\w+\b"  # scikit-learn's pattern (bm25s default): words of 2+ chars
    stopwords: str | None = "en"  # bm25s's English stop-word list; None keeps every token
    stemmer: str | None = None  # e.g. "english": needs the optional PyStemmer package
    with_title: bool = True  # index "title. text" (titles often name the asked-about entity)

    def __post_init__(self) -> None:
        if self.method not in BM25_METHODS:
            raise ValueError(f"BM25Config.method={self.method!r}: expected one of {BM25_METHODS}")
        if self.idf_method is not None and self.idf_method not in BM25_METHODS:
            raise ValueError(f"BM25Config.idf_method={self.idf_method!r}: expected None or one of {BM25_METHODS}")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"BM25Config: need k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")


class BM25Retriever(Retriever):
    kind: ClassVar[str] = "bm25"

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self.model: bm25s.BM25 | None = None
        self._ids: list[str] = []
        self._stemmer = self._make_stemmer()

    def _make_stemmer(self):
        if self.config.stemmer is None:
            return None
        try:
            import Stemmer  # PyStemmer, optional
        except ImportError:  # the user's choice of option, not a bug: one line, not a traceback
            raise ShouldersError(f"BM25Config.stemmer={self.config.stemmer!r} needs the optional PyStemmer "
                                 "package: pip install PyStemmer") from None
        return Stemmer.Stemmer(self.config.stemmer)

    def tokenize(self, texts: list[str], show_progress: bool = False) -> list[list[str]]:
        """The one tokenisation used for passages and queries (and for parity tests)."""
        c = self.config
        return bm25s.tokenize(
            texts, lower=c.lower, token_pattern=c.token_pattern, stopwords=c.stopwords or [],
            stemmer=self._stemmer, return_ids=False, show_progress=show_progress,
        )

    def build(self, passages: Sequence[Passage], show_progress: bool = True) -> None:
        texts = [passage_text(p, self.config.with_title) for p in passages]
        self.model = bm25s.BM25(k1=self.config.k1, b=self.config.b, method=self.config.method,
                                idf_method=self.config.idf_method)
        self.model.index(self.tokenize(texts, show_progress), show_progress=show_progress)
        self._ids = [p.id for p in passages]

    @property
    def passage_ids(self) -> list[str]:
        return self._ids

    def _require(self) -> bm25s.BM25:
        if self.model is None:
            raise RuntimeError("BM25Retriever: call build() or load() before searching")
        return self.model

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed passage for one query (index order)."""
        model = self._require()
        tokens = [t for t in self.tokenize([query])[0] if t in model.vocab_dict]
        if not tokens:
            return np.zeros(len(self._ids), dtype=np.float32)
        return model.get_scores(tokens)

    def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        """Top-k by BM25; passages sharing no term with the query (score 0) are left out."""
        model = self._require()
        k = min(k, len(self._ids))
        if not queries or k <= 0:
            return [[] for _ in queries]
        docs, scores = model.retrieve(self.tokenize(queries), k=k, show_progress=False)
        return [
            [Hit(self._ids[int(i)], float(s)) for i, s in zip(row_i, row_s) if s > 0]
            for row_i, row_s in zip(docs, scores)
        ]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._require().save(directory / "bm25s", show_progress=False)
        save_ids(directory, self._ids)
        (directory / "config.json").write_text(json.dumps({"config": asdict(self.config)}, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False, **overrides: Any) -> BM25Retriever:
        """`mmap=True` memory-maps bm25s's score arrays instead of reading them into RAM."""
        if overrides:  # BM25 scores are fixed at index time: no query-time knobs
            raise TypeError(f"BM25Retriever.load: unknown option(s) {sorted(overrides)}")
        directory = Path(directory)
        cfg_path = directory / "config.json"
        try:
            config = BM25Config(**read_config(cfg_path)["config"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{cfg_path}: not a BM25 config ({e})") from None
        self = cls(config)
        self.model = bm25s.BM25.load(directory / "bm25s", mmap=mmap, show_progress=False)
        self._ids = load_ids(directory)
        n_docs = self.model.scores["num_docs"]
        if n_docs != len(self._ids):
            raise ValueError(f"{directory}: bm25s index has {n_docs} documents but passage_ids.json has {len(self._ids)}")
        return self
