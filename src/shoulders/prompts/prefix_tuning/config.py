"""Prefix tuning's configuration: the number of learned key/value positions, their
initialisation, and PEFT's optional projection (an MLP that writes them)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shoulders.modules.base import ModuleConfig


class PrefixTuningConfig(ModuleConfig):
    """Prefix tuning's hyper-parameters."""

    num_virtual_tokens: int = Field(20, gt=0, description="P: learned key/value positions in every layer")
    init: Literal["vocab", "text", "random"] = Field(
        "vocab", description="vocab: the backbone's own keys and values for P sampled tokens read as one sequence; "
        "text: those of `init_text` (repeated or cut to P tokens), so training starts from the backbone reading "
        "that text first; random: N(0, std of a vocab init). With projection, only random")
    init_text: str | None = Field(None, description="text for init='text'")
    init_vocab_top: int = Field(5000, gt=0, description="init='vocab' samples from the first K token ids")
    projection: bool = Field(False, description="PEFT's prefix_projection: a [P, kv_width] embedding through a "
                             "two-layer tanh MLP gives the keys and values (Li & Liang's reparameterisation); "
                             "export to PEFT writes the MLP's output")
    projection_hidden: int | None = Field(None, gt=0, description="the MLP's hidden width (PEFT's "
                                          "encoder_hidden_size); null = kv_width")
    seed: int = Field(0, description="seed of the initialisation")

    @model_validator(mode="after")
    def _check(self):
        if self.init == "text" and not self.init_text:
            raise ValueError("init='text' needs init_text")
        if self.projection and self.init != "random":
            raise ValueError(f"projection: true starts from PEFT's random initialisation; set init: random "
                             f"(got init: {self.init})")
        if self.projection_hidden is not None and not self.projection:
            raise ValueError("projection_hidden is set but projection is false")
        return self
