"""Retrievers for the frozen reader: BM25 (bm25s), dense (sentence-transformers + FAISS), hybrid."""
from shoulders.reader.retrieval.base import Hit, Retriever
from shoulders.reader.retrieval.bm25 import BM25Config, BM25Retriever
from shoulders.reader.retrieval.dense import DenseConfig, DenseRetriever
from shoulders.reader.retrieval.faiss_index import FaissConfig
from shoulders.reader.retrieval.hybrid import HybridConfig, HybridRetriever, fuse_minmax, fuse_rrf
from shoulders.reader.retrieval.index import (
    RETRIEVERS,
    build_index,
    load_hits,
    load_index,
    make_retriever,
    query_file,
    save_index,
    search_batched,
)

__all__ = [
    "Hit", "Retriever", "BM25Config", "BM25Retriever", "DenseConfig", "DenseRetriever", "FaissConfig",
    "HybridConfig", "HybridRetriever", "fuse_minmax", "fuse_rrf", "RETRIEVERS", "build_index", "load_hits",
    "load_index", "make_retriever", "query_file", "save_index", "search_batched",
]
