"""Gated recursion: the two ends of the threshold, the sweep, the plot."""
import math

import pytest
import torch

from shoulders.backbone import GenerationConfig
from shoulders.prompts import PromptTuning, PromptTuningConfig
from shoulders.recursion import NeuralRecursion, NeuralRecursionConfig, TextualRecursion, TextualRecursionConfig
from shoulders.recursion.gated import choose_threshold, gate_sweep, gated_generate, plot_gate_sweep

CFG = GenerationConfig(max_new_tokens=3)


def _texts(gens):
    return [g[0].token_ids for g in gens]


@pytest.mark.parametrize("kind", ["neural", "textual"])
def test_threshold_minus_inf_is_single_pass_and_plus_inf_always_recurses(lm, examples, kind):
    common = {"pass1": {"num_virtual_tokens": 3, "init": "random", "seed": 4}, "pass2": {"num_virtual_tokens": 2}}
    if kind == "neural":
        build = lambda gate: NeuralRecursion.build(NeuralRecursionConfig(**common, gate=gate), lm)  # noqa: E731
    else:
        build = lambda gate: TextualRecursion.build(  # noqa: E731
            TextualRecursionConfig(**common, stage="pass2", gate=gate, sampling={"n": 3, "max_new_tokens": 3}), lm)
    single = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=3, init="random", seed=4), lm)
    never = build({"threshold": -math.inf})
    assert torch.equal(never.prompt1, single.prompt)
    assert _texts(never.generate(lm, examples, CFG)) == _texts(single.generate(lm, examples, CFG))
    always = build({"threshold": math.inf})
    plain = build({"threshold": None})
    assert _texts(always.generate(lm, examples, CFG)) == _texts(plain.generate(lm, examples, CFG))
    result = gated_generate(always, lm, examples, CFG)
    assert result.recursed == [True] * len(examples)
    assert not any(gated_generate(always, lm, examples, CFG, threshold=-math.inf).recursed)
    sampled = GenerationConfig(max_new_tokens=2, do_sample=True, n=2, seed=0)  # the server asks for n per input
    for module in (never, always):
        assert [len(g) for g in module.generate(lm, examples, sampled)] == [2] * len(examples)


def test_agreement_gate_uses_the_candidates(lm, examples):
    module = TextualRecursion.build(TextualRecursionConfig(
        stage="pass2", gate={"threshold": 0.5, "confidence": "agreement"}, sampling={"n": 4, "max_new_tokens": 2}), lm)
    result = gated_generate(module, lm, examples, CFG)
    cands = module.candidates(lm, examples)
    assert result.confidence == [c.agreement for c in cands]
    assert result.recursed == [c.agreement < 0.5 for c in cands]
    for r, first, c in zip(result.recursed, result.first, cands):
        assert first.text == c.top


def test_sweep_accounting_and_plot(tmp_path):
    conf = [-0.1, -2.0, -0.5, -3.0]
    c1, c2 = [1, 0, 1, 0], [0, 1, 1, 1]
    rows = gate_sweep(conf, c1, c2, [-math.inf, -1.0, math.inf])
    assert [r["em"] for r in rows] == [50.0, 100.0, 75.0]
    assert [r["forward_passes"] for r in rows] == [1.0, 1.5, 2.0]
    assert choose_threshold(rows)["threshold"] == -1.0
    plot_gate_sweep(gate_sweep(conf, c1, c2), tmp_path / "gate.png", references={"single": (1.0, 50.0)},
                    chosen=rows[1])
    assert (tmp_path / "gate.png").stat().st_size > 1000


def test_configs_reject_unusable_gates_and_copies():
    with pytest.raises(ValueError, match="mean_logprob"):
        NeuralRecursionConfig(gate={"threshold": 0.0, "confidence": "agreement"})
    with pytest.raises(ValueError, match="pass2_copies_pass1"):
        TextualRecursionConfig(pass1={"num_virtual_tokens": 4}, pass2={"num_virtual_tokens": 3}, pass2_copies_pass1=True)
    with pytest.raises(ValueError, match="extra"):
        NeuralRecursionConfig(conector={"kind": "mlp"})  # a typo is an error, not a default
