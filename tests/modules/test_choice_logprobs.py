"""Rank classification (`SoftPromptModule.choice_logprobs`): an example whose choices are
one token each is scored from one row; the numbers are the sums of per-token log-probs a
row per choice gives."""
from __future__ import annotations

import pytest
import torch

from shoulders.data.examples import Example
from shoulders.prompts import PromptTuning, PromptTuningConfig


def _per_choice_rows(module, lm, ex: Example) -> list[float]:
    """The reference: one [prompt ; input ; choice] row per choice, target tokens summed."""
    ids = module.encode_inputs(lm, [ex])[0]
    out = []
    for c in ex.choices:
        tgt = lm.encode([module.config.text.target_prefix + c], add_special_tokens=False)[0]
        with torch.no_grad():
            out.append(float(lm(module.prompt, [ids], [tgt]).row_logprob(1)[0]))
    return out


def test_one_token_and_longer_choices_score_like_a_row_per_choice(lm):
    torch.manual_seed(0)
    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=4, init="random", seed=1), lm)
    tp = module.config.text.target_prefix
    one = [w for w in ("red", "cat", "dog", "the", "a") if len(lm.encode([tp + w], add_special_tokens=False)[0]) == 1]
    many = ["paris was born", "a dog was born in", "river of rome"]
    assert len(one) >= 2  # one-token choices, so that the one-row path runs
    examples = [Example(input="the cat is", target=one[0], choices=one[:2]),
                Example(input="where was it", target=many[0], choices=many),
                Example(input="red", target=one[1], choices=[one[1], one[0], many[2]])]
    got = module.choice_logprobs(lm, examples)
    for ex, scores in zip(examples, got):
        assert scores == pytest.approx(_per_choice_rows(module, lm, ex), abs=1e-4)
