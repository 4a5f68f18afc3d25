"""The architecture matrix (tests/backbone/matrix.py) as a test.

CI runs a subset that covers every cause issue #23 found, each family named with what
it exercises; `SHOULDERS_FULL_MATRIX=1` runs every causal-LM family of the installed
transformers instead (docs/families.md: `python -m tests.backbone.matrix --write
docs/families.md` also rewrites the table there).
"""
from __future__ import annotations

import os
import warnings

import pytest

from tests.backbone.matrix import all_families, check

# family -> expected result; the comment says which cause of issue #23 (or which probe) it covers
CI_FAMILIES = {
    "llama": "pass",  # the plain path (the toy backbones)
    "gpt2": "pass",
    "cohere": "pass",  # A: logit_scale after the head
    "minicpm3": "pass",  # A: scaling before the head (and MLA attention)
    "recurrent_gemma": "pass",  # A: logits_soft_cap; D: recurrent blocks beside attention
    "llama4_text": "pass",  # B: its base_model_prefix names no attribute
    "rwkv": "pass",  # C: cache keyword `state` (was swallowed); batched decode differs, so one row per batch
    "openai-gpt": "pass",  # C: no cache at all: recompute
    "minimax": "pass",  # C: its own cache class; rows cannot be dropped, so finished rows stay
    "mamba": "pass",  # D: recurrent state; the attention mask breaks its cache, so steps go without it
    "qwen3_next": "pass",  # D: linear-attention layers drop rows through reorder_cache
    "falcon_h1": "pass",  # D: conv state rows; A: lm_head_multiplier
    "gemma3n_text": "pass",  # E: per-layer token embeddings need the ids beside the soft vectors
    "gemma4_text": "pass",  # E: reverses its embedding to find the ids: soft vectors only through ids + hook
    "roberta": "pass",  # its position ids start after the pad id: not passed
    "ctrl": "pass",  # scales inputs_embeds in place: given a copy
    "cpmant": "refused",  # no inputs_embeds and its layers do not read the input embedding's output
    "prophetnet": "refused",  # right padding changes the other rows
}

FULL = os.environ.get("SHOULDERS_FULL_MATRIX") == "1"
FAMILIES = all_families() if FULL else sorted(CI_FAMILIES)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    import transformers

    from tests.helpers import train_tokenizer

    transformers.logging.set_verbosity_error()
    return train_tokenizer(tmp_path_factory.mktemp("matrix_tok"))


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one thread (two fight each other, and a loaded machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("family", FAMILIES)
def test_family(family, tok, tmp_path, one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = check(family, tok, tmp_path)
    expected = CI_FAMILIES.get(family)
    if expected is None:  # the full matrix: every family passes, is refused at load, or is not built (why is listed)
        assert result.result in ("pass", "refused", "not built"), f"{family}: {result.result}: {result.reason}"
    else:
        assert result.result == expected, f"{family}: {result.result}: {result.reason}"
    if result.result == "refused":
        assert "\n" not in result.reason and family in result.reason


def test_ci_subset_is_in_the_installed_transformers():
    assert set(CI_FAMILIES) <= set(all_families())


# How each family runs, as the load-time probes find it in the installed transformers
# (a transformers upgrade that fixes or breaks one of these shows up here first).
PLANS = {
    "llama": [],
    "rwkv": ["its own position ids", "one row per batch"],
    "openai-gpt": ["no usable cache: recompute"],
    "minimax": ["finished rows kept"],
    "mamba": ["its own position ids", "steps without mask", "padding ignored: rows by length"],
    "gemma3n_text": ["token ids beside embeddings"],
    "roberta": ["its own position ids", "padding ignored: rows by length"],
    "ctrl": ["embeddings copied (written in place)"],
}


@pytest.mark.parametrize("family", sorted(PLANS))
def test_how_each_family_runs(family, tok, one_thread):
    from shoulders.backbone import FrozenLM
    from tests.backbone.families import tiny_model

    lm = FrozenLM(tiny_model(family, tok), tok, family)
    assert lm.family.notes() == PLANS[family]
    if family == "llama":  # the plain path: every shortcut taken
        f = lm.family
        assert (f.cache_kw, f.needs_ids, f.positions, f.narrow, f.step_mask, f.batched, f.rows, f.padding,
                f.mergeable) == ("cache", False, True, True, True, True, True, True, True)
