"""Shared fixtures: tiny randomly initialised GPT-2 and Llama backbones, built offline.

Both use a small byte-level BPE tokenizer trained here, saved next to the model as an
ordinary HF directory so that FrozenLM.from_pretrained loads them like any hub model.
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

from tests.helpers import build_tiny_backbone  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {family: build_tiny_backbone(root / family, family) for family in ("gpt2", "llama")}


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def family(request):
    return request.param


@pytest.fixture(scope="session")
def tiny_dir(tiny_dirs, family):
    return tiny_dirs[family]


@pytest.fixture()
def lm(tiny_dir):
    from shoulders.backbone import FrozenLM

    return FrozenLM.from_pretrained(tiny_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def skill_gpt2(tmp_path_factory):
    """A tiny GPT-2 that has learnt a skill behind a mode word (tests.helpers.skill_corpus):
    the learning tests of several module types share it (pre-training it is the slow part)."""
    from tests.helpers import pretrain_tiny_backbone

    return pretrain_tiny_backbone(tmp_path_factory.mktemp("skill") / "gpt2", "gpt2")
