"""Hybrid retrieval: BM25 and dense find different passages, so fuse their rankings.

Each retriever fetches a deeper list (`max(k, depth)`) than asked for, then:

- `minmax`: each list's scores are min-max normalised to [0, 1] (a passage absent
  from a list gets 0 there) and combined as `alpha * dense + (1 - alpha) * bm25`.
- `rrf`: reciprocal-rank fusion (Cormack et al. 2009), `sum_lists 1 / (rrf_k + rank)`
  with 1-based ranks and rrf_k = 60; it needs no score calibration at all.

Ties keep first-seen order (dense list first), so results are deterministic.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from shoulders.errors import format_validation_error
from shoulders.reader.corpus import Passage
from shoulders.reader.retrieval.base import Hit, Retriever, read_config
from shoulders.reader.retrieval.bm25 import BM25Config, BM25Retriever
from shoulders.reader.retrieval.dense import DenseConfig, DenseRetriever
from shoulders.utils.strict_model import StrictModel


def _top(scores: dict[str, float], k: int) -> list[Hit]:
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: ties keep insertion order
    return [Hit(pid, s) for pid, s in ranked[:k]]


def fuse_minmax(lists: Sequence[Sequence[Hit]], weights: Sequence[float], k: int) -> list[Hit]:
    """Weighted sum of per-list min-max-normalised scores (all-equal scores normalise to 1)."""
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} hit lists but {len(weights)} weights")
    fused: dict[str, float] = {}
    for hits, w in zip(lists, weights):
        if not hits:
            continue
        lo, hi = min(h.score for h in hits), max(h.score for h in hits)
        for h in hits:
            norm = (h.score - lo) / (hi - lo) if hi > lo else 1.0
            fused[h.passage_id] = fused.get(h.passage_id, 0.0) + w * norm
    return _top(fused, k)


def fuse_rrf(lists: Sequence[Sequence[Hit]], k: int, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal-rank fusion: score = sum over lists of 1 / (rrf_k + rank), rank from 1."""
    fused: dict[str, float] = {}
    for hits in lists:
        for rank, h in enumerate(hits, start=1):
            fused[h.passage_id] = fused.get(h.passage_id, 0.0) + 1.0 / (rrf_k + rank)
    return _top(fused, k)


class HybridConfig(StrictModel):
    fusion: Literal["minmax", "rrf"] = Field("minmax", description="how the two rankings are fused (module "
                                             "docstring); minmax measured better on SQuAD (R@1 81.5 vs 75.7)")
    alpha: float = Field(0.5, ge=0, le=1, description="minmax only: dense weight, BM25 gets 1 - alpha (0.4-0.5 "
                         "best on SQuAD in a 0.1-0.9 sweep)")
    rrf_k: int = Field(60, ge=0, description="rrf only: rank offset (60 as in the original paper)")
    depth: int = Field(100, ge=1, description="candidates each retriever fetches: max(k, depth)")


class HybridRetriever(Retriever):
    kind: ClassVar[str] = "hybrid"

    def __init__(self, config: HybridConfig | None = None, bm25: BM25Retriever | None = None,
                 dense: DenseRetriever | None = None) -> None:
        self.config = config or HybridConfig()
        self.bm25 = bm25 or BM25Retriever(BM25Config())
        self.dense = dense or DenseRetriever(DenseConfig())

    def build(self, passages: Sequence[Passage], show_progress: bool = True) -> None:
        self.bm25.build(passages, show_progress=show_progress)
        self.dense.build(passages, show_progress=show_progress)

    @property
    def passage_ids(self) -> list[str]:
        return self.bm25.passage_ids

    def fuse(self, bm25_hits: Sequence[Hit], dense_hits: Sequence[Hit], k: int) -> list[Hit]:
        """Fuse one query's two candidate lists (exposed so evaluation can reuse cached hits)."""
        c = self.config
        if c.fusion == "rrf":
            return fuse_rrf([dense_hits, bm25_hits], k, c.rrf_k)
        return fuse_minmax([dense_hits, bm25_hits], [c.alpha, 1.0 - c.alpha], k)

    def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        depth = max(k, self.config.depth)
        sparse = self.bm25.search(queries, depth)
        dense = self.dense.search(queries, depth)
        return [self.fuse(s, d, k) for s, d in zip(sparse, dense)]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.bm25.save(directory / "bm25")
        self.dense.save(directory / "dense")
        (directory / "config.json").write_text(json.dumps({"config": self.config.model_dump()}, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False, **overrides: Any) -> HybridRetriever:
        """`overrides` change query-time knobs: fusion=, alpha=, rrf_k=, depth= for the fusion,
        anything else (nprobe=, ef_search=) goes to the dense retriever."""
        directory = Path(directory)
        cfg_path = directory / "config.json"
        mine = {k: v for k, v in overrides.items() if k in HybridConfig.model_fields}
        try:
            config = HybridConfig(**read_config(cfg_path)["config"])
        except ValidationError as e:
            raise ValueError(f"{cfg_path}: not a hybrid retriever config "
                             f"({format_validation_error(e, 'config.')})") from None
        except (KeyError, TypeError) as e:
            raise ValueError(f"{cfg_path}: not a hybrid retriever config ({e})") from None
        config = HybridConfig(**{**config.model_dump(), **mine})
        bm25 = BM25Retriever.load(directory / "bm25", mmap=mmap)
        dense = DenseRetriever.load(directory / "dense", mmap=mmap,
                                    **{k: v for k, v in overrides.items() if k not in mine})
        if bm25.passage_ids != dense.passage_ids:
            raise ValueError(f"{directory}: the bm25/ and dense/ indexes hold different passages")
        return cls(config, bm25, dense)
