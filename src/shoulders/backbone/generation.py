"""Generation from [soft prefix ; tokens], with the model's own cache where it has one.

One prefill over the left-padded batch, then one token per step for every live row
(`backbone.decoding`). Rows that finish (EOS, a stop string, or the token budget) leave
the batch, and their cache rows with them, so a long answer does not make short ones
pay (a family whose cache cannot drop rows keeps them, ignored). `n` samples per input
share one prefill: the cache is repeated after it, not recomputed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shoulders.backbone.decoding import Decoding
from shoulders.backbone.generation_config import GenerationConfig
from shoulders.backbone.layout import Prefix
from shoulders.backbone.sampling import SamplingParams, sample_rows
from shoulders.backbone.stops import cut_at_stop, hits_stop


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    logprobs: list[float]  # log p(token) under the model at temperature 1
    finish_reason: str  # "eos" | "stop" | "length"

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


@torch.no_grad()
def generate(
    lm,
    prefix: Prefix,
    input_ids: Sequence[Sequence[int]],
    config: GenerationConfig | None = None,
    **overrides,
) -> list[list[Generation]]:
    """Generate `n` continuations per row; returns one list of Generation per input row."""
    cfg = config or GenerationConfig()
    if overrides:
        cfg = GenerationConfig(**{**cfg.__dict__, **overrides})
    batch = len(input_ids)
    state = Decoding.prefill(lm, prefix, input_ids, [cfg.n] * batch)
    logits = state.logits
    rows = batch * cfg.n
    generator = None
    if cfg.do_sample and cfg.seed is not None:
        generator = torch.Generator(device=logits.device)  # sampling happens where the logits are
        generator.manual_seed(cfg.seed)
    eos = lm.eos_token_id
    stops = tuple(s for s in cfg.stop if s)
    params = SamplingParams(cfg.temperature if cfg.do_sample else 0.0, cfg.top_p, cfg.top_k)
    out_ids: list[list[int]] = [[] for _ in range(rows)]
    out_lp: list[list[float]] = [[] for _ in range(rows)]
    reason = ["length"] * rows
    live = torch.arange(rows)  # output row of each batch row

    for step in range(cfg.max_new_tokens):
        nxt = sample_rows(logits, [params] * len(live), generator)
        lp = torch.log_softmax(logits, dim=-1).gather(-1, nxt[:, None]).squeeze(-1)
        nxt_l, lp_l = nxt.tolist(), lp.tolist()
        keep = []
        for j, r in enumerate(live.tolist()):
            tok = nxt_l[j]
            if eos is not None and tok == eos:
                reason[r] = "eos"
                continue
            out_ids[r].append(tok)
            out_lp[r].append(lp_l[j])
            if hits_stop(lm.decode, out_ids[r], stops):
                reason[r] = "stop"
                continue
            keep.append(j)
        if not keep or step == cfg.max_new_tokens - 1:
            break
        if len(keep) < len(live):
            state.keep(keep)
            # the head's outputs sit on the last shard's device when the backbone is sharded
            nxt = nxt[torch.tensor(keep, device=nxt.device)]
            live = live[torch.tensor(keep)]
        state.step(nxt)
        logits = state.logits

    results: list[list[Generation]] = []
    for b in range(batch):
        gens = []
        for r in range(b * cfg.n, (b + 1) * cfg.n):
            text = lm.decode(out_ids[r])
            if reason[r] == "stop":
                text, _ = cut_at_stop(text, stops)
            gens.append(Generation(text, out_ids[r], out_lp[r], reason[r]))
        results.append(gens)
    return results
