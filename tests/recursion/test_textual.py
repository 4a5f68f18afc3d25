"""Textual recursion: stages, what pass 2 reads, seeded pass-2 training data, save/load."""
import pytest
import torch

from shoulders.backbone import GenerationConfig
from shoulders.modules import load_module, save_module
from shoulders.recursion import TextualRecursion, TextualRecursionConfig, merge_candidates


def _module(lm, **cfg):
    base = {"pass1": {"num_virtual_tokens": 3}, "pass2": {"num_virtual_tokens": 2, "seed": 1},
            "sampling": {"n": 4, "max_new_tokens": 3}, "text": {"template": "Q: {input} A:"}}
    return TextualRecursion.build(TextualRecursionConfig(**{**base, **cfg}), lm)


def test_each_stage_trains_its_own_prompt(lm, examples):
    one = _module(lm, stage="pass1")
    one.loss(lm, examples).backward()
    assert one.prompt1.grad.abs().sum() > 0 and one.prompt2.grad is None
    assert [p is one.prompt1 for p in one.trainable_parameters()] == [True]
    two = _module(lm, stage="pass2")
    two.loss(lm, examples).backward()
    assert two.prompt2.grad.abs().sum() > 0 and two.prompt1.grad is None
    assert all(p.grad is None for p in lm.model.parameters())
    assert set(two.state_to_save()) == {"prompt1", "prompt2"}  # the frozen prompt is saved too


def test_pass2_reads_exactly_the_merged_candidates(lm, examples):
    module = _module(lm, stage="pass2").eval()
    calls = []
    real = lm.generate

    def spy(prefix, ids, config=None, **kw):
        out = real(prefix, ids, config, **kw)
        calls.append((prefix, ids, config, out))
        return out

    lm.generate = spy
    try:
        module.generate(lm, examples, GenerationConfig(max_new_tokens=3))
    finally:
        lm.generate = real
    (p1, ids1, cfg1, samples), (p2, ids2, _, _) = calls
    assert p1 is module.prompt1 and cfg1.n == 4 and cfg1.do_sample and cfg1.seed == 0
    assert ids1 == lm.encode([f"Q: {ex.input} A:" for ex in examples])
    assert p2 is module.prompt2
    for ex, gens, got in zip(examples, samples, ids2):
        merged = merge_candidates([g.text for g in gens])
        shown = "; ".join(f"{a} ({c})" for a, c in merged) or "none"
        assert sum(c for _, c in merged) <= 4
        assert got == lm.encode([f"Candidates: {shown}. Q: {ex.input} A:"])[0]


def test_training_candidates_are_seeded_and_cached(lm, examples):
    a, b = _module(lm, stage="pass2"), _module(lm, stage="pass2")
    first = a.training_candidates(lm, examples)
    assert [c.merged for c in first] == [c.merged for c in b.training_candidates(lm, examples)]
    assert a.training_candidates(lm, examples[::-1]) == first[::-1]  # cached: not re-sampled
    c = _module(lm, stage="pass2")
    c.prepare_candidates(lm, examples, batch_size=2)
    assert set(c._train_candidates) == {ex.input for ex in examples}


def test_save_load_round_trip_gives_same_generations(lm, examples, tmp_path):
    module = _module(lm, stage="pass2")
    with torch.no_grad():
        module.prompt2.add_(0.1 * torch.randn_like(module.prompt2))
    save_module(module, tmp_path / "m", lm)
    back = load_module(tmp_path / "m", lm)
    assert torch.equal(back.prompt1, module.prompt1) and torch.equal(back.prompt2, module.prompt2)
    assert back.config == module.config
    cfg = GenerationConfig(max_new_tokens=4)
    assert [g[0].token_ids for g in module.generate(lm, examples, cfg)] == \
           [g[0].token_ids for g in back.generate(lm, examples, cfg)]


def test_stage2_starts_from_a_prompt_tuning_module(lm, tmp_path):
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    pt = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=3, init="random", seed=5), lm)
    save_module(pt, tmp_path / "pt", lm)
    module = _module(lm, stage="pass2", init_from=str(tmp_path / "pt"))
    assert torch.equal(module.prompt1, pt.prompt)


def test_cross_fitted_candidates_come_from_the_given_prompt(lm, examples):
    """prepare_candidates(prompt1=...) samples with that prompt (a pass 1 fitted without
    these questions), not the module's own prompt1, which is left untouched."""
    module = _module(lm, stage="pass2")
    other = module.prompt1.detach() + 0.5 * torch.randn_like(module.prompt1)
    before = module.prompt1.detach().clone()
    calls = []
    real = lm.generate

    def spy(prefix, ids, config=None, **kw):
        calls.append(prefix.detach().clone())
        return real(prefix, ids, config, **kw)

    lm.generate = spy
    try:
        module.prepare_candidates(lm, examples, batch_size=len(examples), prompt1=other)
    finally:
        lm.generate = real
    assert len(calls) == 1 and torch.equal(calls[0], other) and torch.equal(module.prompt1, before)
    assert set(module._train_candidates) == {ex.input for ex in examples}
    try:
        module.prepare_candidates(lm, examples, prompt1=other[:1])
    except ValueError as err:
        assert "shape" in str(err)
    else:
        raise AssertionError("a prompt of the wrong shape was accepted")


def test_include_greedy_casts_the_greedy_answer_first(lm, examples):
    """include_greedy: pass 1's greedy answer is one more vote, cast first, so it is shown
    in its own spelling and wins ties; the sampled votes are the same as without it."""
    from shoulders.data.metrics import normalize_answer

    sampled = _module(lm, stage="pass2")
    both = _module(lm, stage="pass2", sampling={"n": 4, "max_new_tokens": 3, "include_greedy": True})
    greedy = [g[0].text.strip() for g in both.pass1_generate(lm, examples, GenerationConfig(max_new_tokens=3))]
    for g, a, b in zip(greedy, sampled.candidates(lm, examples), both.candidates(lm, examples)):
        assert a.n == 4 and b.n == 5
        assert sum(c for _, c in b.merged) == sum(c for _, c in a.merged) + (1 if g else 0)
        if not g:
            continue
        key = normalize_answer(g) or g.lower()
        before = sum(c for ans, c in a.merged if (normalize_answer(ans) or ans.lower()) == key)
        assert dict(b.merged)[g] == before + 1
        if dict(b.merged)[g] == b.merged[0][1]:
            assert b.merged[0][0] == g  # a tie goes to the greedy answer


def test_candidate_order_puts_the_most_frequent_nearest_the_question(lm, examples):
    from shoulders.recursion.candidates import Candidates

    cands = Candidates([("Paris", 3), ("Lyon", 1)], n=4)
    first, last = _module(lm, stage="pass2"), _module(lm, stage="pass2", candidate_order="ascending")
    assert first.pass2_text(examples[0], cands).startswith("Candidates: Paris (3); Lyon (1). Q:")
    assert last.pass2_text(examples[0], cands).startswith("Candidates: Lyon (1); Paris (3). Q:")


def test_candidates_written_as_question_answer_lines(lm, examples):
    from shoulders.recursion.candidates import Candidates

    module = _module(lm, stage="pass2", candidate_order="ascending", candidate_template="{question} {answer}",
                     candidate_separator="\n", pass2_template="{candidates}\n{question}")
    question = module.config.text.render(examples[0].input)
    text = module.pass2_text(examples[0], Candidates([("Paris", 3), ("Lyon", 1)], n=4))
    assert text == f"{question} Lyon\n{question} Paris\n{question}"


def test_templates_that_would_hide_the_candidates_are_refused(lm):
    import pytest

    with pytest.raises(ValueError, match="pass2_template .* has no {candidates}"):
        _module(lm, stage="pass2", pass2_template="{question}")
    with pytest.raises(ValueError, match="candidate_template .* has no {answer}"):
        _module(lm, stage="pass2", candidate_template="({count})")


def test_pass2_fills_its_template_once_so_an_answers_braces_stay(lm, examples):
    from shoulders.recursion.candidates import Candidates

    module = _module(lm, stage="pass2")
    question = module.config.text.render(examples[0].input)
    text = module.pass2_text(examples[0], Candidates([("{question}", 2), ("{candidates}", 1)], n=3))
    assert text == f"Candidates: {{question}} (2); {{candidates}} (1). {question}"


def test_the_experiments_settings_refuse_bad_templates_up_front():
    """RecursionSettings checks the templates it hands to TextualRecursionConfig, so a bad one
    stops the run before the single pass trains."""
    import pytest
    from pydantic import ValidationError

    from shoulders.experiments.recursion import RecursionSettings

    with pytest.raises(ValidationError, match="pass2_template .* has no {candidates}"):
        RecursionSettings(pass2_template="{question}")
    with pytest.raises(ValidationError, match="candidate_template .* has no {answer}"):
        RecursionSettings(candidate_template="{question}")


def test_choose_answers_the_candidate_pass2_scores_highest(lm, examples):
    from shoulders.recursion.candidates import Candidates
    from shoulders.recursion.common import score_continuations

    module = _module(lm, stage="pass2", answer="choose").eval()
    cands = [Candidates([("Paris", 2), ("Lyon", 1), ("Nice", 1)], 4), Candidates([("Rome", 4)], 4),
             Candidates([], 4)]  # the last has nothing to choose from: generated instead
    exs = examples[:3]
    gens = module.pass2_generate(lm, exs, GenerationConfig(max_new_tokens=3), cands)
    with torch.no_grad():
        prefix, ids = module.pass2_inputs(lm, exs, cands)
        lp = score_continuations(lm, prefix, ids, [module.encode_targets(lm, [a for a, _ in c.merged]) for c in cands])
    assert gens[0][0].text == ["Paris", "Lyon", "Nice"][max(range(3), key=lp[0].__getitem__)]
    assert gens[1][0].text == "Rome" and lp[2] == []
    generated = _module(lm, stage="pass2").eval().pass2_generate(lm, exs[2:], GenerationConfig(max_new_tokens=3),
                                                                 cands[2:])
    assert gens[2][0].text == generated[0][0].text  # the fallback is pass 2's own generation
    # scores are each row's own: scoring one row alone gives the same numbers
    alone = score_continuations(lm, prefix, ids[:1], [module.encode_targets(lm, ["Paris", "Lyon", "Nice"])])
    assert alone[0] == pytest.approx(lp[0], abs=1e-4)


def test_choose_is_the_answer_of_generate_and_evaluation(lm, examples):
    from shoulders.recursion.evaluate import score_textual

    module = _module(lm, stage="pass2", answer="choose").eval()
    cands = module.candidates(lm, examples)
    assert any(c.merged for c in cands)
    got = [g[0].text for g in module.generate(lm, examples, GenerationConfig(max_new_tokens=3))]
    for text, c in zip(got, cands):
        assert text in [a for a, _ in c.merged] or not c.merged  # always one of pass 1's answers
    chose = score_textual(module, lm, examples, max_new_tokens=3)
    wrote = score_textual(_module(lm, stage="pass2").eval(), lm, examples, max_new_tokens=3)
    assert [c.merged for c in chose.candidates] == [c.merged for c in cands]  # the same pass 1
    # choosing costs one pass-2 forward per candidate: more FLOPs than one written answer wherever several
    several = [i for i, c in enumerate(cands) if len(c.merged) > 1]
    assert several and all(chose.flops[i] > wrote.flops[i] for i in several)


def test_choose_picks_only_among_the_candidates_pass2_is_shown(lm, examples):
    from shoulders.recursion.candidates import Candidates

    module = _module(lm, stage="pass2", answer="choose", sampling={"n": 4, "max_new_tokens": 3, "max_shown": 1})
    cands = [Candidates([("Paris", 2), ("Lyon", 1), ("Nice", 1)], 4)]
    assert module.choices(cands[0]) == ["Paris"]
    assert module.eval().pass2_generate(lm, examples[:1], GenerationConfig(max_new_tokens=3), cands)[0][0].text == "Paris"
