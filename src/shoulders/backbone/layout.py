"""Lay out rows of [soft prefix ; token ids] as one padded batch for a causal LM.

Each row may carry a prefix of a different length (one PromptTuning row beside an
ID-PT row beside a reader row), so the batch is built row by row and padded; position
ids count real positions only, so a row's numbers do not depend on its neighbours.
Training pads on the right (targets sit at known offsets); generation pads on the left
(every row's next token is at the last position).

A row's prefix may also be a `KVPrefix`: per-layer keys and values (prefix tuning) that
go into the attention cache before the row's positions instead of into its input
embeddings. The attention mask then covers [KV prefix ; embeddings] (KV prefixes of
different lengths are left-padded and masked), and the row's position ids start after
its KV prefix, as if that many tokens had come first.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

@dataclass
class KVPrefix:
    """Per-layer key/value prefixes: `keys[l]` and `values[l]` are [B, H, P, d] (layer l's
    key/value heads and head size; B = 1 shares them across rows), placed in the attention
    cache before the row. `embeds` ([P_e, D] or [B, P_e, D], optional) are soft vectors
    that come after them, first in the input embeddings."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    embeds: Tensor | None = None

    @property
    def length(self) -> int:
        """KV positions (the embeds not counted)."""
        return self.keys[0].shape[2]

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def rows(self, batch_size: int) -> list["KVPrefix"]:
        """One single-row KVPrefix per row (the same object for every row when shared)."""
        embeds = split_prefix(self.embeds, batch_size)
        if self.batch_size == 1 and all(e is embeds[0] for e in embeds):
            return [self] * batch_size
        if self.batch_size not in (1, batch_size):
            raise ValueError(f"KV prefix has batch size {self.batch_size}, the batch has {batch_size} rows")
        pick = (lambda t, i: t) if self.batch_size == 1 else (lambda t, i: t[i:i + 1])
        return [KVPrefix(tuple(pick(k, i) for k in self.keys), tuple(pick(v, i) for v in self.values), embeds[i])
                for i in range(batch_size)]


Prefix = Tensor | KVPrefix | Sequence[Tensor | KVPrefix | None] | None


@dataclass
class Layout:
    inputs_embeds: Tensor  # [B, L, D]
    attention_mask: Tensor  # [B, K + L] 1 = real position (K: KV prefix columns, 0 without KV prefixes)
    position_ids: Tensor  # [B, L]
    starts: Tensor  # [B] index of each row's first real position in inputs_embeds
    lengths: Tensor  # [B] real positions per row in inputs_embeds (soft vectors + tokens)
    prefix_lengths: Tensor  # [B] soft vectors per row
    kv: list[KVPrefix | None] | None = None  # per row, when any row has a KV prefix
    kv_lengths: Tensor | None = None  # [B] KV prefix positions per row
    input_ids: Tensor | None = None  # [B, L] token ids, a pad id at soft and padded positions (if asked for)

    @property
    def next_positions(self) -> Tensor:
        """[B] the position id of each row's next token."""
        return self.lengths if self.kv_lengths is None else self.lengths + self.kv_lengths


def prefix_length(row) -> int:
    """Context positions one row's prefix takes (None, [p, D] soft vectors or a KVPrefix)."""
    if row is None:
        return 0
    if isinstance(row, KVPrefix):
        return row.length + (0 if row.embeds is None else row.embeds.shape[-2])
    return row.shape[0]


def split_prefix(prefix: Prefix, batch_size: int) -> list[Tensor | KVPrefix | None]:
    """Normalise a prefix argument to one [p_i, D] tensor, single-row KVPrefix or None per row.

    Accepts None, a shared [P, D] tensor, a [B, P, D] tensor, a KVPrefix or a list of those
    per row.
    """
    if prefix is None:
        return [None] * batch_size
    if isinstance(prefix, KVPrefix):
        return prefix.rows(batch_size)
    if isinstance(prefix, Tensor):
        if prefix.dim() == 2:
            return [prefix] * batch_size
        if prefix.dim() == 3:
            if prefix.shape[0] != batch_size:
                raise ValueError(f"prefix has batch size {prefix.shape[0]}, the batch has {batch_size} rows")
            return list(prefix.unbind(0))
        raise ValueError(f"prefix must be [P, D] or [B, P, D], got shape {tuple(prefix.shape)}")
    rows = list(prefix)
    if len(rows) != batch_size:
        raise ValueError(f"got {len(rows)} prefixes for {batch_size} rows")
    return rows


def _ids_tensor(token_ids: Sequence[Sequence[int]], n_tok: Tensor, width: int) -> tuple[Tensor, bool]:
    """[B, width] right-padded ids, and whether every row is full (no padding at all)."""
    batch = len(token_ids)
    lists = all(isinstance(t, (list, tuple)) for t in token_ids)
    if lists and int(n_tok.min()) == width:  # the common case: one tensor straight from the lists
        return torch.tensor(token_ids, dtype=torch.long), True
    ids = torch.zeros(batch, width, dtype=torch.long)
    if not lists:  # tensors or other sequences: row by row, as given
        for i, t in enumerate(token_ids):
            if len(t):
                ids[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
        return ids, int(n_tok.min()) == width
    flat = torch.tensor([i for t in token_ids for i in t], dtype=torch.long)
    if flat.numel():
        ids[torch.arange(width).expand(batch, -1) < n_tok[:, None]] = flat
    return ids, False


def build_layout(
    embed,
    prefix: Prefix,
    token_ids: Sequence[Sequence[int]],
    *,
    dtype: torch.dtype,
    device: torch.device,
    pad_side: str = "right",
    ids_pad: int | None = None,
) -> Layout:
    """Embed tokens once for the whole batch and place each row's prefix before them.

    With `ids_pad`, the layout also carries the token ids at their positions (`ids_pad`
    elsewhere), for families whose forward needs the ids beside the embeddings.

    `embed` maps a LongTensor of ids to embeddings (the backbone's input embedding).
    The common case (no prefix, or one prefix shape shared by every row, and no padding
    or right padding) is one concatenation; otherwise every row's prefix vectors and
    tokens are scattered into a zero-padded batch with two indexed writes, no per-row
    Python loop over tensors.
    """
    batch = len(token_ids)
    if batch == 0:
        raise ValueError("empty batch")
    prefixes = split_prefix(prefix, batch)
    if any(isinstance(p, KVPrefix) for p in prefixes):
        return _with_kv(embed, prefixes, token_ids, dtype=dtype, device=device, pad_side=pad_side, ids_pad=ids_pad)
    n_tok = torch.tensor([len(t) for t in token_ids], dtype=torch.long)
    n_pre = torch.tensor([0 if p is None else p.shape[0] for p in prefixes], dtype=torch.long)
    lengths = n_tok + n_pre
    if int(lengths.min()) == 0:
        raise ValueError("a row has neither prefix vectors nor tokens")
    max_tok = int(n_tok.max())
    ids, full = _ids_tensor(token_ids, n_tok, max(max_tok, 1))
    tok_emb = embed(ids.to(device)).to(dtype)  # [B, T, D]
    total = int(lengths.max())

    stacked = isinstance(prefix, Tensor) and prefix.dim() == 3
    uniform = stacked or all(p is prefixes[0] for p in prefixes)
    if uniform and (pad_side == "right" or full):  # no padding on the left: the same layout
        if prefixes[0] is None:
            embeds = tok_emb[:, :total]
        else:
            pre = prefix if stacked else prefixes[0].expand(batch, -1, -1)
            embeds = torch.cat([pre.to(device=device, dtype=dtype), tok_emb], dim=1)[:, :total]
        starts = torch.zeros(batch, dtype=torch.long)
    else:
        starts = torch.zeros(batch, dtype=torch.long) if pad_side == "right" else total - lengths
        embeds = tok_emb.new_zeros(batch, total, tok_emb.shape[-1])
        has = [i for i, p in enumerate(prefixes) if p is not None]
        if has:
            counts = n_pre[has]
            rows = torch.repeat_interleave(torch.tensor(has), counts)
            within = torch.arange(len(rows)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
            values = torch.cat([prefixes[i].to(device=device, dtype=dtype) for i in has])
            embeds.index_put_((rows.to(device), (starts[rows] + within).to(device)), values)
        if max_tok:
            valid = torch.arange(max_tok).expand(batch, -1) < n_tok[:, None]  # [B, T]
            rows, col = valid.nonzero(as_tuple=True)
            cols = (starts + n_pre)[rows] + col
            embeds.index_put_((rows.to(device), cols.to(device)), tok_emb[valid.to(device)])

    pos = torch.arange(total).unsqueeze(0)
    mask = (pos >= starts.unsqueeze(1)) & (pos < (starts + lengths).unsqueeze(1))
    position_ids = (pos - starts.unsqueeze(1)).clamp(min=0)
    layout_ids = None
    if ids_pad is not None:
        layout_ids = torch.full((batch, total), ids_pad, dtype=torch.long)
        valid = torch.arange(ids.shape[1]).expand(batch, -1) < n_tok[:, None]
        rows, col = valid.nonzero(as_tuple=True)
        layout_ids[rows, (starts + n_pre)[rows] + col] = ids[valid]
        layout_ids = layout_ids.to(device)
    return Layout(
        inputs_embeds=embeds,
        attention_mask=mask.long().to(device),
        position_ids=position_ids.to(device),
        starts=starts,
        lengths=lengths,
        prefix_lengths=n_pre,
        input_ids=layout_ids,
    )


def _with_kv(embed, prefixes: list, token_ids, *, dtype, device, pad_side: str, ids_pad: int | None) -> Layout:
    """The layout of the soft vectors and tokens, behind each row's KV prefix: mask columns
    for the KV positions first (left-padded to the longest), positions shifted past them."""
    kv = [p if isinstance(p, KVPrefix) else None for p in prefixes]
    soft = [p.embeds if isinstance(p, KVPrefix) else p for p in prefixes]
    kv_lengths = torch.tensor([0 if p is None else p.length for p in kv], dtype=torch.long)
    if any(isinstance(s, Tensor) and s.dim() != 2 for s in soft):
        raise ValueError("a row's soft vectors must be [P, D]")
    inner = build_layout(embed, soft, token_ids, dtype=dtype, device=device, pad_side=pad_side, ids_pad=ids_pad)
    width = int(kv_lengths.max())
    cols = torch.arange(width).unsqueeze(0)
    kv_mask = (cols >= (width - kv_lengths).unsqueeze(1)).long().to(device)
    real = inner.attention_mask.bool()
    # pads keep position 0, as without a KV prefix; real positions start after the KV prefix
    position_ids = inner.position_ids + real.long() * kv_lengths.to(device).unsqueeze(1)
    return Layout(
        inputs_embeds=inner.inputs_embeds,
        attention_mask=torch.cat([kv_mask, inner.attention_mask], dim=1),
        position_ids=position_ids,
        starts=inner.starts,
        lengths=inner.lengths,
        prefix_lengths=inner.prefix_lengths,
        kv=kv,
        kv_lengths=kv_lengths,
        input_ids=inner.input_ids,
    )
