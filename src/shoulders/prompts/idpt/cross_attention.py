"""The learned cross-attention network of ID-PT: encoder outputs -> L prompt vectors.

The paper gives only its job (turn a variable-length encoder output into a fixed-length
prompt in the LM's embedding space). Our design, Perceiver-style:

    memory = LN(Linear(encoder outputs))                     [B, T, H]
    x      = L learned queries                               [L, H] -> [B, L, H]
    repeat `layers` times (pre-LN residual blocks):
        x = x + CrossAttn(LN(x), memory, mask)               queries read the input
        x = x + SelfAttn(LN(x))         (optional)           prompt vectors coordinate
        x = x + MLP(LN(x))                                   GELU, width mlp_ratio * H
    prompt = Linear(LN(x))                                   [B, L, D]

The output projection is initialised with std `out_std / sqrt(H)`, so each generated
prompt entry starts with std ~`out_std` (set to the std of the LM's token embeddings):
the frozen LM first sees vectors of the scale it was trained on, not 10x larger ones.
The queries start at std 1, like the LayerNormed memory, so the input's contribution is
not drowned at initialisation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention of `x` over `context` (self-attention when context is x)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: [B, L, H]; context: [B, T, H]; mask: [B, T] bool (True = attend). -> [B, L, H]"""
        b, n, h = x.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q = split(self.q(x))
        k, v = (split(t) for t in self.kv(context).chunk(2, dim=-1))
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, h))


class Block(nn.Module):
    """Pre-LN: cross-attention to the memory, optional self-attention, MLP."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: int, dropout: float, self_attention: bool):
        super().__init__()
        self.ln_cross = nn.LayerNorm(hidden)
        self.cross = Attention(hidden, heads, dropout)
        self.ln_self = nn.LayerNorm(hidden) if self_attention else None
        self.self_attn = Attention(hidden, heads, dropout) if self_attention else None
        self.ln_mlp = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_ratio * hidden), nn.GELU(),
                                 nn.Linear(mlp_ratio * hidden, hidden), nn.Dropout(dropout))

    def forward(self, x: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        x = x + self.cross(self.ln_cross(x), memory, mask)
        if self.self_attn is not None:
            h = self.ln_self(x)
            x = x + self.self_attn(h, h)
        return x + self.mlp(self.ln_mlp(x))


class PromptGenerator(nn.Module):
    """L learned queries attend over a memory and become L vectors of the LM's width."""

    def __init__(self, memory_size: int, out_size: int, length: int, *, hidden: int = 128, layers: int = 2,
                 heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.0, self_attention: bool = True,
                 out_std: float = 1.0):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(length, hidden))
        self.memory_proj = nn.Linear(memory_size, hidden)
        self.memory_ln = nn.LayerNorm(hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, mlp_ratio, dropout, self_attention) for _ in range(layers))
        self.ln_out = nn.LayerNorm(hidden)
        self.proj_out = nn.Linear(hidden, out_size)
        nn.init.normal_(self.proj_out.weight, std=out_std / math.sqrt(hidden))
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, memory: Tensor, mask: Tensor) -> Tensor:
        """memory: [B, T, E] encoder outputs; mask: [B, T] bool. -> prompts [B, L, D]"""
        mem = self.memory_ln(self.memory_proj(memory))
        x = self.queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, mem, mask)
        return self.proj_out(self.ln_out(x))
