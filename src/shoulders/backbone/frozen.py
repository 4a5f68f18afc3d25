"""FrozenLM: any Hugging Face causal LM, frozen, fed soft vectors before its tokens.

The backbone never changes: parameters have requires_grad=False and the model stays in
eval mode (no dropout). Gradients still flow *through* it to whatever produced the soft
prefix. Logits are computed only where they are read (target positions in training,
the last position in generation): with large vocabularies the LM head is a big share of
the cost of a step.

Logits always come out of the model's *own* forward: a pre-hook on its output
embeddings narrows the head's input to the positions we read, and whatever the family
does after the head (Cohere's `logit_scale`, Granite's `logits_scaling`, Gemma's soft
cap, MiniCPM's scaling before the head) runs unchanged on those positions. No list of
special cases to keep in step with transformers.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from shoulders.backbone import cache as kv
from shoulders.backbone.family import Family, probe
from shoulders.backbone.fingerprint import backbone_info
from shoulders.backbone.layout import Layout, Prefix, build_layout
from shoulders.errors import BackboneError

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _looks_like_path(name: str) -> bool:
    """A name that can only be a local directory (a hub id is `name` or `org/name`)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _load_error(name: str, err: OSError) -> BackboneError:
    """transformers' OSError in one line: a placeholder name left in a config (`toy-small`)
    or a hub id without network is otherwise a 100-line traceback ending in this text."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    where = "a local directory" if Path(name).expanduser().is_dir() else "not a local directory; as a hub id"
    return BackboneError(f"{name}: cannot load the backbone ({where}: {first}); expected a hub id or a local "
                         "directory with config.json and the tokenizer files")


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(_DTYPES)} or 'auto'") from None


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class LMOutput:
    loss: Tensor | None  # mean NLL over all target tokens of the batch
    token_logprobs: Tensor | None  # [N_targets] log p(target token), in row order
    row_index: Tensor | None  # [N_targets] which row each target token belongs to
    hidden_states: Tensor | None  # [B, L, D] final hidden states (if asked for)
    layout: Layout
    logits: Tensor | None = None  # [N_targets, V] float32 logits at the positions predicting targets (if asked for)

    def row_logprob(self, batch_size: int) -> Tensor:
        """Sum of target-token log-probabilities per row: [B]."""
        out = torch.zeros(batch_size, dtype=self.token_logprobs.dtype, device=self.token_logprobs.device)
        return out.index_add(0, self.row_index, self.token_logprobs)


class FrozenLM:
    """A frozen causal LM with its tokenizer. Not an nn.Module on purpose: modules that
    hold a reference to it must never save, move or unfreeze its weights."""

    def __init__(self, model, tokenizer, name_or_path: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path or getattr(model.config, "_name_or_path", "")
        model.requires_grad_(False)
        model.eval()
        self.lm_head = model.get_output_embeddings()
        if self.lm_head is None:
            raise ValueError(f"{self.name_or_path}: the model has no output embeddings (not a causal LM?)")
        self.input_embeddings = model.get_input_embeddings()
        if tokenizer is not None and tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self._info = None
        self.family: Family = probe(self)  # what this family supports; refuses one that cannot work
        log.info("%s: the %s family runs %s", self.name_or_path, self.family.name,
                 "; ".join(self.family.notes()) or "the plain path")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = "auto",
        device_map: str | dict | None = None,
        max_memory: dict | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
    ) -> "FrozenLM":
        """Load a causal LM and its tokenizer from a hub id or a local directory, frozen.

        `device_map="auto"` (with optional `max_memory`) shards a backbone larger than one
        device across the visible devices, through accelerate; otherwise the whole model
        goes to `device`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = str(name_or_path)
        if _looks_like_path(name) and not Path(name).expanduser().is_dir():
            raise BackboneError(f"{name}: no such backbone directory (expected a hub id or a local directory "
                                "with config.json and the tokenizer files)")
        kwargs: dict = {"trust_remote_code": trust_remote_code}
        if revision:
            kwargs["revision"] = revision
        if local_files_only is not None:
            kwargs["local_files_only"] = local_files_only
        model_kwargs = dict(kwargs, dtype=resolve_dtype(dtype))
        if attn_implementation:
            model_kwargs["attn_implementation"] = attn_implementation
        if device_map is not None:
            model_kwargs["device_map"] = device_map
            if max_memory is not None:
                model_kwargs["max_memory"] = max_memory
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(name, **model_kwargs)
        except OSError as e:  # a hub id not found or unreachable, a directory without the files
            raise _load_error(name, e) from None
        if device_map is None:
            model.to(resolve_device(device))
        # A local directory is recorded absolute, so module.json still finds it from another cwd.
        local = Path(name).expanduser()
        return cls(model, tokenizer, str(local.resolve()) if local.is_dir() else name)

    # --------------------------------------------------------------- properties
    @property
    def base(self):
        """The transformer body without the LM head (for inspection; compute goes through
        the whole model so every family's own head logic applies): `get_decoder()`, else
        the child module that holds the input embeddings. Not `base_model`: llama4_text's
        `base_model_prefix` names no attribute, so there it is the whole causal LM."""
        get = getattr(self.model, "get_decoder", None)
        try:
            body = get() if callable(get) else None
        except (AttributeError, NotImplementedError, ValueError):
            body = None
        if body is not None and body is not self.model:
            return body
        emb = self.input_embeddings
        return next((c for c in self.model.children() if any(m is emb for m in c.modules())), self.model.base_model)

    @property
    def _cache_kw(self) -> str:
        """The keyword that takes an attention cache (KV prefixes, `kv_shapes`)."""
        return self.family.cache_kw or ("cache" if "cache" in self.family.accepts else "past_key_values")

    @property
    def pad_id(self) -> int:
        """The id placed at soft and padded positions when a family needs token ids there
        (its config's pad id, as its multimodal models use for image positions)."""
        for value in (getattr(self.config.get_text_config(), "pad_token_id", None),
                      self.tokenizer.pad_token_id if self.tokenizer is not None else None):
            if isinstance(value, int) and 0 <= value < self.vocab_size:
                return value
        return 0

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.input_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.input_embeddings.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.input_embeddings.weight.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.input_embeddings.weight.shape[0]

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def max_context(self) -> int:
        """The context window in tokens (soft vectors count as tokens)."""
        cfg = self.config
        for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id if self.tokenizer is not None else self.config.eos_token_id

    def info(self) -> dict:
        """Name, sizes and embedding fingerprint, as stored in module.json."""
        if self._info is None:
            self._info = backbone_info(self)
        return self._info

    # ------------------------------------------------------------- tokenisation
    def encode(self, texts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]

    def encode_targets(self, texts: Sequence[str], *, eos: bool = True) -> list[list[int]]:
        """Target token ids: no BOS, optionally followed by EOS so generation learns to stop."""
        ids = self.encode(texts, add_special_tokens=False)
        if eos and self.eos_token_id is not None:
            ids = [t + [self.eos_token_id] for t in ids]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ------------------------------------------------------------------ compute
    def embed(self, input_ids: Tensor) -> Tensor:
        """Input embeddings of token ids (the space soft prompts live in)."""
        return self.input_embeddings(input_ids.to(self.device))

    def layout(self, prefix: Prefix, token_ids: Sequence[Sequence[int]], pad_side: str = "right") -> Layout:
        family = getattr(self, "family", None)
        ids = self.pad_id if family is not None and family.needs_ids else None
        return build_layout(self.embed, prefix, token_ids, dtype=self.dtype, device=self.device, pad_side=pad_side,
                            ids_pad=ids)

    def model_inputs(self, layout: Layout, cache=None, *, use_cache: bool | None = None) -> dict:
        """Keyword arguments of the model's own forward for a layout (and a cache to fill).

        The backbone's one hook for KV prefixes: when rows of the layout carry one, the
        cache (`cache`, which must be empty, or a new one) is pre-filled with them first.
        `use_cache=True` without a cache lets the model start its own (see `next_logits`)."""
        if layout.kv is not None:
            cache = self.kv_prefix_cache(layout, cache)
        kwargs = {
            "inputs_embeds": layout.inputs_embeds,
            "attention_mask": layout.attention_mask,
            "position_ids": layout.position_ids,
            "use_cache": cache is not None if use_cache is None else use_cache or cache is not None,
        }
        if layout.input_ids is not None:
            kwargs["input_ids"] = layout.input_ids
        if cache is not None:
            kwargs[self._cache_kw] = cache
        return kwargs

    def call(self, **kwargs):
        """The model's own forward, given keywords the way this family takes them: only
        keywords its forward names are passed (one it would swallow in `**kwargs` is
        dropped), and given both `input_ids` and `inputs_embeds`, a family that needs its
        token ids gets them, with its input-embedding output replaced by `inputs_embeds`
        (so soft vectors go in and its per-layer token embeddings still see the ids);
        any other family gets `inputs_embeds` alone."""
        family = self.family
        ids, embeds = kwargs.get("input_ids"), kwargs.get("inputs_embeds")
        if embeds is not None and family.copy_embeds:
            embeds = kwargs["inputs_embeds"] = embeds.clone()
        if not family.positions:
            kwargs.pop("position_ids", None)
        hook = None
        if ids is not None and embeds is not None:
            if family.needs_ids:
                del kwargs["inputs_embeds"]

                def replace(_module, args, out):
                    return embeds if out.shape[:2] == ids.shape else out

                hook = self.input_embeddings.register_forward_hook(replace)
            else:
                del kwargs["input_ids"]
        kwargs = {k: v for k, v in dict(kwargs, return_dict=True).items() if k in family.accepts}
        try:
            return self.model(**kwargs)
        finally:
            if hook is not None:
                hook.remove()

    def refuse_checkpointing(self, what: str) -> None:
        """Raise BackboneError when gradient checkpointing is on: transformers drops the cache
        inside checkpointed layers, and with it any KV prefix."""
        if any(getattr(m, "gradient_checkpointing", False) and m.training for m in self.model.modules()):
            raise BackboneError(f"{what} do not work with gradient checkpointing: transformers drops the cache "
                                "inside checkpointed layers; set backbone.gradient_checkpointing to false")

    def kv_prefix_cache(self, layout: Layout, cache=None):
        """A cache holding each row's KV prefix, left-padded with zeros to the longest (the
        layout's attention mask hides the padding); gradients flow back to the prefixes."""
        if torch.is_grad_enabled():
            self.refuse_checkpointing("KV prefixes (prefix tuning)")
        cache = kv.new_cache(self) if cache is None else cache
        if self.family.cache_kw is None or not kv.takes_prefix(cache):
            raise BackboneError(f"{self.name_or_path}: KV prefixes (prefix tuning) need a key/value cache in every "
                                f"layer; the {self.family.name} family has "
                                + ("no usable cache" if self.family.cache_kw is None else "recurrent or linear layers"))
        rows, width = layout.kv, int(layout.kv_lengths.max())
        given = [p for p in rows if p is not None]
        shared = len(given) == len(rows) and all(p is given[0] for p in given)

        def stack(layer_tensors) -> torch.Tensor:
            first = layer_tensors(given[0])
            if shared:
                return first.to(self.device, self.dtype).expand(len(rows), -1, -1, -1)
            out = first.new_zeros(len(rows), first.shape[1], width, first.shape[3], dtype=self.dtype,
                                  device=self.device)
            parts, where = [], []
            for i, p in enumerate(rows):
                if p is not None:
                    parts.append(F.pad(layer_tensors(p).to(self.device, self.dtype),
                                       [0, 0, width - p.length, 0]))  # left-pad: the prefix ends at the row
                    where.append(i)
            return out.index_copy(0, torch.tensor(where, device=self.device), torch.cat(parts))

        n_layers = len(given[0].keys)
        kv.fill(cache, [stack(lambda p, l=l: p.keys[l]) for l in range(n_layers)],
                [stack(lambda p, l=l: p.values[l]) for l in range(n_layers)])
        return cache

    def model_logits(self, pick: Callable[[Tensor], Tensor], **kwargs) -> tuple[Tensor, Tensor | None]:
        """(logits [N, V] in float32, head input [B, L, D]) from the model's own forward
        (head input None if the family never calls its output-embedding module).

        `pick` maps a [B, L, ...] tensor to the [N, ...] positions whose logits are
        wanted. It is applied to the LM head's input (so the head runs on N positions
        only, and every post-head transform of the family still applies); if the family
        computes its head without calling its output-embedding module, it is applied to
        the full logits instead (same values, more compute).
        """
        logits, hidden, _ = self._head(pick, kwargs)
        return logits, hidden

    def _head(self, pick, kwargs) -> tuple[Tensor, Tensor | None, object]:
        seen: dict[str, Tensor] = {}
        narrowing = self.family.narrow

        def narrow(_module, args, kw):
            hidden = args[0] if args else kw["input"]
            if "hidden" in seen:  # a family that runs its head more than once (ProphetNet's streams)
                return None
            seen["hidden"] = hidden
            if not narrowing:  # the head's output is not the logits alone: pick from the logits
                return None
            picked = pick(hidden)[None]  # [1, N, D]: the head and what follows are per position
            return ((picked, *args[1:]), kw) if args else ((), dict(kw, input=picked))

        handle = self.lm_head.register_forward_pre_hook(narrow, with_kwargs=True)
        try:
            out = self.call(**kwargs)
        finally:
            handle.remove()
        if not narrowing or "hidden" not in seen:  # the head did not run once as a module: pick from the logits
            return pick(out.logits).float(), seen.get("hidden"), out
        return out.logits[0].float(), seen["hidden"], out

    def run(self, layout: Layout, cache=None) -> Tensor:
        """Final hidden states [B, L, D] for a layout (filling `cache` if given): what the
        LM head reads."""
        hidden = self.model_logits(lambda h: h[:0, -1], **self.model_inputs(layout, cache))[1]  # no logits read
        if hidden is None:
            raise BackboneError(f"{self.name_or_path}: {type(self.model).__name__} does not call its output "
                                "embeddings as a module, so its final hidden states cannot be read")
        return hidden

    def last_logits(self, layout: Layout | None = None, cache=None, /, **kwargs) -> Tensor:
        """Next-token logits [B, V] after the last position: a prefill of `layout` (filling
        `cache`), or a decode step given as the model's keyword arguments (positional-only
        parameters, so a model keyword named `cache` reaches the model)."""
        if layout is not None:
            kwargs = self.model_inputs(layout, cache)
        return self.model_logits(lambda h: h[:, -1], **kwargs)[0]

    def next_logits(self, layout: Layout | None = None, /, **kwargs) -> tuple[Tensor, object]:
        """(next-token logits [B, V], the model's cache after this call or None): a prefill
        of `layout` that lets the model start its own cache, or a step given as keywords."""
        if layout is not None:
            kwargs = self.model_inputs(layout)
            kwargs["use_cache"] = kwargs["use_cache"] or self.family.cache_kw is not None  # the model starts its own
        logits, _, out = self._head(lambda h: h[:, -1], kwargs)
        return logits, kv.returned(out, self.family.cache_kw) if kwargs.get("use_cache") else None

    def forward(
        self,
        prefix: Prefix,
        input_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]] | None = None,
        *,
        return_hidden: bool = False,
        return_logits: bool = False,
    ) -> LMOutput:
        """Run rows of [prefix ; input ; target] and score the target tokens only.

        The loss is the mean negative log-likelihood over every target token in the batch
        (what HF computes with labels=-100 on non-targets), but the LM head runs only on
        the positions that predict a target token.
        """
        batch = len(input_ids)
        targets = target_ids if target_ids is not None else [[] for _ in range(batch)]
        if len(targets) != batch:
            raise ValueError(f"{batch} inputs but {len(targets)} targets")
        rows = [list(a) + list(b) for a, b in zip(input_ids, targets)]
        layout = self.layout(prefix, rows, pad_side="right")
        loss = token_lp = row_index = logits = None
        n_tgt = [len(t) for t in targets]
        if not sum(n_tgt):
            hidden = self.run(layout)
        else:
            counts = torch.tensor(n_tgt)
            row_index = torch.repeat_interleave(torch.arange(batch), counts)
            # target token j of row i sits at start_i + prefix_i + len(input_i) + j and is
            # predicted from the position just before it.
            first = layout.starts + layout.prefix_lengths + torch.tensor([len(a) for a in input_ids])
            offsets = torch.arange(len(row_index)) - (counts.cumsum(0) - counts)[row_index]  # j within its row
            positions = first[row_index] + offsets - 1
            if int(positions.min()) < 0:
                raise ValueError("a target needs at least one prefix vector or input token before it")
            logits, hidden = self.model_logits(
                lambda h: h[row_index.to(h.device), positions.to(h.device)], **self.model_inputs(layout))
            gold = torch.tensor([t for tgt in targets for t in tgt], device=logits.device)
            token_lp = -F.cross_entropy(logits, gold, reduction="none")
            loss = -token_lp.mean()
            row_index = row_index.to(logits.device)
        return LMOutput(loss, token_lp, row_index, hidden if return_hidden else None, layout,
                        logits if return_logits else None)

    __call__ = forward

    def generate(self, prefix: Prefix, input_ids: Sequence[Sequence[int]], config=None, **overrides):
        """Generate from [prefix ; input] with a KV cache; see `shoulders.backbone.generation`."""
        from shoulders.backbone.generation import generate

        return generate(self, prefix, input_ids, config, **overrides)

    def __repr__(self) -> str:
        return (
            f"FrozenLM({self.name_or_path!r}, {self.config.model_type}, "
            f"{self.num_parameters / 1e6:.1f}M params, {self.dtype}, {self.device})"
        )
