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
    assert Candidates([], n=4).agreement == 0.0 and Candidates([], n=4).text() == "none"
