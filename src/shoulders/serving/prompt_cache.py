"""Prefix caching for soft prompts that are the same for every input.

A prompt-tuning module puts one learned [P, D] prompt before every request. The keys and
values the frozen LM computes for those P positions never change (causal attention: they
see only the prompt), so the server computes them once per module and prefills each
request's tokens on top of them as a KV prefix (`backbone.layout.KVPrefix`, positions
shifted past it): the prompt's positions are not recomputed for every request, which
is what vLLM and SGLang call prefix caching. Same numbers up to float rounding (the
prompt's keys come from a forward of P positions instead of a batch of whole rows).

Used only where it is the same computation: modules declaring `single_prompt`, on a
backbone whose cache is plain full attention in every layer and pads exactly (the
family's `mergeable`, which the server's batch merging needs too; a sliding-window layer
keeps only its window of the prompt), with no local attention at all (a window counted
in cache columns would cover other tokens once a KV prefix is padded apart from the
row's tokens: GPT-Neo's local layers) and takes KV prefixes. Anything else keeps its
soft vectors.
"""
from __future__ import annotations

import weakref

import torch
from torch import Tensor

from shoulders.backbone import cache as kv
from shoulders.backbone.layout import KVPrefix


_LAYER_KINDS = ("layer_types", "attention_layers", "attention_types", "block_types")
_WINDOWS = ("sliding_window", "window_size", "attention_window", "local_window_size", "sliding_window_size")


def local_attention(config) -> bool:
    """Whether the config names any windowed (sliding, local, chunked) attention layer."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(config, "use_sliding_window", None) is False:
        windows = [w for w in _WINDOWS if w != "sliding_window"]
    else:
        windows = list(_WINDOWS)
    if any(getattr(config, w, None) for w in windows):
        return True

    def flat(x):
        return [y for item in x for y in flat(item)] if isinstance(x, (list, tuple)) else [x]

    kinds = [str(k).lower() for name in _LAYER_KINDS for k in flat(getattr(config, name, None) or [])]
    return any(w in k for k in kinds for w in ("sliding", "local", "chunk"))


class PromptKVCache:
    """Per module, the KV prefix of its one soft prompt, computed at first use and
    recomputed if the prompt's tensor changes (`_version`, for a module still training)."""

    def __init__(self, lm):
        self.lm = lm
        family = lm.family
        self.enabled = (family.cache_kw is not None and family.mergeable and not local_attention(lm.config)
                        and kv.takes_prefix(kv.new_cache(lm)))
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def rows(self, module, per_row: list, token_ids: list) -> list:
        """`per_row` (one prefix per row, as `split_prefix` gives) with the module's soft
        prompt replaced by its cached KV prefix where that is the same computation: rows
        with at least one token (an empty prompt's next token is read at the prompt's
        last position, which a KV prefix does not run)."""
        if not self.enabled or not type(module).capabilities.single_prompt:
            return per_row
        prompt = module.single_prompt()
        if not all(isinstance(p, Tensor) and p.data_ptr() == prompt.data_ptr() and p.shape == prompt.shape
                   for p in per_row):  # not the bare prompt after all: leave it
            return per_row
        return [self._get(module, prompt) if len(ids) else p for p, ids in zip(per_row, token_ids)]

    @torch.no_grad()
    def _get(self, module, prompt: Tensor) -> KVPrefix:
        key = (prompt.data_ptr(), prompt._version)
        found = self._cache.get(module)
        if found is not None and found[0] == key:
            return found[1]
        lm = self.lm
        layout = lm.layout([prompt.detach().to(lm.device, lm.dtype)], [[]], pad_side="left")
        cache = lm.next_logits(layout)[1]
        states = kv.layer_states(cache)
        entry = KVPrefix(tuple(k.clone() for k, _ in states), tuple(v.clone() for _, v in states))
        self._cache[module] = (key, entry)
        return entry
