"""Modules saved before prompt tuning, ID-PT and prefix tuning each moved into a folder of
their own (`shoulders.prompts.<method>/`, issue #24) still load and give the same prefix:
module.json names a type (`module_type`), never a Python path, and the names stay.

The fixtures under tests/fixtures/modules_before_layout/ were written by commit c489ba7
(the flat layout) with `save_module` on the tests' tiny GPT-2 (hidden 32, 2 layers, 4
heads); `expected_prefix.safetensors` holds each module's `prefix(lm, INPUTS)` computed
then, with the module in eval mode.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shoulders.modules.io import load_module
from shoulders.modules.registry import MODULE_TYPES, module_class

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "modules_before_layout"
INPUTS = ["a joy from start to finish", "a dull mess"]
# Every type name a module.json could hold before the move.
TYPES_BEFORE = {"prompt_tuning", "idpt", "prefix_tuning", "reranker", "reader", "textual_recursion",
                "neural_recursion", "finetune"}


def test_the_type_names_are_the_ones_modules_were_saved_with():
    assert TYPES_BEFORE <= set(MODULE_TYPES)
    for name in TYPES_BEFORE:
        assert module_class(name).module_type == name


def test_the_public_names_stay_importable():
    import shoulders
    import shoulders.prompts as prompts
    from shoulders.prompts import PromptTuning, PromptTuningConfig  # noqa: F401 - the import is the test

    for name in ("InputDependentPrompt", "IDPTConfig", "PrefixTuning", "PrefixTuningConfig"):
        assert getattr(prompts, name) is getattr(shoulders, name)
    assert prompts.PrefixTuning is module_class("prefix_tuning")
    assert prompts.InputDependentPrompt is module_class("idpt")


@pytest.fixture(scope="module")
def gpt2(tiny_dirs):
    from shoulders.backbone import FrozenLM

    return FrozenLM.from_pretrained(tiny_dirs["gpt2"], dtype="float32", device="cpu")


@pytest.mark.parametrize("module_type", ["prompt_tuning", "prefix_tuning", "idpt"])
def test_a_module_saved_before_the_move_loads_and_gives_the_same_prefix(gpt2, module_type):
    # The backbone check is off: the fixture pins the type names and the format, not this
    # machine's random initialisation of the tiny backbone (only its sizes matter here).
    module = load_module(FIXTURES / module_type, gpt2, check_backbone=False).eval()
    assert module.module_type == module_type
    saved = load_file(str(FIXTURES / module_type / "weights.safetensors"))
    state = module.state_to_save()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key].cpu(), value), key
    expected = load_file(str(FIXTURES / "expected_prefix.safetensors"))
    with torch.no_grad():
        prefix = module.prefix(gpt2, INPUTS)
    if module_type == "prefix_tuning":
        for i, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
            assert torch.equal(k, expected[f"prefix_tuning.keys.{i}"])
            assert torch.equal(v, expected[f"prefix_tuning.values.{i}"])
        assert len(prefix.keys) == sum(key.startswith("prefix_tuning.keys.") for key in expected)
    elif module_type == "prompt_tuning":
        assert torch.equal(prefix, expected["prompt_tuning"])
    else:  # the frozen encoder and the cross-attention network run: float32 rounding may differ by threads
        torch.testing.assert_close(prefix, expected["idpt"])
