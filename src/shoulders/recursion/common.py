"""What textual and neural recursion share: two learned prompts on one frozen LM.

Pass 1 is [prompt1 ; question] — on its own, exactly a prompt-tuned single pass. Pass 2
is [prompt2 ; what pass 1 left ; ...] and writes the final answer. Each subclass says
what pass 2 reads (`pass2_inputs`); scoring, rank classification, generation and
gating (run pass 2 only when pass 1 is unsure) are written once here.

Every parameter is saved, trainable or not: a prompt frozen for one training stage is
still a learned weight the module cannot work without (unlike a frozen encoder, which
is rebuilt from its name).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from shoulders.backbone.generation import Generation, GenerationConfig
from shoulders.backbone.layout import Prefix, split_prefix
from shoulders.data.examples import Example
from shoulders.modules.base import ModuleConfig, SoftModule, StrictModel
from shoulders.prompts.prompt_tuning.config import PromptSpec
from shoulders.prompts.prompt_tuning.model import initial_prompt


class GateConfig(StrictModel):
    """Gated recursion: answer from pass 1 alone when it is confident enough."""

    threshold: float | None = Field(None, description="run pass 2 only for questions whose pass-1 confidence "
                                    "is below this; null = always run pass 2, -inf = never (pass 1 alone)")
    confidence: Literal["mean_logprob", "agreement"] = Field(
        "mean_logprob", description="mean_logprob: mean token log-probability of pass 1's greedy answer; "
        "agreement: share of pass 1's sampled candidates that agree with the top one (textual only)")


class TwoPassConfig(ModuleConfig):
    pass1: PromptSpec = Field(default_factory=PromptSpec, description="pass 1's prompt")
    pass2: PromptSpec = Field(default_factory=lambda: PromptSpec(seed=1), description="pass 2's prompt")
    init_from: str | None = Field(None, description="saved module whose weights start this one: a module with one "
                                  "shared prompt (prompt_tuning) gives prompt1; a module of this type gives "
                                  "everything (used at build only)")
    pass2_copies_pass1: bool = Field(False, description="start prompt2 as a copy of prompt1 (after init_from), so "
                                     "pass 2 starts as the single pass; needs equal prompt lengths (build only)")
    gate: GateConfig = Field(default_factory=GateConfig, description="gated recursion at inference")
    answer_tokens: int = Field(32, gt=0, description="tokens kept free for the answer when inputs are fit to the "
                               "backbone's context window (longer inputs lose their first tokens)")

    @model_validator(mode="after")
    def _check_copy(self):
        if self.pass2_copies_pass1 and self.pass1.num_virtual_tokens != self.pass2.num_virtual_tokens:
            raise ValueError("pass2_copies_pass1 needs pass1.num_virtual_tokens == pass2.num_virtual_tokens")
        return self


def score_continuations(backbone, prefix, ids: list[list[int]], continuations: list[list[list[int]]]) -> list[list[float]]:
    """Summed log-probability of each continuation (token ids) of each row [prefix_i ; ids_i]:
    one row per (row, continuation), in one batch; `prefix` is shared or per row."""
    per_row = split_prefix(prefix, len(ids))
    rows_p, rows_i, rows_t, owner = [], [], [], []
    for i, conts in enumerate(continuations):
        for t in conts:
            rows_p.append(per_row[i])
            rows_i.append(ids[i])
            rows_t.append(t)
            owner.append(i)
    out: list[list[float]] = [[] for _ in ids]
    if rows_t:
        for i, v in zip(owner, backbone(rows_p, rows_i, rows_t).row_logprob(len(rows_i)).tolist()):
            out[i].append(v)
    return out


def as_example(x: Example | str) -> Example:
    return x if isinstance(x, Example) else Example(input=x, target="")


def init_weights_from(module: nn.Module, path: str | Path, backbone) -> None:
    """Copy weights of a saved module into `module`: a module of the same type gives every
    weight; one whose capabilities declare a `single_prompt` (prompt tuning) gives prompt1."""
    from shoulders.modules.io import load_module

    saved = load_module(path, backbone)
    params = dict(module.named_parameters())
    if type(saved).capabilities.single_prompt:
        source = {"prompt1": saved.single_prompt()}
    elif saved.module_type == getattr(module, "module_type", None):
        source = dict(saved.named_parameters())
    else:
        raise ValueError(f"init_from {path}: cannot start a {module.module_type} from a {saved.module_type} module")
    with torch.no_grad():
        for name, value in source.items():
            if params[name].shape != value.shape:
                raise ValueError(f"init_from {path}: {name!r} has shape {tuple(value.shape)}, "
                                 f"this module expects {tuple(params[name].shape)}")
            params[name].copy_(value)


class TwoPassModule(SoftModule):
    """Base of the recursion modules: prompt1 [P1, D], prompt2 [P2, D], pass 2 per subclass."""

    config: TwoPassConfig

    def __init__(self, config: TwoPassConfig, hidden_size: int):
        super().__init__(config)
        self.prompt1 = nn.Parameter(torch.zeros(config.pass1.num_virtual_tokens, hidden_size))
        self.prompt2 = nn.Parameter(torch.zeros(config.pass2.num_virtual_tokens, hidden_size))

    @classmethod
    def build(cls, config: TwoPassConfig, backbone) -> "TwoPassModule":
        module = cls(config, backbone.hidden_size)
        module.init_fresh(backbone)
        if config.init_from:
            init_weights_from(module, config.init_from, backbone)
        if config.pass2_copies_pass1:
            module.prompt2.data.copy_(module.prompt1.data)
        module.set_trainable()
        return module.to(backbone.device)

    @classmethod
    def from_saved(cls, config: TwoPassConfig, meta: dict, backbone) -> "TwoPassModule":
        hidden = backbone.hidden_size if backbone is not None else meta["backbone"]["hidden_size"]
        module = cls(config, hidden)
        module.set_trainable()
        return module

    def init_fresh(self, backbone) -> None:
        """Initial weights of a new module (sizes and scales from the backbone)."""
        with torch.no_grad():
            self.prompt1.copy_(initial_prompt(self.config.pass1, backbone))
            self.prompt2.copy_(initial_prompt(self.config.pass2, backbone))

    def set_trainable(self) -> None:
        """Set requires_grad per the config (what the trainer's optimizer will update)."""

    def state_to_save(self) -> dict[str, Tensor]:
        return {n: p.detach() for n, p in self.named_parameters()}

    # ------------------------------------------------------------------ text
    def encode_inputs(self, backbone, examples: Sequence[Example]) -> list[list[int]]:
        return self._encode(backbone, [self.config.text.render(ex.input) for ex in examples])

    def _encode(self, backbone, texts: Sequence[str]) -> list[list[int]]:
        limit = min(self.config.text.max_input_tokens, self.input_room(backbone))
        return [t[-limit:] if len(t) > limit else t for t in backbone.encode(list(texts))]

    def input_room(self, backbone) -> int:
        """The most tokens one input may keep so that every pass (prompt + what it reads +
        `answer_tokens`) fits the backbone's window; subclasses whose pass 2 reads more
        than one copy of the input narrow it."""
        n_prompt = max(self.prompt1.shape[0], self.prompt2.shape[0])
        return self._room(backbone, n_prompt + self.config.answer_tokens)

    @staticmethod
    def _room(backbone, used: int, copies: int = 1) -> int:
        room = (backbone.max_context - used) // copies
        if room < 1:
            from shoulders.errors import WindowError

            raise WindowError(f"prompts and answer budget take {used} of the backbone's {backbone.max_context}-token "
                              "window and leave no room for the input; shorten the prompts or answer_tokens")
        return room

    def encode_targets(self, backbone, targets: Sequence[str]) -> list[list[int]]:
        return backbone.encode_targets([self.config.text.target_prefix + t for t in targets])

    # ---------------------------------------------------------------- passes
    def pass1_generate(self, backbone, examples: Sequence[Example], config: GenerationConfig | None = None,
                       **overrides) -> list[list[Generation]]:
        """Pass 1 alone answering: a prompt-tuned single pass with prompt1."""
        with torch.no_grad():
            return backbone.generate(self.prompt1, self.encode_inputs(backbone, examples), config, **overrides)

    def pass2_inputs(self, backbone, examples: Sequence[Example],
                     states: list | None = None) -> tuple[Prefix, list[list[int]]]:
        """What pass 2 reads: (soft prefix, token ids) per example. `states` are what
        `pass1` returned for these examples, if it ran, so nothing is recomputed."""
        raise NotImplementedError

    def pass1(self, backbone, examples: Sequence[Example],
              config: GenerationConfig) -> tuple[list[Generation], list[float], list]:
        """Pass 1's answers, confidences and a per-example state for `pass2_inputs` (gating).
        Default: greedy answers scored by their mean token log-probability."""
        if self.config.gate.confidence != "mean_logprob":
            raise ValueError(f"{self.module_type}: gate.confidence {self.config.gate.confidence!r} is not supported")
        greedy = GenerationConfig(**{**config.__dict__, "do_sample": False, "n": 1})
        gens = [g[0] for g in self.pass1_generate(backbone, examples, greedy)]
        return gens, [g.mean_logprob for g in gens], [None] * len(gens)

    def recursing(self) -> bool:
        """Whether inference runs pass 2 at all (textual recursion's stage 1 does not)."""
        return True

    # ------------------------------------------------------------ protocol
    def choice_logprobs(self, backbone, examples: Sequence[Example]) -> list[list[float]]:
        """Log-likelihood of each choice after pass 2 (or pass 1 when not recursing)."""
        if self.recursing():
            prefix, ids = self.pass2_inputs(backbone, examples)
        else:
            prefix, ids = self.prompt1, self.encode_inputs(backbone, examples)
        return score_continuations(backbone, prefix, ids, [
            backbone.encode([self.config.text.target_prefix + c for c in ex.choices], add_special_tokens=False)
            for ex in examples])

    def generate(self, backbone, inputs: Sequence[Example | str], config: GenerationConfig | None = None,
                 **overrides) -> list[list[Generation]]:
        """Final answers: pass 2 after pass 1, or gated (see `shoulders.recursion.gated`)."""
        from shoulders.recursion.gated import gated_generate

        examples = [as_example(x) for x in inputs]
        config = config or GenerationConfig()
        if overrides:
            config = GenerationConfig(**{**config.__dict__, **overrides})
        if not self.recursing():
            return self.pass1_generate(backbone, examples, config)
        if self.config.gate.threshold is not None:
            return gated_generate(self, backbone, examples, config).generations
        return self.pass2_generate(backbone, examples, config)

    def pass2_generate(self, backbone, examples: Sequence[Example], config: GenerationConfig,
                       states: list | None = None) -> list[list[Generation]]:
        with torch.no_grad():
            prefix, ids = self.pass2_inputs(backbone, examples, states)
            return backbone.generate(prefix, ids, config)
