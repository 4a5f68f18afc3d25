"""Answer metrics: SQuAD-normalised exact match and token F1, accuracy, ROUGE-L.

Every metric takes one prediction and a list of gold answers and returns a score in
[0, 1] (the max over the golds, as the SQuAD and NQ evaluation scripts do).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation and articles, squash spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(golds: str | Sequence[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _as_list(golds)))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # SQuAD 2.0 convention: both empty counts as a match.
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: str | Sequence[str]) -> float:
    return max(_f1(prediction, g) for g in _as_list(golds))


def accuracy(prediction: str, golds: str | Sequence[str]) -> float:
    """Label accuracy: the prediction, stripped and lower-cased, equals a gold label."""
    pred = prediction.strip().lower()
    return float(any(pred == g.strip().lower() for g in _as_list(golds)))


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _rouge_l(prediction: str, gold: str) -> float:
    p = normalize_answer(prediction).split()
    g = normalize_answer(gold).split()
    lcs = _lcs(p, g)
    if lcs == 0:
        return float(not p and not g)
    precision, recall = lcs / len(p), lcs / len(g)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, golds: str | Sequence[str]) -> float:
    """ROUGE-L F-measure on normalised tokens (longest common subsequence)."""
    return max(_rouge_l(prediction, g) for g in _as_list(golds))


METRICS: dict[str, Callable[[str, str | Sequence[str]], float]] = {
    "exact_match": exact_match,
    "f1": token_f1,
    "accuracy": accuracy,
    "rouge_l": rouge_l,
}


def score(metric: str, prediction: str, golds: str | Sequence[str]) -> float:
    try:
        fn = METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}: expected one of {sorted(METRICS)}") from None
    return fn(prediction, golds)
