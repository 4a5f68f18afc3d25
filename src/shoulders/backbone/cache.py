"""Every touch of transformers' key/value cache, in one place.

The rest of shoulders creates caches, pre-fills them with key/value prefixes (prefix
tuning), reads them back, pads and concatenates two of them (continuous batching) and cuts
leading columns only through these functions. They use `DynamicCache`'s API (`update`,
`batch_select_indices`) and, where transformers has no method for it, its per-layer
`keys`/`values` tensors; `tests/backbone/test_cache.py` pins every function to the
installed transformers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def new_cache(lm):
    """An empty cache for the backbone (per-layer types from its config where supported)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=lm.config)
    except TypeError:  # older transformers
        return DynamicCache()


def is_mergeable(cache) -> bool:
    """Only plain full-attention layers can be padded and concatenated; a sliding-window or
    linear-attention layer keeps state that left padding would corrupt."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return layers is not None and all(type(layer) is DynamicLayer for layer in layers)


def fill(cache, keys: Sequence[Tensor], values: Sequence[Tensor]) -> None:
    """Pre-fill an empty cache with per-layer keys and values ([B, H, P, d] each), so that
    the next forward attends to them before its own positions (gradients flow through)."""
    for layer, (k, v) in enumerate(zip(keys, values)):
        cache.update(k, v, layer)


def layer_states(cache) -> list[tuple[Tensor, Tensor]]:
    """The cached (keys, values) per layer, [B, H, T, d] each."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _filled(cache) -> list:
    return [layer for layer in cache.layers if getattr(layer, "keys", None) is not None and layer.keys.numel()]


def concat_rows(cache, other, t_self: int, t_other: int) -> None:
    """Append the rows of cache `other` after `cache`'s, both left-padded with zeros to a
    common length (`t_self`, `t_other`: their current lengths)."""
    total = max(t_self, t_other)

    def pad(x: Tensor, t: int) -> Tensor:
        return x if t == total else F.pad(x, [0, 0, total - t, 0])  # the sequence dim, 2nd from the end

    for mine, theirs in zip(cache.layers, other.layers):
        for attr in ("keys", "values"):
            a, b = getattr(mine, attr), getattr(theirs, attr)
            setattr(mine, attr, torch.cat([pad(a, t_self), pad(b, t_other)], dim=0))


def drop_leading(cache, first: int) -> None:
    """Cut the first `first` columns of every layer."""
    for layer in _filled(cache):
        layer.keys = layer.keys[:, :, first:]
        layer.values = layer.values[:, :, first:]


def select_rows(cache, idx: Tensor) -> None:
    """Keep rows `idx` (in that order; an index may repeat)."""
    cache.batch_select_indices(idx)


def repeat_rows(cache, repeats: int) -> None:
    """Each row `repeats` times in a row (the `n` samples of one prefill)."""
    cache.batch_repeat_interleave(repeats)


def kv_shapes(lm) -> list[tuple[int, int]]:
    """(key/value heads, head dim) of every layer, read off one forward of one token."""
    with torch.no_grad():
        cache = new_cache(lm)
        ids = torch.tensor([[lm.eos_token_id if lm.eos_token_id is not None else 0]], device=lm.device)
        lm.model(input_ids=ids, use_cache=True, **{lm._cache_kw: cache})
        return [(k.shape[1], k.shape[3]) for k, _ in layer_states(cache)]
