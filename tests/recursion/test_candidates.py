"""The candidate format textual recursion's pass 2 reads (pure functions, no backbone)."""
from shoulders.recursion.candidates import Candidates, format_candidates, merge_candidates


def test_merge_counts_normalised_duplicates_in_first_spelling():
    merged = merge_candidates([" Paris", "Lyon", "paris.", "The Paris", "", "  ", "Lyon", "Nice", "Paris"])
    assert merged == [("Paris", 4), ("Lyon", 2), ("Nice", 1)]


def test_ties_keep_first_appearance_and_format():
    merged = merge_candidates(["b", "a", "a", "b", "c"])
    assert merged == [("b", 2), ("a", 2), ("c", 1)]
    assert format_candidates(merged) == "b (2); a (2); c (1)"
    assert format_candidates([]) == "none"


def test_candidates_top_agreement_and_cap():
    c = Candidates([("Paris", 3), ("Lyon", 1)], n=5)
    assert c.top == "Paris" and c.agreement == 0.6
    assert c.text() == "Paris (3); Lyon (1)" and c.text(max_shown=1) == "Paris (3)"
    assert c.text(ascending=True) == "Lyon (1); Paris (3)"  # the most frequent nearest what follows
    assert c.text(max_shown=1, ascending=True) == "Paris (3)"  # the most frequent are shown, then ordered
    assert Candidates([], n=4).agreement == 0.0 and Candidates([], n=4).text() == "none"


def test_candidate_accuracy_top_and_any_shown():
    import pytest

    from shoulders.data.examples import Example
    from shoulders.recursion.evaluate import candidate_accuracy

    exs = [Example("q1", "Paris"), Example("q2", "Rome"), Example("q3", "Oslo")]
    cands = [Candidates([("paris", 3), ("lyon", 1)], 4),  # top right
             Candidates([("milan", 2), ("Rome", 1)], 3),  # only the second right
             Candidates([], 2)]  # nothing sampled
    assert candidate_accuracy(cands, exs) == {"top": pytest.approx(100 / 3), "any": pytest.approx(200 / 3)}
    assert candidate_accuracy(cands, exs, max_shown=1)["any"] == pytest.approx(100 / 3)  # Rome is not shown
    with pytest.raises(ValueError, match="2 candidate sets for 3 examples"):
        candidate_accuracy(cands[:2], exs)


def test_candidate_template_fills_answer_count_and_question_once():
    merged = [("Paris", 3), ("{count}", 1)]
    assert format_candidates(merged, "{answer} x{count}", " | ") == "Paris x3 | {count} x1"  # an answer's braces stay
    c = Candidates(merged, n=4)
    assert c.text(ascending=True, template="{question} {answer}", separator="\n", question="Q: q? A:") == \
        "Q: q? A: {count}\nQ: q? A: Paris"
    assert format_candidates([], "{question} {answer}") == "none"
