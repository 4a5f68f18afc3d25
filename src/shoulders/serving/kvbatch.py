"""A decode batch whose rows come and go between steps (continuous batching).

`shoulders.backbone.generation.generate` runs one batch from prefill to the end. A server
cannot wait for that: requests arrive while others are half-way through. `DecodeBatch`
is the same computation cut into steps, with two extra operations:

- `merge`: rows prefilled separately (the newcomers, as their own left-padded batch)
  join the running batch. Both KV caches are left-padded with zeros to a common length
  and concatenated along the batch; the attention mask marks the padding, so a row
  never attends to it. Position ids are kept per row and count real positions only, so
  a row's numbers do not depend on its neighbours or on when it joined.
- `select`: finished rows leave (`batch_select_indices`), then cache columns that are
  padding for every remaining row are cut, so one long-gone long prompt does not make
  every later step pay for its length.

Every row carries its own soft prefix (a per-row list of `[p_i, D]`, see
`backbone/layout.py`): rows of different modules share every forward pass.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def new_cache(lm):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=lm.config)
    except TypeError:  # older transformers
        return DynamicCache()


def cache_is_mergeable(cache) -> bool:
    """Only plain full-attention layers can be padded and concatenated; a sliding-window or
    linear-attention layer keeps state that left padding would corrupt."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return layers is not None and all(type(layer) is DynamicLayer for layer in layers)


class DecodeBatch:
    """Rows of [soft prefix ; tokens] being decoded together, one token per `step`.

    `logits[i]` ([B, V], float32) is the distribution of row i's next token; `pos[i]` its
    next position id; `mask` ([B, T]) its real positions in the cache.
    """

    def __init__(self, lm, cache, mask: Tensor, pos: Tensor, logits: Tensor):
        self.lm = lm
        self.cache = cache
        self.mask = mask
        self.pos = pos
        self.logits = logits

    @classmethod
    @torch.no_grad()
    def prefill(
        cls, lm, prefixes: Sequence[Tensor | None], token_ids: Sequence[Sequence[int]], repeats: Sequence[int] = ()
    ) -> "DecodeBatch":
        """Prefill rows together (left padded); row i is then repeated `repeats[i]` times
        (the `n` samples of one prompt share one prefill: the cache is copied, not recomputed)."""
        layout = lm.layout(list(prefixes), token_ids, pad_side="left")
        cache = new_cache(lm)
        batch = cls(lm, cache, layout.attention_mask, layout.lengths.to(lm.device), lm.last_logits(layout, cache))
        if repeats and any(r != 1 for r in repeats):
            idx = torch.repeat_interleave(torch.arange(len(repeats)), torch.tensor(list(repeats)))
            batch.select(idx.tolist(), trim=False)
        return batch

    def __len__(self) -> int:
        return self.mask.shape[0]

    @property
    def mergeable(self) -> bool:
        return cache_is_mergeable(self.cache)

    def _layers(self):
        return [layer for layer in self.cache.layers if getattr(layer, "keys", None) is not None and layer.keys.numel()]

    def merge(self, other: "DecodeBatch") -> None:
        """Append `other`'s rows after this batch's rows."""
        t_self, t_other = self.mask.shape[1], other.mask.shape[1]
        total = max(t_self, t_other)

        def pad(x: Tensor, t: int, dim_from_end: int) -> Tensor:
            if t == total:
                return x
            # F.pad counts dims from the end: (last_lo, last_hi, 2nd_last_lo, 2nd_last_hi, ...)
            spec = [0, 0] * (dim_from_end - 1) + [total - t, 0]
            return F.pad(x, spec)

        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            for attr in ("keys", "values"):
                a, b = getattr(mine, attr), getattr(theirs, attr)
                setattr(mine, attr, torch.cat([pad(a, t_self, 2), pad(b, t_other, 2)], dim=0))
        self.mask = torch.cat([pad(self.mask, t_self, 1), pad(other.mask, t_other, 1)], dim=0)
        self.pos = torch.cat([self.pos, other.pos])
        self.logits = torch.cat([self.logits, other.logits])

    def select(self, keep: Sequence[int], *, trim: bool = True) -> None:
        """Keep rows `keep` (in that order; an index may repeat) and drop the rest."""
        idx = torch.tensor(list(keep), dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.pos, self.logits = self.mask[idx], self.pos[idx], self.logits[idx.to(self.logits.device)]
        if trim and len(keep):
            self._trim()

    def _trim(self) -> None:
        """Cut leading cache columns that no remaining row attends to."""
        used = self.mask.any(dim=0)
        first = int(torch.nonzero(used)[0]) if bool(used.any()) else 0
        if first == 0:
            return
        self.mask = self.mask[:, first:]
        for layer in self._layers():
            layer.keys = layer.keys[:, :, first:]
            layer.values = layer.values[:, :, first:]

    @torch.no_grad()
    def step(self, tokens: Tensor) -> None:
        """Feed each row's chosen token ([B]) and compute the next logits."""
        lm = self.lm
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self), 1)], dim=1)
        kwargs = {
            "input_ids": tokens.to(lm.device)[:, None],
            "attention_mask": self.mask,
            "position_ids": self.pos[:, None],
            "use_cache": True,
            getattr(lm, "_cache_kw", "past_key_values"): self.cache,
        }
        self.logits = lm.last_logits(**kwargs)
        self.pos = self.pos + 1
