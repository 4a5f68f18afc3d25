"""Mixture rates and the resumable sampler."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoulders.data.mixture import MixtureSampler, mixture_rates


def test_rates():
    sizes = {"a": 100, "b": 10000}
    assert mixture_rates(sizes)["a"] == pytest.approx(100 / 10100)
    assert mixture_rates(sizes, cap=1000)["a"] == pytest.approx(100 / 1100)
    t = mixture_rates(sizes, "temperature", temperature=2.0)
    assert t["a"] == pytest.approx(10 / (10 + 100))
    assert mixture_rates(sizes, "uniform") == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="no training examples"):
        mixture_rates({"a": 0})


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from("abcde"), st.integers(1, 500), min_size=1),
       st.sampled_from(["proportional", "temperature", "uniform"]), st.one_of(st.none(), st.integers(1, 300)),
       st.floats(0.5, 8))
def test_rates_are_a_distribution(sizes, kind, cap, temp):
    r = mixture_rates(sizes, kind, cap, temp)
    assert sum(r.values()) == pytest.approx(1.0)
    assert all(v > 0 for v in r.values())


def test_sampling_matches_rates_and_covers_each_task():
    s = MixtureSampler({"a": 50, "b": 150}, seed=1)
    picks = [p for _ in range(400) for p in s.next_batch(8)]
    share = sum(1 for t, _ in picks if t == "a") / len(picks)
    assert abs(share - 0.25) < 0.03
    a_idx = [i for t, i in picks if t == "a"][:50]
    assert sorted(a_idx) == list(range(50))  # a full epoch before any repeat


def test_resume_gives_identical_stream():
    a = MixtureSampler({"a": 7, "b": 13}, seed=3)
    first = [a.next_batch(4) for _ in range(5)]
    state = a.state_dict()
    rest = [a.next_batch(4) for _ in range(5)]
    b = MixtureSampler({"a": 7, "b": 13}, seed=3)
    b.load_state_dict(state)
    assert [b.next_batch(4) for _ in range(5)] == rest
    assert first != rest


def test_python_shuffle_is_one_random_sample_stream_and_resumes():
    import random

    rng, stream = random.Random(5), []
    while len(stream) < 40:
        stream += rng.sample(range(7), 7)
    a = MixtureSampler({"only": 7}, seed=5, shuffle="python")
    taken = [i for _ in range(4) for _, i in a.next_batch(5)]
    assert taken == stream[:20]  # epochs end mid-batch, as random.sample permutations in turn
    state = a.state_dict()
    b = MixtureSampler({"only": 7}, seed=5, shuffle="python")
    b.load_state_dict(state)  # replayed from the seed
    assert [i for _, i in b.next_batch(10)] == [i for _, i in a.next_batch(10)] == stream[20:30]
    with pytest.raises(ValueError, match="shuffle=python"):
        MixtureSampler({"only": 7}, seed=5).load_state_dict(state)
