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

from shoulders.backbone import cache as kv
from shoulders.backbone.cache import is_mergeable as cache_is_mergeable, new_cache


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
        batch = cls(lm, cache, layout.attention_mask, layout.next_positions.to(lm.device), lm.last_logits(layout, cache))
        if repeats and any(r != 1 for r in repeats):
            idx = torch.repeat_interleave(torch.arange(len(repeats)), torch.tensor(list(repeats)))
            batch.select(idx.tolist(), trim=False)
        return batch

    def __len__(self) -> int:
        return self.mask.shape[0]

    @property
    def mergeable(self) -> bool:
        return cache_is_mergeable(self.cache)

    def merge(self, other: "DecodeBatch") -> None:
        """Append `other`'s rows after this batch's rows."""
        t_self, t_other = self.mask.shape[1], other.mask.shape[1]
        total = max(t_self, t_other)

        def pad(mask: Tensor, t: int) -> Tensor:  # on the left, to `total` columns
            return mask if t == total else F.pad(mask, [total - t, 0])

        kv.concat_rows(self.cache, other.cache, t_self, t_other)
        self.mask = torch.cat([pad(self.mask, t_self), pad(other.mask, t_other)], dim=0)
        self.pos = torch.cat([self.pos, other.pos])
        self.logits = torch.cat([self.logits, other.logits])

    def select(self, keep: Sequence[int], *, trim: bool = True) -> None:
        """Keep rows `keep` (in that order; an index may repeat) and drop the rest."""
        idx = torch.tensor(list(keep), dtype=torch.long, device=self.mask.device)
        kv.select_rows(self.cache, idx)
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
        kv.drop_leading(self.cache, first)

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
