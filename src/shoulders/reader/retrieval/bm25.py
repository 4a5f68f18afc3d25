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
from pathlib import Path
from typing import Any, ClassVar, Literal

import bm25s
import numpy as np
from pydantic import Field, ValidationError

from shoulders.errors import ShouldersError, format_validation_error
from shoulders.reader.corpus import Passage
from shoulders.reader.retrieval.base import Hit, Retriever, load_ids, passage_text, read_config, save_ids
from shoulders.utils.strict_model import StrictModel

BM25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]


class BM25Config(StrictModel):
    k1: float = Field(1.5, ge=0, description="term-frequency saturation (bm25s and rank_bm25 default)")
    b: float = Field(0.75, ge=0, le=1, description="document-length normalisation: 0 = none, 1 = full")
    method: BM25Method = Field("lucene", description="bm25s variant (see the module docstring)")
    idf_method: BM25Method | None = Field(None, description="None: same as `method`; 'robertson' with "
                                          "method='atire' = rank_bm25's BM25Okapi")
    lower: bool = Field(True, description="lower-case before tokenising")
    token_pattern: str = Field(r"(?u)\b\w\w+\b", description="regex of one token; the default is "
                               "scikit-learn's (bm25s's default): words of 2+ characters")
    stopwords: str | list[str] | None = Field("en", description="bm25s's stop-word list by language code, or "
                                              "the words themselves; None keeps every token")
    stemmer: str | None = Field(None, description="a PyStemmer algorithm, e.g. 'english' (needs the optional "
                                "PyStemmer package); None = no stemming")
    with_title: bool = Field(True, description='index "title. text" (titles often name the asked-about entity)')


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
        (directory / "config.json").write_text(json.dumps({"config": self.config.model_dump()}, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False, **overrides: Any) -> BM25Retriever:
        """`mmap=True` memory-maps bm25s's score arrays instead of reading them into RAM."""
        if overrides:  # BM25 scores are fixed at index time: no query-time knobs
            raise TypeError(f"BM25Retriever.load: unknown option(s) {sorted(overrides)}")
        directory = Path(directory)
        cfg_path = directory / "config.json"
        try:
            config = BM25Config(**read_config(cfg_path)["config"])
        except ValidationError as e:
            raise ValueError(f"{cfg_path}: not a BM25 config ({format_validation_error(e, 'config.')})") from None
        except (KeyError, TypeError) as e:
            raise ValueError(f"{cfg_path}: not a BM25 config ({e})") from None
        self = cls(config)
        self.model = bm25s.BM25.load(directory / "bm25s", mmap=mmap, show_progress=False)
        self._ids = load_ids(directory)
        n_docs = self.model.scores["num_docs"]
        if n_docs != len(self._ids):
            raise ValueError(f"{directory}: bm25s index has {n_docs} documents but passage_ids.json has {len(self._ids)}")
        return self
