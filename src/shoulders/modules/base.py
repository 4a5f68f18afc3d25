"""The one protocol every trainable module shares.

A module is a plain `nn.Module` whose *trainable* parameters are all that gets saved;
frozen parts it carries (an encoder, say) are rebuilt from their recorded name. It turns
a batch of examples into a loss and a list of texts into generations, on a frozen
backbone passed in (never owned). `SoftPromptModule` covers every module whose job is
to produce soft vectors placed before the input tokens (prompt tuning, ID-PT, readers);
others (recursion, re-rankers) override `loss`/`generate` themselves.

What a module type can do beyond the protocol is *declared* on its class
(`capabilities = ModuleCapabilities(...)`): the server, the reader and recursion ask the
class, never its type name.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from pydantic import Field
from torch import Tensor, nn

from shoulders.backbone.generation import Generation, GenerationConfig
from shoulders.backbone.generation_config import DEFAULT_MAX_NEW_TOKENS
from shoulders.data.examples import Example
from shoulders.utils.strict_model import StrictModel  # re-exported: configs import it from here


class TextFormat(StrictModel):
    """How an example becomes backbone text: the input through `template`, then the target
    (in training) after `target_prefix`."""

    template: str = Field("{input}", description="format string applied to the input; {input} is replaced")
    target_prefix: str = Field(" ", description="text placed between input and target (a space suits BPE)")
    max_input_tokens: int = Field(512, gt=0, description="longer inputs lose their *first* tokens")

    def render(self, text: str) -> str:
        return self.template.replace("{input}", text)


class ModuleConfig(StrictModel):
    """Base of every module's hyper-parameters (stored in module.json)."""

    text: TextFormat = Field(default_factory=TextFormat)


@dataclass(frozen=True)
class ModuleCapabilities:
    """What a module type can do beyond the protocol, declared on its class; every flag
    defaults to False, so a new type claims only what it has been written (and tested) for.

    - `batchable`: its rows can join the server's mixed batch. The module is a
      `SoftPromptModule` whose `prefix()` says everything that goes before an input (soft
      vectors and/or per-layer KV prefixes), whose `encode_inputs` only tokenises (the
      request handler runs it on the event loop) and which generates with the shared
      `FrozenLM.generate`. Otherwise a request runs as its own job between decode steps.
    - `reader_prompt`: it can be the learned prompt inside a reader (`prompt: {type: ...}`):
      its `prefix()` reads only the question and `prefix_length()` is known from its config.
    - `single_prompt`: its whole prefix is one learned [P, D] soft prompt, the same for every
      input, returned by `single_prompt()`; another module may start from it (recursion's
      `init_from` copies it into its pass-1 prompt).
    - `peft_type`: the PEFT adapter type it exports to and imports from (`PROMPT_TUNING`,
      `PREFIX_TUNING`), through its `export_peft` / `import_peft`; None = no PEFT interchange.
    - `prompt_embeds`: all it changes is the input embeddings: soft vectors before the rendered
      input's tokens, no per-layer KV prefix, no weights inside the LM. So [prefix ; token
      embeddings] is everything the backbone reads, and an engine that takes prompt embeddings
      (vLLM, SGLang) can serve it (`prompt_embeds()`, see `shoulders.modules.prompt_embeds`).
    - `backbone_free`: it reads no frozen LM (a re-ranker scores text with its own encoder):
      the Trainer trains it without loading one, and its config may leave `backbone:` out.
    """

    batchable: bool = False
    reader_prompt: bool = False
    single_prompt: bool = False
    peft_type: str | None = None
    prompt_embeds: bool = False
    backbone_free: bool = False


def _as_example(x: Example | str) -> Example:
    return x if isinstance(x, Example) else Example(input=x, target="")


class SoftModule(nn.Module):
    """Base class: config, trainable parameters, what gets saved."""

    module_type: ClassVar[str]
    config_class: ClassVar[type[ModuleConfig]]
    capabilities: ClassVar[ModuleCapabilities] = ModuleCapabilities()

    def __init__(self, config: ModuleConfig):
        super().__init__()
        self.config = config

    @classmethod
    def build(cls, config: ModuleConfig, backbone) -> "SoftModule":
        """Create a fresh module sized for `backbone` (sizes come from the backbone)."""
        raise NotImplementedError

    @classmethod
    def from_saved(cls, config: ModuleConfig, meta: dict, backbone) -> "SoftModule":
        """An empty module for weights about to be loaded (defaults to `build`)."""
        if backbone is None:
            raise ValueError(f"loading a {cls.module_type} module needs its backbone")
        return cls.build(config, backbone)

    # What is learned, and so what is saved: trainable parameters only.
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups at base learning rate `lr`; one group unless a
        module knows some of its parameters want other steps (see ID-PT's `shared_lr`)."""
        return [{"params": list(self.trainable_parameters()), "lr": lr}]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def state_to_save(self) -> dict[str, Tensor]:
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_saved_state(self, tensors: dict[str, Tensor]) -> None:
        expected = self.state_to_save()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"weights do not match {self.module_type}: missing {missing}, unexpected {unexpected}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, value in tensors.items():
                if params[name].shape != value.shape:
                    raise ValueError(
                        f"weight {name!r} has shape {tuple(value.shape)}, the module expects {tuple(params[name].shape)}"
                    )
                params[name].copy_(value)

    def frozen_components(self) -> dict:
        """Names of frozen parts rebuilt at load time (recorded in module.json)."""
        return {}

    def stages(self) -> dict[str, Callable[[Any, bool], dict]]:
        """Training stages the config names, run in order before the main training by whoever
        trains the module (`shoulders.modules.stages.run_stages`; the Trainer does), never by
        `build` or loading: name -> fn(backbone, progress) -> stats. None by default."""
        return {}

    def export_peft(self, backbone, out_dir: str | Path) -> Path:
        """Write the module as a PEFT adapter directory (types with `capabilities.peft_type`)."""
        raise NotImplementedError(f"{self.module_type} does not export to PEFT")

    @classmethod
    def import_peft(cls, adapter_dir: str | Path, backbone, **config) -> "SoftModule":
        """A module read from a PEFT adapter directory of the type's `capabilities.peft_type`."""
        raise NotImplementedError(f"{cls.__name__} does not import PEFT adapters")

    def single_prompt(self) -> Tensor:
        """The one [P, D] soft prompt this module puts before every input (only for types
        whose capabilities declare `single_prompt`)."""
        raise NotImplementedError(f"{self.module_type} has no single shared prompt")

    # The names PEFT and transformers users reach for; `save_module`/`load_module` do the work.
    def save_pretrained(self, directory: str | Path, backbone=None, *, extra: dict[str, Any] | None = None) -> Path:
        """Write module.json + weights.safetensors, exactly as `save_module` does. Pass the
        backbone so module.json records it (and loading checks it)."""
        from shoulders.modules.io import save_module

        return save_module(self, directory, backbone, extra=extra)

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone=None, *, device=None) -> Self:
        """`load_module(directory, backbone)`, refusing a directory that holds another module
        type than `cls` (on `SoftModule` itself any type loads)."""
        from shoulders.modules.io import ModuleFormatError, load_module, read_module_json
        from shoulders.modules.registry import MODULE_TYPES, module_class

        found = read_module_json(directory)["module_type"]
        if cls is not SoftModule and isinstance(found, str) and found in MODULE_TYPES \
                and not issubclass(module_class(found), cls):  # an unknown type: load_module says so
            wanted = getattr(cls, "module_type", cls.__name__)  # an abstract base has no type of its own
            raise ModuleFormatError(f"{directory}: holds a {found!r} module, not {wanted!r} "
                                    f"(load it with shoulders.load_module or its own class)")
        return load_module(directory, backbone, device=device)

    # Training and inference: subclasses implement these.
    def forward(self, backbone, examples: Sequence[Example]) -> Tensor:
        """The training loss (forward is the loss so that DDP wrappers see a forward pass)."""
        return self.loss(backbone, examples)

    def loss(self, backbone, examples: Sequence[Example]) -> Tensor:
        raise NotImplementedError

    def generate(
        self, backbone, inputs: Sequence[Example | str], config: GenerationConfig | None = None, **overrides
    ) -> list[list[Generation]]:
        raise NotImplementedError

    def choice_logprobs(self, backbone, examples: Sequence[Example]) -> list[list[float]]:
        raise NotImplementedError(f"{self.module_type} does not support rank classification")

    def predict(self, backbone, examples: Sequence[Example], config: GenerationConfig | None = None) -> list[str]:
        """One prediction per example: rank classification when it has `choices`, else greedy."""
        preds: list[str | None] = [None] * len(examples)
        ranked = [i for i, ex in enumerate(examples) if ex.choices]
        if ranked:
            scores = self.choice_logprobs(backbone, [examples[i] for i in ranked])
            for i, sc in zip(ranked, scores):
                preds[i] = examples[i].choices[max(range(len(sc)), key=sc.__getitem__)]
        free = [i for i, ex in enumerate(examples) if not ex.choices]
        if free:
            gens = self.generate(backbone, [examples[i] for i in free], config or GenerationConfig())
            for i, g in zip(free, gens):
                preds[i] = g[0].text.strip()
        return preds  # type: ignore[return-value]


class SoftPromptModule(SoftModule):
    """A module that writes soft vectors placed before the input tokens.

    Subclasses implement `prefix(backbone, examples)`; training, scoring and generation
    are shared here.
    """

    def prefix(self, backbone, examples: Sequence[Example]):
        """What goes before each row's tokens: soft vectors (a shared [P, D], a [B, P, D] or
        a list of [p_i, D]), or a `KVPrefix` of per-layer keys and values (see
        `shoulders.backbone.layout`)."""
        raise NotImplementedError

    def prefix_length(self) -> int | None:
        """Context positions the prefix takes before every input (soft vectors plus KV
        prefix positions), from the config; None when it depends on the input."""
        return None

    def encode_inputs(self, backbone, examples: Sequence[Example]) -> list[list[int]]:
        fmt = self.config.text
        ids = backbone.encode([fmt.render(ex.input) for ex in examples])
        limit = fmt.max_input_tokens
        return [t[-limit:] if len(t) > limit else t for t in ids]

    def encode_targets(self, backbone, targets: Sequence[str]) -> list[list[int]]:
        return backbone.encode_targets([self.config.text.target_prefix + t for t in targets])

    def loss(self, backbone, examples: Sequence[Example]) -> Tensor:
        prefix = self.prefix(backbone, examples)
        targets = self.encode_targets(backbone, [ex.target for ex in examples])
        ids = fit_to_window(backbone, prefix, self.encode_inputs(backbone, examples), [len(t) for t in targets])
        return backbone(prefix, ids, targets).loss

    def choice_logprobs(self, backbone, examples: Sequence[Example]) -> list[list[float]]:
        """Log-likelihood of each choice (sum over its tokens, EOS excluded), T0-style.

        An example whose choices are all one token each is one row: every choice's log-prob
        is read from the distribution at its input's last position (what lm-eval-harness
        does for one-token continuations). Other examples get a row per choice."""
        from shoulders.backbone.layout import split_prefix

        prefix = self.prefix(backbone, examples)
        ids = self.encode_inputs(backbone, examples)
        per_row = split_prefix(prefix, len(examples))
        choice_ids = [backbone.encode([self.config.text.target_prefix + c for c in ex.choices],
                                      add_special_tokens=False) for ex in examples]
        for i, tgt in enumerate(choice_ids):
            ids[i] = fit_to_window(backbone, [per_row[i]], [ids[i]], [max(map(len, tgt))])[0]
        result: list[list[float]] = [[] for _ in examples]

        def run(owner: list[int], targets: list[list[int]], **kw):  # row r: example owner[r], targets[r]
            prefixes = [per_row[i] for i in owner]
            same = all(p is prefixes[0] for p in prefixes)
            return backbone(prefixes[0] if same else prefixes, [ids[i] for i in owner], targets, **kw)

        single = [i for i, tgt in enumerate(choice_ids) if all(len(t) == 1 for t in tgt)]
        one_token = set(single)
        if single:
            logprobs = run(single, [choice_ids[i][0] for i in single], return_logits=True).logits.log_softmax(-1)
            for r, i in enumerate(single):
                result[i] = logprobs[r, [t[0] for t in choice_ids[i]]].tolist()
        multi = [i for i in range(len(examples)) if i not in one_token]
        owner = [i for i in multi for _ in choice_ids[i]]
        if owner:
            lp = run(owner, [t for i in multi for t in choice_ids[i]]).row_logprob(len(owner)).tolist()
            for i, v in zip(owner, lp):
                result[i].append(v)
        return result

    def generate(
        self, backbone, inputs: Sequence[Example | str], config: GenerationConfig | None = None, **overrides
    ) -> list[list[Generation]]:
        cfg = config or GenerationConfig()
        if overrides:
            cfg = GenerationConfig(**{**cfg.__dict__, **overrides})
        prefix, ids = self.generation_inputs(backbone, inputs, cfg.max_new_tokens)
        return backbone.generate(prefix, ids, cfg)

    def generation_inputs(self, backbone, inputs: Sequence[Example | str], max_new_tokens: int):
        """(prefix, token ids per input): what `generate` hands the backbone, the input rendered,
        tokenised and cut to leave `max_new_tokens` in the window. One place, so that
        `prompt_embeds` exports exactly what generation reads."""
        examples = [_as_example(x) for x in inputs]
        with torch.no_grad():
            prefix = self.prefix(backbone, examples)
        return prefix, fit_to_window(backbone, prefix, self.encode_inputs(backbone, examples), max_new_tokens)

    def prompt_embeds(self, backbone, inputs: Sequence[Example | str], *,
                      max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                      dtype: torch.dtype | None = None) -> list[Tensor]:
        """Per input, the [L_i, D] input embeddings the backbone reads in `generate`
        ([prefix ; token embeddings]), for an engine that takes prompt embeddings (vLLM,
        SGLang). Types whose capabilities do not declare `prompt_embeds` are refused."""
        from shoulders.modules.prompt_embeds import prompt_embeds

        return prompt_embeds(self, backbone, inputs, max_new_tokens=max_new_tokens, dtype=dtype)


def fit_to_window(backbone, prefix, ids: list[list[int]], reserve: int | Sequence[int]) -> list[list[int]]:
    """Drop each input's *first* tokens so prefix + input + `reserve` fits the context window.

    The end of an input (the question, the template's cue) matters most to a causal LM.
    A prefix that leaves no room at all is a configuration error, reported as such.
    """
    from shoulders.backbone.layout import prefix_length, split_prefix

    window = backbone.max_context
    rows = split_prefix(prefix, len(ids))
    reserves = [reserve] * len(ids) if isinstance(reserve, int) else list(reserve)
    out = []
    for p, t, r in zip(rows, ids, reserves):
        n_pre = prefix_length(p)
        room = window - n_pre - r
        if room < 1:
            from shoulders.errors import WindowError

            raise WindowError(
                f"a soft prefix of {n_pre} vectors plus {r} target/new tokens leaves no room for the input in "
                f"the backbone's context window of {window} tokens; shorten the prompt or the target budget"
            )
        out.append(list(t[-room:]) if len(t) > room else list(t))
    return out
