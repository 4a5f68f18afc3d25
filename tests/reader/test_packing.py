import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoulders.reader.corpus import Passage
from shoulders.reader.packing import PackingConfig, pack, passage_budget

WORDS = "the cat dog river capital city of France Paris Rome mountain music game board water".split()


def _n(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0


def _scored(lengths, scores=None):
    scores = scores or [float(len(lengths) - i) for i in range(len(lengths))]
    return [(Passage(f"p{i}", f"T{i}", " ".join(WORDS[(i + j) % len(WORDS)] for j in range(n))), s)
            for i, (n, s) in enumerate(zip(lengths, scores))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(1, 60), min_size=0, max_size=12),
       window=st.integers(20, 400),
       overflow=st.sampled_from(["skip", "truncate", "stop"]),
       order=st.sampled_from(["descending", "ascending"]))
def test_never_exceeds_window_and_keeps_score_order(tokenizer, lengths, window, overflow, order):
    cfg = PackingConfig(context_window=window, prompt_tokens=5, answer_tokens=8, overflow=overflow, order=order,
                        min_truncated_tokens=4)
    question = "what is the capital of France"
    scored = _scored(lengths)
    packed = pack(question, scored, tokenizer, cfg)
    budget = window - 5 - 8 - _n(tokenizer, question)
    assert packed.budget == max(0, budget)
    assert packed.n_tokens == _n(tokenizer, packed.text) <= packed.budget
    ranks = [int(pid[1:]) for pid in packed.passage_ids]  # p0 has the highest score
    assert ranks == sorted(ranks, reverse=(order == "ascending"))
    assert set(packed.skipped_ids) | set(packed.passage_ids) == {p.id for p, _ in scored}
    if overflow == "stop":  # a strict prefix of the ranking
        assert sorted(ranks) == list(range(len(ranks)))


def test_skip_tries_later_passages(tokenizer):
    scored = _scored([5, 200, 5])
    cfg = PackingConfig(context_window=80, answer_tokens=0, overflow="skip")
    packed = pack("q", scored, tokenizer, cfg)
    assert packed.passage_ids == ["p0", "p2"] and packed.skipped_ids == ["p1"]


def test_stop_halts_at_first_misfit(tokenizer):
    packed = pack("q", _scored([5, 200, 5]), tokenizer, PackingConfig(context_window=80, answer_tokens=0, overflow="stop"))
    assert packed.passage_ids == ["p0"] and packed.skipped_ids == ["p1", "p2"]


def test_truncate_fills_the_window(tokenizer):
    cfg = PackingConfig(context_window=80, answer_tokens=0, overflow="truncate", min_truncated_tokens=4)
    packed = pack("q", _scored([5, 200, 5]), tokenizer, cfg)
    assert packed.passage_ids == ["p0", "p1"] and packed.truncated_id == "p1"
    assert packed.budget - 3 <= packed.n_tokens <= packed.budget  # full up to a token or so of BPE slack
    assert packed.skipped_ids == ["p2"]


def test_input_is_sorted_by_score_and_ascending_puts_best_last(tokenizer):
    scored = _scored([4, 4, 4], scores=[0.1, 0.9, 0.5])
    desc = pack("q", scored, tokenizer, PackingConfig(context_window=500))
    asc = pack("q", scored, tokenizer, PackingConfig(context_window=500, order="ascending"))
    assert desc.passage_ids == ["p1", "p2", "p0"] and asc.passage_ids == ["p0", "p2", "p1"]
    assert asc.text.endswith(scored[1][0].text)


def test_budget_accounts_for_prompt_question_and_answer(tokenizer):
    cfg = PackingConfig(context_window=100, prompt_tokens=20, question_tokens=10, answer_tokens=30)
    assert passage_budget("ignored when question_tokens is set", tokenizer, cfg) == 40
    assert pack("q", _scored([3]), tokenizer, PackingConfig(context_window=10, answer_tokens=20)).passage_ids == []


def test_bad_policy_is_rejected():
    with pytest.raises(ValueError, match="overflow"):
        PackingConfig(overflow="drop")
