"""Stand-ins for module kinds whose real classes are being written elsewhere: a module
with its own `generate` (like recursion) and a reader with `answer`. They follow the
module protocol, so they are saved and loaded like any module."""
from __future__ import annotations

import time

import torch
from torch import nn

from shoulders.backbone.generation import Generation
from shoulders.modules.base import ModuleConfig, SoftModule


class FakeConfig(ModuleConfig):
    delay: float = 0.0  # seconds each call takes (to test timeouts)


class _Fake(SoftModule):
    config_class = FakeConfig

    def __init__(self, config):
        super().__init__(config)
        self.w = nn.Parameter(torch.zeros(1))

    @classmethod
    def build(cls, config, backbone):
        return cls(config)


class FakeRecursion(_Fake):
    """Two "passes": echoes the input twice, so its output is recognisable."""

    module_type = "fake_recursion"

    def generate(self, backbone, inputs, config=None, **overrides):
        time.sleep(self.config.delay)
        n = config.n if config else 1
        return [[Generation(f"{x}|{x}"[: 4 * config.max_new_tokens], [1, 2], [0.0, 0.0], "length")
                 for _ in range(n)] for x in inputs]


class FakeReader(_Fake):
    module_type = "fake_reader"

    def answer(self, backbone, question, config=None):
        time.sleep(self.config.delay)
        return {"answer": "paris", "passages": [f"passage about {question}"], "scores": [0.9],
                "max_new_tokens": config.max_new_tokens if config else None}
