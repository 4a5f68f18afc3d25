"""Lay out rows of [soft prefix ; token ids] as one padded batch for a causal LM.

Each row may carry a prefix of a different length (one PromptTuning row beside an
ID-PT row beside a reader row), so the batch is built row by row and padded; position
ids count real positions only, so a row's numbers do not depend on its neighbours.
Training pads on the right (targets sit at known offsets); generation pads on the left
(every row's next token is at the last position).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Prefix = Tensor | Sequence[Tensor | None] | None


@dataclass
class Layout:
    inputs_embeds: Tensor  # [B, L, D]
    attention_mask: Tensor  # [B, L] 1 = real position
    position_ids: Tensor  # [B, L]
    starts: Tensor  # [B] index of each row's first real position
    lengths: Tensor  # [B] real positions per row (prefix + tokens)
    prefix_lengths: Tensor  # [B]


def split_prefix(prefix: Prefix, batch_size: int) -> list[Tensor | None]:
    """Normalise a prefix argument to one [p_i, D] tensor (or None) per row.

    Accepts None, a shared [P, D] tensor, a [B, P, D] tensor or a list of [p_i, D].
    """
    if prefix is None:
        return [None] * batch_size
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
) -> Layout:
    """Embed tokens once for the whole batch and place each row's prefix before them.

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
    return Layout(
        inputs_embeds=embeds,
        attention_mask=mask.long().to(device),
        position_ids=position_ids.to(device),
        starts=starts,
        lengths=lengths,
        prefix_lengths=n_pre,
    )
