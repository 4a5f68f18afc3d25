"""Rows of [soft prefix ; tokens] decoded one token per step, for any family.

`Decoding` is what generation (`backbone.generation`) and the server
(`serving.kvbatch`) step: one prefill, then one token per live row per `step`; rows
leave (`keep`) and, in the server, join (`merge`). How depends on what the family
supports (`backbone.family`):

- a usable cache of its own: each step feeds one token and the cache; otherwise each
  step runs the whole sequence again (the soft vectors kept as embeddings);
- cache rows that can be dropped: finished rows leave the batch; otherwise they stay,
  fed their last token again, and their outputs are ignored until their batch ends;
- exact left padding: all rows in one padded batch; otherwise rows are grouped by
  length, one batch per group (no padding at all), so a row gets what it gets alone;
  a family whose rows are not independent in a batch (RWKV's decode) runs each alone.

The common case (a plain attention cache, exact padding) is one batch and the same
forward calls as a hand-written loop: prefill, then `input_ids`, mask, positions, cache.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from shoulders.backbone import cache as kv
from shoulders.backbone.layout import Prefix, prefix_length, split_prefix


class _Batch:
    """Rows that run as one padded batch, one forward per step. `mask` [b, T] marks real
    positions, `pos` [b] holds each row's next position id, `logits` [b, V] its next-token
    logits; without a cache, `embeds`/`positions`/`ids` hold the whole sequence so far."""

    def __init__(self, lm, layout):
        self.lm = lm
        self.mask = layout.attention_mask
        self.pos = layout.next_positions.to(lm.device)
        self.logits, self.cache = lm.next_logits(layout)
        self.recompute = lm.family.cache_kw is None
        if self.recompute:
            self.embeds, self.positions, self.ids = layout.inputs_embeds, layout.position_ids, layout.input_ids
        self.last: Tensor | None = None  # the token each row was last fed (ghost rows get it again)

    def __len__(self) -> int:
        return self.mask.shape[0]

    def select(self, idx: Tensor) -> None:
        """Keep physical rows `idx` (in that order; an index may repeat)."""
        idx = idx.to(self.mask.device)
        if not self.recompute:
            self.cache = kv.select_rows(self.cache, idx)
        else:
            self.embeds, self.positions = self.embeds[idx], self.positions[idx]
            self.ids = None if self.ids is None else self.ids[idx]
        self.mask, self.pos = self.mask[idx], self.pos[idx]
        self.logits = self.logits[idx.to(self.logits.device)]
        self.last = None if self.last is None else self.last[idx.to(self.last.device)]

    def trim(self) -> None:
        """Cut leading columns that no row attends to (padding left by rows that have gone)."""
        used = self.mask.any(dim=0)
        first = int(torch.nonzero(used)[0]) if bool(used.any()) else 0
        if first == 0 or not self.lm.family.positions:  # a model counting positions itself would shift
            return
        if self.recompute:
            self.embeds, self.positions = self.embeds[:, first:], self.positions[:, first:]
            self.ids = None if self.ids is None else self.ids[:, first:]
        elif kv.is_mergeable(self.cache):
            kv.drop_leading(self.cache, first)
        else:
            return
        self.mask = self.mask[:, first:]

    def concat(self, other: "_Batch") -> None:
        """Append `other`'s rows, both left-padded with zeros to a common length (the mask
        marks the padding); only for families with exact padding and mergeable caches."""
        t_self, t_other = self.mask.shape[1], other.mask.shape[1]
        total = max(t_self, t_other)
        if self.last is not None or other.last is not None:
            self.last = torch.cat([b.last.cpu() if b.last is not None else torch.zeros(len(b), dtype=torch.long)
                                   for b in (self, other)])

        def pad(x: Tensor, t: int, dim: int = 1) -> Tensor:  # on the left, to `total` columns
            if t == total:
                return x
            return F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [total - t, 0])

        if self.recompute:
            self.embeds = torch.cat([pad(self.embeds, t_self), pad(other.embeds, t_other)])
            self.positions = torch.cat([pad(self.positions, t_self), pad(other.positions, t_other)])
            if self.ids is not None:
                self.ids = torch.cat([pad(self.ids, t_self), pad(other.ids, t_other)])
        else:
            kv.concat_rows(self.cache, other.cache, t_self, t_other)
        self.mask = torch.cat([pad(self.mask, t_self), pad(other.mask, t_other)])
        self.pos = torch.cat([self.pos, other.pos])
        self.logits = torch.cat([self.logits, other.logits])

    def step(self, tokens: Tensor) -> None:
        """Feed each row's token ([b]) and compute the next logits."""
        lm = self.lm
        self.last = tokens
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self), 1)], dim=1)
        ids = tokens.to(lm.device)[:, None]
        if not self.recompute:
            kwargs = {
                "input_ids": ids,
                "attention_mask": self.mask,
                "position_ids": self.pos[:, None],
                "use_cache": True,
                lm.family.cache_kw: self.cache,
            }
            if not lm.family.step_mask:  # only where rows are never padded (family.padding is False)
                del kwargs["attention_mask"]
            self.logits, cache = lm.next_logits(**kwargs)
            self.cache = cache if cache is not None else self.cache
        else:
            self.embeds = torch.cat([self.embeds, lm.embed(ids).to(self.embeds.dtype)], dim=1)
            self.positions = torch.cat([self.positions, self.pos[:, None]], dim=1)
            kwargs = {"inputs_embeds": self.embeds, "attention_mask": self.mask, "position_ids": self.positions,
                      "use_cache": False}
            if self.ids is not None:
                self.ids = torch.cat([self.ids, ids], dim=1)
                kwargs["input_ids"] = self.ids
            self.logits = lm.next_logits(**kwargs)[0]
        self.pos = self.pos + 1


class Decoding:
    """Live rows being decoded; `logits` ([n, V], float32) holds each live row's next-token
    distribution, in row order. Rows sit in one or more `_Batch`es (see the module doc);
    `where[i]` is live row i's (batch, physical row)."""

    def __init__(self, lm, batches: list[_Batch], where: list[tuple[int, int]]):
        self.lm = lm
        self.batches = batches
        self.where = where

    @classmethod
    @torch.no_grad()
    def prefill(cls, lm, prefix: Prefix, token_ids: Sequence[Sequence[int]], repeats: Sequence[int] = ()) -> "Decoding":
        """Prefill rows (left padded); row i then stands for `repeats[i]` rows (the `n` samples
        of one prompt share one prefill where the cache can repeat rows)."""
        family = lm.family
        n = len(token_ids)
        counts = list(repeats) if repeats else [1] * n
        if len(counts) != n:
            raise ValueError(f"{len(counts)} repeats for {n} rows")
        repeated = any(c != 1 for c in counts)
        if repeated and not (family.batched and family.rows and family.padding):  # no row copies (or several batches): prefill each copy
            rows = split_prefix(prefix, n)
            prefix = [p for p, c in zip(rows, counts) for _ in range(c)]
            token_ids = [t for t, c in zip(token_ids, counts) for _ in range(c)]
            n, counts, repeated = len(token_ids), [1] * len(token_ids), False
        if not family.batched:
            groups = [[i] for i in range(n)]
        elif family.padding:
            groups = [list(range(n))]
        else:  # rows of one length need no padding: one batch per length
            rows = split_prefix(prefix, n)
            lengths = [prefix_length(p) + len(t) for p, t in zip(rows, token_ids)]
            order = sorted(set(lengths), key=lengths.index)
            groups = [[i for i in range(n) if lengths[i] == length] for length in order]
        batches, where = [], [None] * n
        for g, members in enumerate(groups):
            if len(groups) == 1:
                layout = lm.layout(prefix, token_ids, pad_side="left")
            else:
                rows = split_prefix(prefix, n)
                layout = lm.layout([rows[i] for i in members], [token_ids[i] for i in members], pad_side="left")
            batches.append(_Batch(lm, layout))
            for j, i in enumerate(members):
                where[i] = (g, j)
        state = cls(lm, batches, where)
        if repeated:
            idx = torch.repeat_interleave(torch.arange(n), torch.tensor(counts))
            state.batches[0].select(idx)  # family.rows and one batch (exact padding)
            state.where = [(0, j) for j in range(len(idx))]
        return state

    def __len__(self) -> int:
        return len(self.where)

    def _plain(self) -> bool:
        """One batch whose physical rows are the live rows, in order."""
        return len(self.batches) == 1 and len(self.batches[0]) == len(self.where) and all(
            w == (0, j) for j, w in enumerate(self.where))

    @property
    def logits(self) -> Tensor:
        if self._plain():
            return self.batches[0].logits
        parts = [self.batches[b].logits[j] for b, j in self.where]
        return torch.stack([p.to(parts[0].device) for p in parts]) if parts else self.batches[0].logits[:0]

    @property
    def mergeable(self) -> bool:
        """Another prefill's rows can join (`merge`) this one's batch."""
        return self.lm.family.mergeable

    def keep(self, rows: Sequence[int], *, trim: bool = False) -> None:
        """Keep live rows `rows` (indices into the live rows, increasing) and let the rest
        go: removed from their batch where the cache can drop rows, else left in it, fed
        and ignored until every live row of that batch has gone. `trim` then cuts cache
        columns no remaining row attends to."""
        where = [self.where[r] for r in rows]
        batches, remap = [], {}
        for b, batch in enumerate(self.batches):
            live = [j for bb, j in where if bb == b]
            if not live:
                continue  # the whole batch has finished
            if self.lm.family.rows and live != list(range(len(batch))):
                batch.select(torch.tensor(live))
                remap.update({(b, j): (len(batches), k) for k, j in enumerate(live)})
                if trim:
                    batch.trim()
            else:
                remap.update({(b, j): (len(batches), j) for j in live})
            batches.append(batch)
        self.batches, self.where = batches, [remap[w] for w in where]

    def merge(self, other: "Decoding") -> None:
        """Append `other`'s rows after this one's: one padded batch where the family allows
        (`mergeable`), else `other`'s batches beside this one's."""
        if self.mergeable and self._plain() and other._plain():
            n = len(self.batches[0])
            self.batches[0].concat(other.batches[0])
            self.where = [(0, j) for j in range(n + len(other.where))]
            return
        offset = len(self.batches)
        self.batches += other.batches
        self.where += [(b + offset, j) for b, j in other.where]

    @torch.no_grad()
    def step(self, tokens: Tensor) -> None:
        """Feed each live row's chosen token ([n]) and compute the next logits."""
        if self._plain():
            self.batches[0].step(tokens)
            return
        tokens = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        feed = []
        for batch in self.batches:
            last = batch.last if batch.last is not None else torch.zeros(len(batch), dtype=torch.long)
            feed.append(last.detach().to("cpu", torch.long).clone())
        for (b, j), tok in zip(self.where, tokens):
            feed[b][j] = tok
        for batch, toks in zip(self.batches, feed):
            batch.step(toks)
