"""Index directories and batch querying: what `shoulders index build|query` calls.

An index directory holds `index.json` (kind, config, format version, corpus it came
from) next to the retriever's own files. It is built in a temp directory and moved
into place only when complete, so a crash never leaves a half-written index.
"""
from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from shoulders._version import __version__
from shoulders.errors import ShouldersError
from shoulders.reader.corpus import load_passages
from shoulders.reader.retrieval.base import Hit, Retriever
from shoulders.reader.retrieval.bm25 import BM25Config, BM25Retriever
from shoulders.reader.retrieval.dense import DenseConfig, DenseRetriever
from shoulders.reader.retrieval.faiss_index import FaissConfig
from shoulders.reader.retrieval.hybrid import HybridConfig, HybridRetriever
from shoulders.reader.retrieval.io import atomic_dir, atomic_write_json, atomic_write_jsonl, make_readable
from shoulders.utils.progress import bar_disabled

FORMAT_VERSION = 1
RETRIEVERS: dict[str, type[Retriever]] = {"bm25": BM25Retriever, "dense": DenseRetriever, "hybrid": HybridRetriever}


def _fields(cls: type) -> set[str]:
    return set(cls.model_fields)


def _pick(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in _fields(cls)}


def make_retriever(kind: str, **options: Any) -> Retriever:
    """A fresh retriever; flat options go to whichever config(s) has the field
    (e.g. `index_type=` to FAISS, `k1=` to BM25, `with_title=` to both of a hybrid)."""
    if kind not in RETRIEVERS:
        raise ValueError(f"unknown retriever kind {kind!r}: expected one of {sorted(RETRIEVERS)}")
    owners = {"bm25": [BM25Config], "dense": [DenseConfig, FaissConfig],
              "hybrid": [HybridConfig, BM25Config, DenseConfig, FaissConfig]}[kind]
    valid = set().union(*(_fields(c) for c in owners)) - {"faiss"}  # FAISS knobs are passed flat
    unknown = set(options) - valid
    if unknown:
        close = {u: m[0] for u in sorted(unknown) if (m := difflib.get_close_matches(u, sorted(valid), n=1))}
        hint = f" (did you mean {', '.join(f'{m!r} for {u!r}' for u, m in close.items())}?)" if close else ""
        raise TypeError(f"unknown option(s) {sorted(unknown)} for a {kind} index{hint}: expected some of "
                        f"{sorted(valid)}")
    if kind == "bm25":
        return BM25Retriever(BM25Config(**_pick(BM25Config, options)))
    dense_opts = {k: v for k, v in _pick(DenseConfig, options).items() if k != "faiss"}
    dense = DenseRetriever(DenseConfig(faiss=FaissConfig(**_pick(FaissConfig, options)), **dense_opts))
    if kind == "dense":
        return dense
    bm25 = BM25Retriever(BM25Config(**_pick(BM25Config, options)))
    return HybridRetriever(HybridConfig(**_pick(HybridConfig, options)), bm25, dense)


def _config_of(r: Retriever) -> dict[str, Any]:
    if isinstance(r, HybridRetriever):
        return {"fusion": r.config.model_dump(), "bm25": r.bm25.config.model_dump(),
                "dense": r.dense.config.model_dump()}
    return r.config.model_dump()  # type: ignore[attr-defined]


def save_index(retriever: Retriever, out_dir: str | Path, corpus: str | Path | None = None) -> Path:
    """Save a built retriever plus its index.json, atomically replacing `out_dir`."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        retriever.save(tmp)
        atomic_write_json(tmp / "index.json", {
            "format_version": FORMAT_VERSION, "kind": retriever.kind, "config": _config_of(retriever),
            "n_passages": len(retriever), "corpus": str(Path(corpus).resolve()) if corpus else None,
            "shoulders_version": __version__, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        })
        make_readable(tmp)
    return out_dir


def build_index(corpus_path: str | Path, kind: str, out_dir: str | Path, show_progress: bool = True,
                **options: Any) -> Retriever:
    """Load and validate the corpus, build a `kind` retriever over it, save it to `out_dir`."""
    retriever = make_retriever(kind, **options)  # reject bad options before the slow part
    passages = load_passages(corpus_path)
    retriever.build(passages, show_progress=show_progress)
    save_index(retriever, out_dir, corpus_path)
    return retriever


def read_index_meta(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {index_dir} an index built by `shoulders index build`?")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ShouldersError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(meta, dict):
        raise ShouldersError(f"{path}: expected a JSON object with format_version, kind, config")
    for key in ("format_version", "kind", "config"):
        if key not in meta:
            raise ShouldersError(f"{path}: missing field {key!r} (expected format_version, kind, config)")
    if meta["format_version"] != FORMAT_VERSION:
        raise ShouldersError(f"{path}: format_version {meta['format_version']!r} is not the one this shoulders "
                         f"reads ({FORMAT_VERSION}); rebuild the index")
    if meta["kind"] not in RETRIEVERS:
        raise ShouldersError(f"{path}: unknown kind {meta['kind']!r}: expected one of {sorted(RETRIEVERS)}")
    return meta


def load_index(index_dir: str | Path, mmap: bool = False, **overrides: Any) -> Retriever:
    """Load the retriever saved in `index_dir`; `overrides` are query-time knobs
    (dense: nprobe=, ef_search=; hybrid: fusion=, alpha=, rrf_k=, depth=)."""
    meta = read_index_meta(index_dir)
    return RETRIEVERS[meta["kind"]].load(index_dir, mmap=mmap, **overrides)


def search_batched(retriever: Retriever, queries: Sequence[str], k: int, batch_size: int = 256,
                   show_progress: bool = True) -> list[list[Hit]]:
    """Search in batches (bounded memory, a progress bar for long question files)."""
    out: list[list[Hit]] = []
    starts = range(0, len(queries), batch_size)
    bar_off = bar_disabled(show_progress) or len(starts) < 2
    for start in tqdm(starts, desc=f"search k={k}", unit="batch", disable=bar_off):
        out.extend(retriever.search(list(queries[start:start + batch_size]), k))
    return out


def load_questions(path: str | Path) -> list[tuple[str, str]]:
    """(id, question) pairs from JSONL: the text is `question`, else `input` (the field every
    other data file of the library uses, so a task's dev file can be queried as it is);
    `id` defaults to the row number."""
    path = Path(path)
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ShouldersError(f"{path}:{lineno}: invalid JSON ({e.msg}; expected an object with question "
                                     "or input[, id])") from None
            text = rec.get("question", rec.get("input")) if isinstance(rec, dict) else None
            if not isinstance(text, str):
                raise ShouldersError(f"{path}:{lineno}: missing string field 'question' or 'input' (expected "
                                     "question or input[, id])")
            rows.append((str(rec.get("id", len(rows))), text))
    return rows


def hit_rows(qids: Sequence[str], hits: Sequence[Sequence[Hit]]) -> Iterator[dict[str, Any]]:
    """The JSONL row format: {"id": qid, "hits": [{"id": pid, "score": s}, ...]}."""
    for qid, row in zip(qids, hits):
        yield {"id": qid, "hits": [{"id": h.passage_id, "score": round(h.score, 6)} for h in row]}


def query_file(retriever: Retriever, questions_path: str | Path, out_path: str | Path, k: int,
               batch_size: int = 256, show_progress: bool = True) -> int:
    """Answer every question in a JSONL file; write hit rows atomically; return the row count."""
    questions = load_questions(questions_path)
    hits = search_batched(retriever, [q for _, q in questions], k, batch_size, show_progress)
    return atomic_write_jsonl(out_path, hit_rows([i for i, _ in questions], hits))


def load_hits(path: str | Path) -> dict[str, list[Hit]]:
    """Read a hits JSONL file written by `query_file` back into {qid: [Hit, ...]}."""
    out: dict[str, list[Hit]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    out[str(rec["id"])] = [Hit(str(h["id"]), float(h["score"])) for h in rec["hits"]]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{lineno}: bad hits row ({e}); expected {{id, hits: [{{id, score}}]}}") from None
    return out
