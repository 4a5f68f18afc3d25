"""A decode batch whose rows come and go between steps (continuous batching).

`shoulders.backbone.generation.generate` runs one batch from prefill to the end. A server
cannot wait for that: requests arrive while others are half-way through. `DecodeBatch`
is the same computation (`backbone.decoding.Decoding`) cut into steps, with two extra
operations:

- `merge`: rows prefilled separately (the newcomers, as their own left-padded batch)
  join the running batch. Both caches are left-padded with zeros to a common length
  and concatenated along the batch; the attention mask marks the padding, so a row
  never attends to it. Position ids are kept per row and count real positions only, so
  a row's numbers do not depend on its neighbours or on when it joined. Families whose
  caches cannot be merged (`mergeable` False: sliding windows, recurrent state, inexact
  padding) take newcomers only when the batch is empty (see `serving.engine`).
- `select`: finished rows leave (where the family's cache can drop rows; otherwise they
  stay, ignored, until their batch ends), then cache columns that are padding for every
  remaining row are cut, so one long-gone long prompt does not make every later step
  pay for its length.

Every row carries its own soft prefix (a per-row list of `[p_i, D]`, see
`backbone/layout.py`): rows of different modules share every forward pass.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from shoulders.backbone.decoding import Decoding


class DecodeBatch(Decoding):
    """Rows of [soft prefix ; tokens] being decoded together, one token per `step`;
    `logits[i]` ([B, V], float32) is the distribution of live row i's next token."""

    @classmethod
    def prefill(
        cls, lm, prefixes: Sequence[Tensor | None], token_ids: Sequence[Sequence[int]], repeats: Sequence[int] = ()
    ) -> "DecodeBatch":
        """Prefill rows together (left padded); row i is then repeated `repeats[i]` times
        (the `n` samples of one prompt share one prefill: the cache is copied, not recomputed)."""
        return super().prefill(lm, list(prefixes), token_ids, repeats)

    def select(self, keep: Sequence[int], *, trim: bool = True) -> None:
        """Keep live rows `keep` (increasing) and let the rest go."""
        self.keep(list(keep), trim=trim)

    @torch.no_grad()
    def step(self, tokens: Tensor) -> None:
        """Feed each row's chosen token ([B]) and compute the next logits."""
        super().step(tokens)
