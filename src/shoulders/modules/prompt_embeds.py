"""A soft-prompt module's input as prompt embeddings, for engines that take them (vLLM, SGLang).

A module whose class declares `capabilities.prompt_embeds` (prompt tuning, ID-PT, a reader
whose prompt does) changes only what goes *into* the frozen LM: its soft vectors, then the
embeddings of the rendered input's tokens. An inference engine that accepts prompt
embeddings can therefore serve it with the plain backbone, given exactly what the backbone
reads: `prompt_embeds` returns that per input, from the steps `generate` takes
(`SoftPromptModule.generation_inputs`: template, BOS, the cut to the window, the prefix
before the tokens) and the backbone's own layout, in the backbone's dtype. Prefix tuning's
per-layer keys and values, or a fine-tuned copy of the LM, are no input embeddings: refused;
so is a backbone whose model reads token ids beside the embeddings (its layout carries them).

The encoders follow each engine's documented request format (neither engine was run here):

- vLLM (`vllm serve MODEL --enable-prompt-embeds`): `/v1/completions` takes `"prompt_embeds"`,
  one string or a list, each the base64 (standard alphabet) of `torch.save` of one CPU tensor
  [L, D] in float32, bfloat16 or float16; the server reads it with
  `torch.load(weights_only=True)` and squeezes a leading batch dimension of 1.
- SGLang (`python -m sglang.launch_server --model-path MODEL --disable-radix-cache`): the
  native `/generate` takes `"input_embeds"`, [L, D] as JSON lists of floats.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from shoulders.errors import ShouldersError

VLLM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what vLLM's loader accepts
TENSOR_PREFIX = "prompt_embeds."  # safetensors names: prompt_embeds.0, prompt_embeds.1, ...


def check_exportable(module) -> None:
    """Raise ShouldersError unless the module, and every module inside it (a reader's prompt),
    declares `capabilities.prompt_embeds`. Modules are known by what the protocol gives them
    (a type's `capabilities`; `generation_inputs` on soft-prompt modules), not by importing
    modules.base, which imports this file for `SoftPromptModule.prompt_embeds`."""
    from shoulders.modules.registry import types_with

    refused = next((m for m in module.modules() if hasattr(type(m), "capabilities")
                    and not type(m).capabilities.prompt_embeds), None)
    if refused is None and callable(getattr(module, "generation_inputs", None)):
        return
    part = refused if refused is not None else module
    name = getattr(part, "module_type", type(part).__name__)
    where = "" if part is module else f" (the prompt inside this {module.module_type})"
    raise ShouldersError(
        f"a {name} module{where} cannot be sent to an engine as prompt embeddings: its type does not declare "
        "capabilities.prompt_embeds, so what it changes is not only vectors before the input's token embeddings "
        "(prefix tuning writes keys and values into every attention layer; fine-tuning changes the LM itself). "
        f"Types that can: {', '.join(types_with('prompt_embeds'))}; serve this one with `shoulders serve`")


def prompt_embeds(module, backbone, inputs: Sequence, *, max_new_tokens: int | None = None,
                  dtype: torch.dtype | None = None) -> list[Tensor]:
    """Per input (a text or an Example), the [L_i, D] input embeddings that
    `module.generate(backbone, inputs, max_new_tokens=...)` feeds the backbone: the module's
    prefix, then the embeddings of the rendered input's tokens (BOS included where the
    tokenizer adds one). On the CPU, each its own contiguous tensor, in the backbone's dtype
    unless `dtype` is given. `max_new_tokens` matters only for inputs cut to fit the window."""
    from shoulders.backbone.generation_config import DEFAULT_MAX_NEW_TOKENS

    check_exportable(module)
    if not inputs:
        return []
    reserve = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
    prefix, ids = module.generation_inputs(backbone, inputs, reserve)
    with torch.no_grad():
        layout = backbone.layout(prefix, ids, pad_side="right")  # every row starts at position 0
    if layout.kv is not None:
        raise ShouldersError(f"{module.module_type}: its prefix holds per-layer keys and values (a KV prefix), "
                             "which no input embedding can carry, although its type declares prompt_embeds")
    if getattr(layout, "input_ids", None) is not None:  # set for families that read token ids beside embeddings
        raise ShouldersError(f"{backbone.name_or_path}: its model reads the token ids beside the input embeddings "
                             "(per-layer token embeddings, say), so prompt embeddings alone are not what it reads; "
                             "serve the module with `shoulders serve`")
    rows = layout.inputs_embeds.detach()
    return [rows[i, :n].to("cpu", dtype or rows.dtype).clone() for i, n in enumerate(layout.lengths.tolist())]


# ------------------------------------------------------------------------------- vLLM
def vllm_prompt_embeds(embeds: Tensor) -> str:
    """One [L, D] tensor as vLLM's completions API takes `prompt_embeds`: base64 of its
    `torch.save`. Saved as its own CPU copy: `torch.save` of a view writes the whole
    storage it views (other rows of a batch, say)."""
    if embeds.dim() != 2:
        raise ShouldersError(f"prompt embeddings must be [L, D], got shape {tuple(embeds.shape)}")
    if embeds.dtype not in VLLM_DTYPES:
        raise ShouldersError(f"vLLM takes prompt embeddings in float32, bfloat16 or float16, not {embeds.dtype}")
    buf = io.BytesIO()
    torch.save(embeds.detach().to("cpu").contiguous().clone(), buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def vllm_completion_request(embeds: Tensor | Sequence[Tensor], model: str, **params) -> dict:
    """A vLLM `/v1/completions` body for one [L, D] tensor or a list of them (one choice per
    tensor), e.g. `vllm_completion_request(e, "gpt2", max_tokens=16, temperature=0)`.
    No `prompt`: vLLM takes `prompt_embeds` alone."""
    one = isinstance(embeds, Tensor)
    encoded = vllm_prompt_embeds(embeds) if one else [vllm_prompt_embeds(e) for e in embeds]
    return {"model": model, "prompt_embeds": encoded, **params}


# ----------------------------------------------------------------------------- SGLang
def sglang_generate_request(embeds: Tensor | Sequence[Tensor], **sampling_params) -> dict:
    """An SGLang native `/generate` body: `input_embeds` as lists of floats ([L, D], or one
    per tensor for a list), e.g. `sglang_generate_request(e, max_new_tokens=16, temperature=0)`."""
    def floats(t: Tensor) -> list:
        if t.dim() != 2:
            raise ShouldersError(f"prompt embeddings must be [L, D], got shape {tuple(t.shape)}")
        return t.detach().to("cpu", torch.float32).tolist()  # exact: every bf16/fp16 value is a float32

    data = floats(embeds) if isinstance(embeds, Tensor) else [floats(e) for e in embeds]
    return {"input_embeds": data, "sampling_params": dict(sampling_params)}


# -------------------------------------------------------------------------- on disk
def save_prompt_embeds(path: str | Path, embeds: Sequence[Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write the tensors to one safetensors file (`prompt_embeds.0`, `prompt_embeds.1`, ...,
    in input order), atomically; `metadata` (strings) goes in its header."""
    from safetensors.torch import save

    from shoulders.utils.fs import atomic_write_bytes

    tensors = {f"{TENSOR_PREFIX}{i}": e.detach().to("cpu").contiguous() for i, e in enumerate(embeds)}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata={"format": "pt", "count": str(len(tensors)), **(metadata or {})}))
    return path


def load_prompt_embeds(path: str | Path) -> list[Tensor]:
    """The tensors of a file written by `save_prompt_embeds`, in input order."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    n = len(tensors)
    names = [f"{TENSOR_PREFIX}{i}" for i in range(n)]
    if sorted(tensors) != sorted(names):
        raise ShouldersError(f"{path}: expected tensors {TENSOR_PREFIX}0..{n - 1}, found {sorted(tensors)[:5]}")
    return [tensors[k] for k in names]
