import pytest

from shoulders.reader.corpus import Passage
from shoulders.reader.metrics import (
    answer_scores, gold_recall_at_k, has_answer, recall_at_k, recall_in_context,
)
from shoulders.reader.packing import PackingConfig, pack
from shoulders.reader.retrieval import Hit


def test_has_answer_is_normalised_whole_token_containment():
    assert has_answer("The Denver Broncos won Super Bowl 50.", ["denver broncos"])
    assert has_answer("It cost $1,500 in total", ["1,500"])
    assert not has_answer("It cost 1500 dollars", ["5"])  # not inside a token
    assert not has_answer("anything", ["the", ""])  # empty after normalisation never matches


def test_recall_at_k_and_gold_recall():
    texts = {"a": "Paris is in France", "b": "Rome is in Italy", "c": "Berlin, Germany"}
    hits = [[Hit("a", 3), Hit("b", 2)], [Hit("c", 1), Hit("b", 0.5)], [Hit("c", 1)]]
    answers = [["Rome"], ["Italy"], ["Madrid"]]
    assert recall_at_k(hits, answers, texts, ks=(1, 2)) == pytest.approx({1: 0.0, 2: 2 / 3})
    assert gold_recall_at_k(hits, ["a", {"x", "b"}, "z"], ks=(1, 2)) == pytest.approx({1: 1 / 3, 2: 2 / 3})


def test_recall_in_context_counts_only_the_packed_text(tokenizer):
    filler = "the cat sat on the mat " * 20
    scored = [(Passage("short", "A", "the dog is a pet"), 3.0),
              (Passage("cut", "B", filler + "Paris is the capital of France"), 2.0),
              (Passage("dropped", "C", "Paris " + filler), 1.0)]
    cfg = PackingConfig(context_window=60, answer_tokens=0, overflow="truncate", min_truncated_tokens=4)
    packed = pack("capital of France?", scored, tokenizer, cfg)
    assert packed.passage_ids == ["short", "cut"] and packed.truncated_id == "cut"
    assert recall_in_context([packed.text], [["Paris"]]) == 0.0  # only in the cut-off tail / a dropped passage
    roomy = pack("capital of France?", scored, tokenizer, PackingConfig(context_window=2000))
    assert recall_in_context([roomy.text], [["Paris"]]) == 1.0


def test_answer_scores_reuse_squad_metrics():
    scores = answer_scores(["The Broncos", "Paris city"], [["Broncos"], ["Paris"]])
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
