"""Every touch of transformers' key/value cache, in one place.

The rest of shoulders creates caches, pre-fills them with key/value prefixes (prefix
tuning), reads them back, pads and concatenates two of them (continuous batching),
cuts leading columns and selects rows only through these functions. They use the
cache's own API (`update`, per-layer `batch_select_indices`, or `reorder_cache` for
recurrent and linear-attention layers) and, where transformers has no method for it,
the per-layer `keys`/`values` tensors. Not every family's cache is a `Cache`: RWKV's
`state` is a list of tensors, XLNet's `mems` too; `select_rows` handles those, and
`backbone.family` checks on each model that what it does is exact before it is used.
`tests/backbone/test_cache.py` pins every function to the installed transformers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Forward keywords that hand a model its own cache back, newest name first; the model
# returns the cache in the output field of the same name.
CACHE_KEYWORDS = ("cache", "past_key_values", "state", "mems", "past_buckets_states")


def returned(output, keyword: str | None):
    """The cache a forward returned (None without one)."""
    return getattr(output, keyword, None) if keyword else None


def new_cache(lm):
    """An empty cache for the backbone (per-layer types from its config where supported)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=lm.config)
    except TypeError:  # older transformers
        return DynamicCache()


def takes_prefix(cache) -> bool:
    """Every layer holds keys and values that a KV prefix can go into (no recurrent or
    linear-attention state)."""
    from transformers.cache_utils import DynamicLayer, LinearAttentionCacheLayerMixin

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(isinstance(layer, DynamicLayer) and not isinstance(layer, LinearAttentionCacheLayerMixin)
                                for layer in layers)


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


def select_rows(cache, idx: Tensor):
    """Keep rows `idx` (in that order; an index may repeat); returns the cache (changed in
    place where it is a `Cache`). Raises where the cache has no way to do it."""
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            # linear-attention / recurrent layers (hybrids too: their batch_select_indices would
            # leave the recurrent state behind): the beam-search reorder is a row selection
            if isinstance(layer, LinearAttentionCacheLayerMixin) or not hasattr(layer, "batch_select_indices"):
                layer.reorder_cache(idx)
            else:
                layer.batch_select_indices(idx)
        return cache
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(idx)
        return cache
    if isinstance(cache, Tensor):
        return cache.index_select(0, idx.to(cache.device))
    if isinstance(cache, (list, tuple)):
        return type(cache)(select_rows(c, idx) for c in cache)
    raise TypeError(f"cannot select rows of a {type(cache).__name__}")


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
