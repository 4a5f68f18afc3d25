"""A tiny world shared by the toyworld tests (built once per session, in well under a second)."""
from __future__ import annotations

import pytest

from shoulders.toyworld import ToyworldConfig, load_world_data
from shoulders.toyworld.corpus import CorpusConfig
from shoulders.toyworld.tasks import TaskSetConfig
from shoulders.toyworld.world import WorldConfig


def tiny_config(**overrides) -> ToyworldConfig:
    cfg = ToyworldConfig(world=WorldConfig.tiny(), corpus=CorpusConfig(n_passes=2),
                         tasks=TaskSetConfig(n_train=30, n_dev=8, n_test=8))
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="session")
def data():
    return load_world_data(seed=0, config=tiny_config())
