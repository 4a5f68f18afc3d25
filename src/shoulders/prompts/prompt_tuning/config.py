"""Prompt tuning's configuration: one learned prompt (`PromptSpec`, which the recursion
modules share) and the module's config, the prompt plus its text format."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shoulders.modules.base import ModuleConfig, StrictModel


class PromptSpec(StrictModel):
    """One learned prompt: its length and initialisation (shared with the recursion modules)."""

    num_virtual_tokens: int = Field(20, gt=0, description="number of learned prompt vectors")
    init: Literal["random", "vocab", "text"] = Field(
        "vocab", description="random: N(0, std of the embedding matrix); vocab: embeddings of sampled "
        "tokens (Lester et al.); text: embeddings of `init_text`, repeated or cut to length (PEFT's TEXT)"
    )
    init_text: str | None = Field(None, description="text for init='text'")
    init_vocab_top: int = Field(5000, gt=0, description="init='vocab' samples from the first K token ids")
    seed: int = Field(0, description="seed of the initialisation")

    @model_validator(mode="after")
    def _check(self):
        if self.init == "text" and not self.init_text:
            raise ValueError("init='text' needs init_text")
        return self


class PromptTuningConfig(ModuleConfig, PromptSpec):
    """Prompt tuning's hyper-parameters: the prompt (PromptSpec) and the text format."""
