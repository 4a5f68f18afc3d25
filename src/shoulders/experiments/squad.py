"""SQuAD v1.1 dev as a small open-domain QA collection.

Its 2,067 paragraphs become the passages (title = article title) and its 10,570
questions keep their answers and gold paragraph id. Being small, it lets the whole
retrieve -> re-rank -> pack -> read pipeline run on a CPU. Retrieval over SQuAD is
known to favour BM25 (questions were written while looking at the paragraph, so they
share its words), unlike Natural Questions.
"""
from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoulders.reader.corpus import Passage

SQUAD_DEV = "squad-v1.1-dev.json"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
SYSTEMS = ("bm25", "dense", "hybrid-minmax", "hybrid-rrf")


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # every gold answer string (duplicates removed, order kept)
    gold_id: str  # the paragraph the question was written about
    title: str  # its article


@dataclass
class SquadCollection:
    passages: list[Passage]
    questions: list[SquadQuestion]
    path: Path

    @property
    def titles(self) -> list[str]:
        return list(dict.fromkeys(p.title for p in self.passages))

    def passage_texts(self) -> dict[str, str]:
        return {p.id: p.text for p in self.passages}


def resolve_squad_path(path: str | Path | None = None) -> Path:
    """An explicit path, else $SHOULDERS_DATA (a file or the data directory), else ../shared/data.

    The first of these that is given decides: a wrong explicit path is an error, not a
    silent fall-back to another copy.
    """
    given = path if path is not None else os.environ.get("SHOULDERS_DATA")
    p = Path(given) if given is not None else DEFAULT_DATA_DIR
    p = p / SQUAD_DEV if p.is_dir() else p
    if not p.is_file():
        source = "path" if path is not None else "$SHOULDERS_DATA" if given is not None else "default"
        raise FileNotFoundError(f"SQuAD v1.1 dev not found at {p} ({source}); pass a path or set SHOULDERS_DATA")
    return p


def load_squad(path: str | Path | None = None) -> SquadCollection:
    """Paragraph ids are `{article}#{paragraph index}`; titles lose SQuAD's underscores."""
    path = resolve_squad_path(path)
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{path}: not a SQuAD v1.1 file ({e}); expected {{'data': [articles]}}") from None
    passages, questions = [], []
    for art in articles:
        title = art["title"].replace("_", " ")
        for j, para in enumerate(art["paragraphs"]):
            pid = f"{art['title']}#{j}"
            passages.append(Passage(pid, title, para["context"]))
            for qa in para["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                questions.append(SquadQuestion(qa["id"], qa["question"], answers, pid, title))
    return SquadCollection(passages, questions, path)


@dataclass(frozen=True)
class ArticleSplit:
    """Disjoint article sets: the re-ranker trains on one, the reader is tested on the other."""

    train_titles: frozenset[str]
    test_titles: frozenset[str]

    def questions(self, collection: SquadCollection, split: str) -> list[SquadQuestion]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
        keep = self.train_titles if split == "train" else self.test_titles
        return [q for q in collection.questions if q.title in keep]


def split_articles(collection: SquadCollection, test_fraction: float = 0.5, seed: int = 0) -> ArticleSplit:
    """Shuffle the article titles with a fixed seed and cut; no test article is seen in training.

    The passage collection stays whole: at test time the retriever searches all 2,067
    paragraphs, only the questions (and their gold articles) are split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: expected a fraction in (0, 1)")
    titles = sorted(collection.titles)
    random.Random(seed).shuffle(titles)
    n_test = max(1, round(len(titles) * test_fraction))
    return ArticleSplit(frozenset(titles[n_test:]), frozenset(titles[:n_test]))


def evaluate_retrievers_on_squad(
    data_path: str | Path | None = None,
    systems: Sequence[str] = SYSTEMS,
    ks: Sequence[int] = (1, 5, 20, 100),
    limit: int | None = None,
    alpha: float = 0.5,
    depth: int = 100,
    index_dir: str | Path | None = None,
    bm25_options: dict[str, Any] | None = None,
    dense_options: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Recall@k of each retriever over SQuAD dev questions against all its paragraphs.

    Reports answer recall (an answer string in the top k, DPR style) and gold recall
    (the question's own paragraph in the top k). BM25 and dense are searched once to
    `max(depth, max(ks))`; both hybrids fuse those cached lists. `index_dir`, if given,
    caches the built indexes (`bm25/`, `dense/`) across runs.
    """
    from shoulders.reader.metrics import gold_recall_at_k, recall_at_k
    from shoulders.reader.retrieval import (
        HybridConfig, HybridRetriever, load_index, make_retriever, save_index, search_batched,
    )

    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown system(s) {sorted(unknown)}: expected some of {SYSTEMS}")
    coll = load_squad(data_path)
    questions = coll.questions[:limit] if limit else coll.questions
    texts, queries = coll.passage_texts(), [q.question for q in questions]
    depth = max(depth, max(ks))
    needed = {"bm25"} if "bm25" in systems else set()
    needed |= {"dense"} if "dense" in systems else set()
    needed |= {"bm25", "dense"} if any(s.startswith("hybrid") for s in systems) else set()
    hits, timing, retrievers = {}, {}, {}
    for kind in ("bm25", "dense"):
        if kind not in needed:
            continue
        options = (bm25_options if kind == "bm25" else dense_options) or {}
        cached = Path(index_dir) / kind if index_dir else None
        t0 = time.perf_counter()
        if cached is not None and (cached / "index.json").is_file():
            r = load_index(cached)
        else:
            r = make_retriever(kind, **options)
            r.build(coll.passages, show_progress=show_progress)
            if cached is not None:
                save_index(r, cached, coll.path)
        t1 = time.perf_counter()
        hits[kind] = search_batched(r, queries, depth, show_progress=show_progress)
        timing[kind] = {"build_s": t1 - t0, "search_s": time.perf_counter() - t1}
        retrievers[kind] = r
    for fusion in ("minmax", "rrf"):
        name = f"hybrid-{fusion}"
        if name in systems:
            t0 = time.perf_counter()
            cfg = HybridConfig(fusion=fusion, alpha=alpha, depth=depth)
            h = HybridRetriever(cfg, retrievers["bm25"], retrievers["dense"])
            hits[name] = [h.fuse(s, d, depth) for s, d in zip(hits["bm25"], hits["dense"])]
            timing[name] = {"fuse_s": time.perf_counter() - t0}
    answers = [q.answers for q in questions]
    golds = [q.gold_id for q in questions]
    results = {
        name: {"answer_recall": recall_at_k(hits[name], answers, texts, ks),
               "gold_recall": gold_recall_at_k(hits[name], golds, ks), "timing": timing[name]}
        for name in systems
    }
    return {"n_questions": len(questions), "n_passages": len(coll.passages), "ks": list(ks), "alpha": alpha,
            "depth": depth, "data": str(coll.path), "systems": results}


def recall_table(report: dict[str, Any]) -> str:
    """Markdown: one row per system, answer recall@k then gold-paragraph recall@k (percent)."""
    ks = report["ks"]
    head = ["retriever"] + [f"R@{k}" for k in ks] + [f"gold@{k}" for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["systems"].items():
        cells = [f"{100 * r['answer_recall'][k]:.1f}" for k in ks] + [f"{100 * r['gold_recall'][k]:.1f}" for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
