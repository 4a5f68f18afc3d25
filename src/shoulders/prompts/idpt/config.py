"""ID-PT's configuration: the frozen encoder, the cross-attention network that turns its
output into the prompt, and the optional input-independent (fixed, shared) prompts."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shoulders.modules.base import ModuleConfig
from shoulders.prompts.encoders import DEFAULT_ENCODER


class IDPTConfig(ModuleConfig):
    prompt_length: int = Field(8, ge=1, description="L: input-dependent prompt vectors generated per input")
    encoder: str = Field(DEFAULT_ENCODER, description="frozen encoder: a BERT-family or T5 checkpoint (directory or "
                         "hub id); the default is the bundled all-MiniLM-L6-v2, found offline")
    encoder_prompt_length: int = Field(4, ge=0, description="learned soft-prompt vectors prepended to the encoder's "
                                       "input (prompt tuning of the frozen encoder); 0 = none, and then no backward "
                                       "pass runs through the encoder")
    max_encoder_tokens: int = Field(64, gt=0, description="encoder tokens per input (its own special tokens "
                                    "included); longer inputs keep their start")
    pooling: Literal["none", "mean"] = Field("none", description="none: queries attend over every encoder output "
                                             "(the paper); mean: over one masked-mean vector (a cheap ablation)")
    layers: int = Field(2, ge=1, description="cross-attention blocks")
    heads: int = Field(4, ge=1, description="attention heads per block")
    hidden_size: int = Field(128, ge=8, description="width of the cross-attention network")
    mlp_ratio: int = Field(4, ge=1, description="MLP width as a multiple of hidden_size")
    self_attention: bool = Field(True, description="a self-attention layer among the prompt vectors in each block")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout in the cross-attention network")
    fixed_prompt_length: int = Field(0, ge=0, description="F: an input-independent learned prompt placed before p(x)")
    shared_prompt: bool = Field(False, description="p(x) = P + g(x): a learned shared prompt P (vocabulary-initialised) "
                                "plus the generated part, which starts at zero, so training starts from prompt tuning")
    shared_lr: float | None = Field(None, gt=0, description="learning rate of the input-independent prompts (fixed "
                                    "and shared); default: the optimizer's lr")
    seed: int = Field(0, description="seed of the initialisation")

    @model_validator(mode="after")
    def _check(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by heads {self.heads}")
        return self
