"""Previous-token heads wired in at initialisation: a positional prior for copying.

Reading needs a match on names of several tokens: the object after "Ana Tesk was born in"
must be fetched for "Where was Ana Tesk born?", not the one after another name. That match
is an induction-style circuit, and its first half is a head that moves each position's
preceding tokens into it. The toy pre-training never formed one on its own
(docs/backbones.md, "the subject match does not form"). Here some heads of the first layer
start as exact "look back `d` tokens" heads, so the features the match needs exist from
step 0; every weight stays trainable and the model is a plain `transformers` Llama.

How: with `attention_bias=True` the query and key projections have biases. A head whose
query bias is `(a, 0)` in every RoPE pair and key bias `(a cos(d t), a sin(d t))` (t the
pair's frequency) scores position j from position i by `a^2 sum_t cos((i - j - d) t)`, a
peak at `i - j = d` whatever the tokens, as sharp as `a` makes it.
"""
from __future__ import annotations

import math

import torch


def wire_previous_token_heads(model, offsets: tuple[int, ...], amplitude: float = 8.0, layer: int = 0) -> None:
    """Make head h of `layer` attend `offsets[h]` tokens back (h < len(offsets)).

    The model must be a Llama-style decoder built with `attention_bias=True` and default
    RoPE (no scaling). Only the q/k biases of those heads are set; the projection weights
    keep their random init, so the content term starts small beside the positional one.
    """
    cfg = model.config
    if not getattr(cfg, "attention_bias", False):
        raise ValueError("wire_previous_token_heads: the model needs attention_bias=True (q/k biases)")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if len(offsets) > cfg.num_key_value_heads:
        raise ValueError(f"wire_previous_token_heads: {len(offsets)} offsets for {cfg.num_key_value_heads} heads")
    if any(d < 1 for d in offsets):
        raise ValueError(f"wire_previous_token_heads: offsets must be >= 1, got {offsets}")
    attn = model.model.layers[layer].self_attn
    half = head_dim // 2
    theta = _rope_theta(cfg)
    freqs = 1.0 / theta ** (torch.arange(0, half, dtype=torch.float64) * 2 / head_dim)
    with torch.no_grad():
        for h, d in enumerate(offsets):
            q = torch.zeros(head_dim, dtype=torch.float64)
            k = torch.zeros(head_dim, dtype=torch.float64)
            # rotate_half pairs dimension i with i + half; RoPE turns each pair by pos * freq
            q[:half] = amplitude
            k[:half] = amplitude * torch.cos(d * freqs)
            k[half:] = amplitude * torch.sin(d * freqs)
            attn.q_proj.bias[h * head_dim:(h + 1) * head_dim] = q.to(attn.q_proj.bias.dtype)
            attn.k_proj.bias[h * head_dim:(h + 1) * head_dim] = k.to(attn.k_proj.bias.dtype)


def _rope_theta(cfg) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    if params.get("rope_type", "default") != "default":
        raise ValueError(f"wire_previous_token_heads: RoPE type {params.get('rope_type')!r}; expected default")
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", None))
    if theta is None or not math.isfinite(theta):
        raise ValueError("wire_previous_token_heads: the config has no rope_theta")
    return float(theta)
