"""Reader metrics: retrieval recall@k, recall in context, and answer EM/F1.

"Contains the answer" follows DPR's `has_answer`: after SQuAD normalisation
(lower case, no punctuation or articles), the answer's tokens appear as a contiguous
run of the passage's tokens, so "5" does not match inside "1500". EM and F1 are
`shoulders.data.metrics`' SQuAD versions, re-exported here.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from shoulders.data.metrics import exact_match, normalize_answer, token_f1

if TYPE_CHECKING:  # importing the retrievers would pull in bm25s and faiss for a type hint
    from shoulders.reader.retrieval.base import Hit

__all__ = [
    "has_answer", "first_hit_ranks", "recall_at_k", "gold_recall_at_k", "recall_in_context",
    "answer_scores", "exact_match", "token_f1",
]


def _padded(text: str) -> str:
    return f" {normalize_answer(text)} "


def has_answer(text: str, answers: Sequence[str]) -> bool:
    """True if some (non-empty) answer occurs in `text` as whole normalised tokens."""
    padded = _padded(text)
    return any(norm.strip() and norm in padded for norm in map(_padded, answers))


class _NormalizedTexts:
    """Normalise each passage once: 10k questions x 100 hits would otherwise redo it 1M times."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts, self.cache = texts, {}

    def __getitem__(self, pid: str) -> str:
        if pid not in self.cache:
            self.cache[pid] = _padded(self.texts[pid])
        return self.cache[pid]


def first_hit_ranks(hits: Sequence[Sequence[Hit]], answers: Sequence[Sequence[str]],
                    passage_texts: Mapping[str, str]) -> list[int | None]:
    """1-based rank of the first hit that contains an answer, per question (None: no hit does)."""
    if len(hits) != len(answers):
        raise ValueError(f"{len(hits)} hit lists but {len(answers)} answer lists")
    texts = _NormalizedTexts(passage_texts)
    ranks: list[int | None] = []
    for row, golds in zip(hits, answers):
        needles = [n for n in map(_padded, golds) if n.strip()]
        ranks.append(next((r for r, h in enumerate(row, 1) if any(n in texts[h.passage_id] for n in needles)), None))
    return ranks


def _recall_from_ranks(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[int, float]:
    n = max(len(ranks), 1)
    return {k: sum(r is not None and r <= k for r in ranks) / n for k in ks}


def recall_at_k(hits: Sequence[Sequence[Hit]], answers: Sequence[Sequence[str]], passage_texts: Mapping[str, str],
                ks: Sequence[int] = (1, 5, 20, 100)) -> dict[int, float]:
    """Share of questions with an answer-containing passage among the top k (DPR's top-k accuracy)."""
    return _recall_from_ranks(first_hit_ranks(hits, answers, passage_texts), ks)


def gold_recall_at_k(hits: Sequence[Sequence[Hit]], gold_ids: Sequence[str | Collection[str]],
                     ks: Sequence[int] = (1, 5, 20, 100)) -> dict[int, float]:
    """Share of questions whose gold passage (any of several, if a collection) is in the top k."""
    if len(hits) != len(gold_ids):
        raise ValueError(f"{len(hits)} hit lists but {len(gold_ids)} gold ids")
    ranks: list[int | None] = []
    for row, gold in zip(hits, gold_ids):
        golds = {gold} if isinstance(gold, str) else set(gold)
        ranks.append(next((r for r, h in enumerate(row, 1) if h.passage_id in golds), None))
    return _recall_from_ranks(ranks, ks)


def recall_in_context(contexts: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    """Share of questions whose packed context text (what the reader sees) contains an answer.

    Computed on the packed text itself, so an answer only in a dropped or truncated-away
    passage does not count.
    """
    if len(contexts) != len(answers):
        raise ValueError(f"{len(contexts)} contexts but {len(answers)} answer lists")
    return sum(has_answer(c, a) for c, a in zip(contexts, answers)) / max(len(contexts), 1)


def answer_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean SQuAD exact match and token F1 (x100, as papers report them)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
    n = max(len(predictions), 1)
    return {
        "exact_match": 100 * sum(exact_match(p, list(a)) for p, a in zip(predictions, answers)) / n,
        "f1": 100 * sum(token_f1(p, list(a)) for p, a in zip(predictions, answers)) / n,
    }
