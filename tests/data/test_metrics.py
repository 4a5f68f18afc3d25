"""SQuAD-normalised EM/F1, accuracy and ROUGE-L."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoulders.data.metrics import accuracy, exact_match, normalize_answer, rouge_l, score, token_f1


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an Apple, a day") == "apple day"


def test_em_and_f1_take_max_over_golds():
    assert exact_match("the Paris", ["London", "paris"]) == 1.0
    assert token_f1("Paris France", ["Paris"]) == pytest.approx(2 / 3)
    assert token_f1("x", ["y", "x"]) == 1.0
    assert exact_match("", ["b"]) == 0.0
    assert exact_match("", ["a"]) == 1.0  # "a" is an article: SQuAD normalises it away


def test_accuracy_and_rouge():
    assert accuracy(" Positive ", ["positive"]) == 1.0
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", "a", ["a"])


@given(st.text(max_size=40), st.lists(st.text(max_size=40), min_size=1, max_size=3))
def test_metric_properties(pred, golds):
    for fn in (exact_match, token_f1, rouge_l):
        v = fn(pred, golds)
        assert 0.0 <= v <= 1.0
    assert exact_match(pred, golds) <= token_f1(pred, golds) or not normalize_answer(pred)
    assert exact_match(golds[0], golds) == 1.0
    assert normalize_answer(normalize_answer(pred)) == normalize_answer(pred)
