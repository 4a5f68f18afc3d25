"""How to generate: the knobs `FrozenLM.generate` and every module's `generate` read."""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator, model_validator

from shoulders.utils.strict_model import StrictModel

DEFAULT_MAX_NEW_TOKENS = 32  # also the room `prompt_embeds` reserves when not told


class GenerationConfig(StrictModel):
    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, description="tokens to generate at most, per sample")
    do_sample: bool = Field(False, description="sample from the distribution; False = greedy (argmax)")
    temperature: float = Field(1.0, description="sampling temperature, > 0 (do_sample only)")
    top_p: float = Field(1.0, description="nucleus sampling: keep the smallest set of tokens holding this much "
                         "probability, in (0, 1]; 1 = off (do_sample only)")
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens; 0 = off (do_sample only)")
    n: int = Field(1, ge=1, description="samples per input (they share one prefill)")
    stop: Sequence[str] = Field(default_factory=tuple, description="strings that end a sample (not included in "
                                "its text); one string is taken as a list of one")
    seed: int | None = Field(None, description="seeds sampling; None = torch's global RNG")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, v):
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self):
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        return self
