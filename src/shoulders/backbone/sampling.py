"""Picking the next token, per row: the one sampler of `generate` and the server.

Greedy rows take the argmax; sampling rows are tempered, cut to top-k / top-p together
(row-wise tensors, one pass), then draw. Where they draw from is the caller's choice:

- a list of generators, one per row (the server): each row draws from its *own*
  `torch.Generator`, so a seeded row draws the same tokens whatever batch it lands in,
  and with n=1 the same as `FrozenLM.generate(..., seed=s)` run alone;
- one generator, or None for torch's global RNG (`generate`): all sampling rows draw in
  one call, in row order, so `n` samples of a seeded call differ from each other.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus mass; 1 = off
    top_k: int = 0  # keep the k most likely tokens; 0 = off

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A row's own generator; unseeded rows get fresh entropy so concurrent rows differ."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else random.SystemRandom().getrandbits(63))
    return gen


def sample_rows(
    logits: Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None] | torch.Generator | None,
) -> Tensor:
    """The next token per row of float logits [B, V]; `params[i]` is row i's settings,
    `generators` one per row or one shared by all (see the module doc)."""
    out = logits.argmax(dim=-1)
    rows = [i for i, p in enumerate(params) if not p.greedy]
    if not rows:
        return out
    idx = torch.tensor(rows, device=logits.device)
    temp = torch.tensor([params[i].temperature for i in rows], device=logits.device, dtype=logits.dtype)
    scores = logits[idx] / temp[:, None]
    ks = [params[i].top_k for i in rows]
    if any(0 < k < scores.shape[-1] for k in ks):
        k_max = max(k for k in ks if 0 < k < scores.shape[-1])
        top = torch.topk(scores, k_max, dim=-1).values
        kth = torch.stack([top[j, k - 1] if 0 < k < scores.shape[-1] else scores.new_tensor(float("-inf"))
                           for j, k in enumerate(ks)])
        scores = scores.masked_fill(scores < kth[:, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    ps = torch.tensor([params[i].top_p for i in rows], device=logits.device, dtype=probs.dtype)
    if bool((ps < 1.0).any()):
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p (the first always stays);
        # rows with top_p = 1 keep everything (no float round-off at the tail)
        drop = ((sorted_p.cumsum(-1) - sorted_p) >= ps[:, None]) & (ps < 1.0)[:, None]
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    if generators is None or isinstance(generators, torch.Generator):  # one stream for the batch
        out[idx] = torch.multinomial(probs, 1, generator=generators).squeeze(-1)
        return out
    for j, i in enumerate(rows):
        out[i] = torch.multinomial(probs[j : j + 1], 1, generator=generators[i]).squeeze()
    return out
