import pytest

from shoulders.reader.retrieval import Hit, fuse_minmax, fuse_rrf
from shoulders.reader.retrieval.hybrid import HybridConfig

DENSE = [Hit("a", 0.9), Hit("b", 0.7), Hit("c", 0.5)]
SPARSE = [Hit("c", 12.0), Hit("d", 8.0), Hit("a", 4.0)]


def test_minmax_by_hand():
    # dense normalised: a=1, b=.5, c=0; sparse normalised: c=1, d=.5, a=0
    fused = dict(fuse_minmax([DENSE, SPARSE], [0.7, 0.3], k=10))
    assert fused == pytest.approx({"a": 0.7, "b": 0.35, "c": 0.3, "d": 0.15})
    assert [h.passage_id for h in fuse_minmax([DENSE, SPARSE], [0.7, 0.3], k=2)] == ["a", "b"]


def test_minmax_alpha_extremes_reproduce_one_list():
    assert [h.passage_id for h in fuse_minmax([DENSE, SPARSE], [1.0, 0.0], 3)] == ["a", "b", "c"]
    assert [h.passage_id for h in fuse_minmax([DENSE, SPARSE], [0.0, 1.0], 2)] == ["c", "d"]


def test_minmax_constant_scores_and_empty_list():
    fused = fuse_minmax([[Hit("x", 3.0), Hit("y", 3.0)], []], [0.5, 0.5], 5)
    assert fused == [Hit("x", 0.5), Hit("y", 0.5)]


def test_rrf_by_hand():
    fused = dict(fuse_rrf([DENSE, SPARSE], k=10, rrf_k=60))
    assert fused == pytest.approx({
        "a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62,
    })
    # a and c tie; ties keep first-seen order (dense list first)
    assert [h.passage_id for h in fuse_rrf([DENSE, SPARSE], k=4)] == ["a", "c", "b", "d"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="fusion"):
        HybridConfig(fusion="sum")
    with pytest.raises(ValueError, match="alpha"):
        HybridConfig(alpha=1.5)
