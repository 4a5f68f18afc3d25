"""The Connector: pass 1's final hidden states -> pass 2's input vectors.

Final hidden states and input embeddings live at different scales (a final norm's gain
versus an embedding table's spread), so the Connector first RMS-normalises its input
(no parameters), then applies residual blocks whose output layers start at zero, then a
learned per-dimension gain initialised to the RMS of the token embeddings. At
initialisation it is therefore a rescaled identity: for a tied-embedding LM, pass 1's
last state points along the embedding of the token it would say next, so pass 2 first
reads roughly "the tokens pass 1 expects", at the scale of real token embeddings.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from shoulders.modules.base import StrictModel


class ConnectorConfig(StrictModel):
    kind: Literal["mlp", "transformer"] = Field("mlp", description="mlp: per-position residual MLP blocks; "
                                                "transformer: pre-norm blocks attending across pass-1 positions")
    layers: int = Field(1, ge=0, description="residual blocks; 0 = the normalised, rescaled identity only")
    hidden_mult: int = Field(2, gt=0, description="MLP width as a multiple of the backbone's hidden size")
    heads: int = Field(4, gt=0, description="attention heads per transformer block (must divide the hidden size)")
    seed: int = Field(0, description="seeds the initial weights of a newly built Connector")


class MLPBlock(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult)
        self.down = nn.Linear(dim * mult, dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


class TransformerBlock(nn.Module):
    """Bidirectional over pass-1 positions (pass 2 reads all of them anyway)."""

    def __init__(self, dim: int, mult: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"connector.heads={heads} does not divide the hidden size {dim}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = MLPBlock(dim, mult)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        pad = None if mask is None else ~mask.bool()
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        return self.mlp(x)


class Connector(nn.Module):
    """h [B, L, D_in] (+ mask [B, L], 1 = real) -> soft input vectors [B, L, D_out]."""

    def __init__(self, config: ConnectorConfig, dim: int, embed_rms: float = 1.0):
        super().__init__()
        self.config = config
        if config.kind == "mlp":
            blocks = [MLPBlock(dim, config.hidden_mult) for _ in range(config.layers)]
        else:
            blocks = [TransformerBlock(dim, config.hidden_mult, config.heads) for _ in range(config.layers)]
        self.blocks = nn.ModuleList(blocks)
        self.gain = nn.Parameter(torch.full((dim,), float(embed_rms)))

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        x = h.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        for block in self.blocks:
            x = block(x, mask)
        return x * self.gain


def embedding_rms(backbone) -> float:
    """RMS of the token embedding matrix: the scale pass 2 expects its inputs at."""
    w = backbone.input_embeddings.weight.detach().float()
    return float(w.pow(2).mean().sqrt())
