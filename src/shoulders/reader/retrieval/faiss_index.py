"""FAISS index construction shared by the dense retriever and the benchmark.

Embeddings are L2-normalised, so inner product = cosine similarity, and every index
uses `METRIC_INNER_PRODUCT`. Which index to use:

- `flat`  (IndexFlatIP): exact, no training; the default, right up to ~1M passages.
- `ivf`   (IVF{nlist},Flat): k-means into `nlist` cells, search the `nprobe` nearest;
  recall rises with nprobe, cost ~ nprobe/nlist of exact.
- `hnsw`  (HNSW{M},Flat): graph search; `M` links per node (memory ~ 4*M*2 bytes
  extra per vector), `ef_construction` build-time beam, `ef_search` query-time beam.
- `ivfpq` (IVF{nlist},PQ{m}x{nbits}): IVF plus product quantisation, `m` sub-vectors
  of `nbits` each: m*nbits/8 bytes per vector (48 B at dim 384 vs 1536 B flat).

`refine` (any type): re-score the `k_factor * k` best candidates of the index with a
second, finer copy of the vectors (`Flat`: exact, +4*dim B per vector; `SQ8`: 8-bit
scalar quantised, +dim B) and keep the k best. PQ's coarse codes lose recall at the
top ranks; re-scoring buys most of it back for a fraction of flat's memory.
"""
from __future__ import annotations

import math
from typing import Literal

import faiss
import numpy as np
from pydantic import Field

from shoulders.utils.strict_model import StrictModel

IndexType = Literal["flat", "ivf", "hnsw", "ivfpq"]
RefineType = Literal["Flat", "SQ8", "SQ4", "SQfp16"]


class FaissConfig(StrictModel):
    index_type: IndexType = Field("flat", description="flat | ivf | hnsw | ivfpq (see the module docstring)")
    nlist: int | None = Field(None, ge=1, description="IVF cells; None: 4*sqrt(N), capped so each cell gets >= 39 "
                              "training points")
    nprobe: int = Field(16, ge=1, description="IVF cells searched per query")
    hnsw_m: int = Field(32, ge=1, description="HNSW links per node")
    ef_construction: int = Field(80, ge=1, description="HNSW build beam width")
    ef_search: int = Field(128, ge=1, description="HNSW query beam width (must be >= k)")
    pq_m: int = Field(48, ge=1, description="IVF-PQ sub-quantisers; must divide the embedding dim")
    pq_nbits: int = Field(8, ge=1, description="bits per sub-quantiser code")
    train_size: int | None = Field(100_000, ge=1, description="vectors sampled to train IVF/PQ (None: all)")
    refine: RefineType | None = Field(None, description="re-score candidates with Flat | SQ8 | SQ4 | SQfp16 "
                                      "vectors (None: off)")
    k_factor: int = Field(4, ge=1, description="refine: candidates re-scored per result")

    def resolved_nlist(self, n: int) -> int:
        if self.nlist is not None:
            return max(1, min(self.nlist, n))
        return max(1, min(int(4 * math.sqrt(n)), n // 39))

    def factory_string(self, n: int) -> str:
        refine = "" if self.refine is None else ",RFlat" if self.refine == "Flat" else f",Refine({self.refine})"
        return self._base_factory(n) + refine

    def _base_factory(self, n: int) -> str:
        if self.index_type == "flat":
            return "Flat"
        if self.index_type == "hnsw":
            return f"HNSW{self.hnsw_m},Flat"
        nlist = self.resolved_nlist(n)
        if self.index_type == "ivf":
            return f"IVF{nlist},Flat"
        # "np": no polysemous training; it only serves Hamming pre-filtering (unused here)
        # and made training ~5x slower in our measurements.
        return f"IVF{nlist},PQ{self.pq_m}x{self.pq_nbits}np"


def build_faiss_index(vectors: np.ndarray, config: FaissConfig, seed: int = 0) -> faiss.Index:
    """Create, train (when the type needs it) and fill an inner-product index."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if config.index_type == "ivfpq" and dim % config.pq_m:
        raise ValueError(f"pq_m={config.pq_m} must divide the embedding dim {dim}")
    index = faiss.index_factory(dim, config.factory_string(n), faiss.METRIC_INNER_PRODUCT)
    if config.index_type == "hnsw":
        _base(index).hnsw.efConstruction = config.ef_construction
    if not index.is_trained:
        train = vectors
        if config.train_size is not None and n > config.train_size:
            rng = np.random.default_rng(seed)
            train = vectors[np.sort(rng.choice(n, config.train_size, replace=False))]
        index.train(train)
    index.add(vectors)
    set_search_params(index, config)
    return index


def set_search_params(index: faiss.Index, config: FaissConfig) -> None:
    """Apply the query-time knobs (nprobe, efSearch); they are not part of the trained index."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = config.nprobe
    if hasattr(_base(index), "hnsw"):
        _base(index).hnsw.efSearch = config.ef_search
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(config.k_factor)


def _base(index: faiss.Index) -> faiss.Index:
    """The searched index under a refine wrapper (itself otherwise)."""
    return faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index


def index_nbytes(index: faiss.Index) -> int:
    """Size of the serialised index: what it costs on disk and, roughly, in RAM."""
    return int(faiss.serialize_index(index).nbytes)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    base = _base(index)
    if hasattr(base, "hnsw") and base.hnsw.efSearch < k:
        base.hnsw.efSearch = k  # efSearch below k would return fewer than k results
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
