"""Score recursion variants question by question: correctness, hop count and FLOPs.

FLOPs per question ~ 2 x N_params x tokens, summed over passes, where tokens counts
soft prompt vectors, input tokens and generated tokens (for textual pass 1: the tokens
of all n samples, which share one prefill); the Connector adds 2 x its parameters x
the positions it maps. Pass 1's prefill is counted once even where the implementation
recomputes it (the gate's pass-1 answer and pass 2 share it in principle).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from shoulders.backbone import FrozenLM, GenerationConfig
from shoulders.data.examples import Example
from shoulders.data.metrics import exact_match
from shoulders.recursion.candidates import Candidates
from shoulders.recursion.neural import NeuralRecursion
from shoulders.recursion.textual import TextualRecursion


@dataclass
class Scored:
    correct: list[float]  # per question: exact match, 0 or 1
    hops: list[int]  # per question: meta["hops"] (1 when absent)
    flops: list[float]  # per question: estimated FLOPs
    candidates: list[Candidates] | None = None  # textual recursion: pass 1's merged samples per question


def _batches(xs, size=64):
    return [xs[i:i + size] for i in range(0, len(xs), size)]


def _gen(max_new_tokens: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=max_new_tokens, stop=("\n",))


@torch.no_grad()
def score_single(module, lm: FrozenLM, examples: list[Example], max_new_tokens: int = 12):
    """Prompt tuning (or any module's pass 1): per-question correctness, FLOPs, and answers."""
    module.eval()
    out, gens_all = [], []
    for batch in _batches(examples):
        gens = [g[0] for g in module.generate(lm, batch, _gen(max_new_tokens))]
        ids = module.encode_inputs(lm, batch)
        p = module.prompt.shape[0] if hasattr(module, "prompt") else module.prompt1.shape[0]
        for ex, g, t in zip(batch, gens, ids):
            out.append(2.0 * lm.num_parameters * (p + len(t) + len(g.token_ids)))
        gens_all += gens
    correct = [exact_match(g.text.strip(), ex.gold) for g, ex in zip(gens_all, examples)]
    return Scored(correct, [ex.meta.get("hops", 1) for ex in examples], out), gens_all


@torch.no_grad()
def score_textual(module: TextualRecursion, lm: FrozenLM, examples: list[Example], max_new_tokens: int = 12):
    module.eval()
    flops, preds, seen = [], [], []
    n = lm.num_parameters
    for batch in _batches(examples):
        cands = module.candidates(lm, batch)
        seen += cands
        gens = module.pass2_generate(lm, batch, _gen(max_new_tokens), cands)
        ids1 = module.encode_inputs(lm, batch)
        ids2 = module._encode(lm, [module.pass2_text(ex, c) for ex, c in zip(batch, cands)])
        choose = module.config.answer == "choose"
        for t1, c, t2, g in zip(ids1, cands, ids2, gens):
            pass1 = module.prompt1.shape[0] + len(t1) + c.tokens
            if choose and module.choices(c):  # one forward of [prompt2 ; pass-2 text ; candidate] per candidate
                pass2 = sum(module.prompt2.shape[0] + len(t2) + len(k)
                            for k in module.encode_targets(lm, module.choices(c)))
            else:
                pass2 = module.prompt2.shape[0] + len(t2) + len(g[0].token_ids)
            flops.append(2.0 * n * (pass1 + pass2))
        preds += [g[0].text.strip() for g in gens]
    correct = [exact_match(p, ex.gold) for p, ex in zip(preds, examples)]
    return Scored(correct, [ex.meta.get("hops", 1) for ex in examples], flops, seen)


def candidate_accuracy(candidates: list[Candidates], examples: list[Example], max_shown: int | None = None) -> dict:
    """How good pass 1's candidates are (percent): the most frequent one is right (`top`),
    any shown one is right (`any`: what pass 2 could at best pick). Comparing these on the
    training questions with new ones shows how far pass 2's training data flatters pass 1."""
    if len(candidates) != len(examples):
        raise ValueError(f"candidate_accuracy: {len(candidates)} candidate sets for {len(examples)} examples")
    top = [exact_match(c.top, ex.gold) for c, ex in zip(candidates, examples)]
    any_ = [max((exact_match(a, ex.gold) for a, _ in c.shown(max_shown)), default=0.0) for c, ex in zip(candidates, examples)]
    n = max(1, len(examples))
    return {"top": 100.0 * sum(top) / n, "any": 100.0 * sum(any_) / n}


@dataclass
class Pass1:
    """Pass 1's own greedy answers (what the gate decides from)."""

    correct: list[float]
    confidence: list[float]  # mean token log-probability of the answer
    flops: list[float]  # pass 1 answering alone
    prefill_flops: list[float]  # its prefill, which pass 2 would share


@torch.no_grad()
def score_neural(module: NeuralRecursion, lm: FrozenLM, examples: list[Example],
                 max_new_tokens: int = 12) -> tuple[Scored, Pass1]:
    """Plain neural recursion, and pass 1 answering alone (for the gate)."""
    module.eval()
    flops, preds, first = [], [], Pass1([], [], [], [])
    n, nc = lm.num_parameters, module.connector_parameters()
    p1, p2 = module.prompt1.shape[0], module.prompt2.shape[0]
    for batch in _batches(examples):
        gens = module.pass2_generate(lm, batch, _gen(max_new_tokens))
        answers, conf, _ = module.pass1(lm, batch, _gen(max_new_tokens))
        ids = module.encode_inputs(lm, batch)
        for ex, t, g, a, c in zip(batch, ids, gens, answers, conf):
            k = 1 if module.config.connect == "last" else len(t)
            again = len(t) if module.config.repeat_question else 0
            flops.append(2.0 * n * (p1 + len(t) + p2 + k + again + len(g[0].token_ids)) + 2.0 * nc * k)
            first.correct.append(exact_match(a.text.strip(), ex.gold))
            first.confidence.append(c)
            first.flops.append(2.0 * n * (p1 + len(t) + len(a.token_ids)))
            first.prefill_flops.append(2.0 * n * (p1 + len(t)))
        preds += [g[0].text.strip() for g in gens]
    correct = [exact_match(p, ex.gold) for p, ex in zip(preds, examples)]
    return Scored(correct, [ex.meta.get("hops", 1) for ex in examples], flops), first


def score_gated(neural: Scored, first: Pass1, threshold: float) -> tuple[Scored, float]:
    """The gate's outcome at `threshold`, from one plain run and pass 1's answers:
    (per-question scores, mean forward passes per question)."""
    rec = [c < threshold for c in first.confidence]
    correct = [b if r else a for a, b, r in zip(first.correct, neural.correct, rec)]
    flops = [f1 + (f2 - pre) * r for f1, f2, pre, r in zip(first.flops, neural.flops, first.prefill_flops, rec)]
    return Scored(correct, neural.hops, flops), 1.0 + sum(rec) / len(rec)


def summarize(s: Scored, passes: float) -> dict:
    """EM (percent) overall and per hop count, forward passes, mean FLOPs per question."""
    def em(hop=None):
        xs = [c for c, h in zip(s.correct, s.hops) if hop is None or h == hop]
        return 100.0 * sum(xs) / len(xs) if xs else float("nan")

    return {"em": em(), "em_1hop": em(1), "em_2hop": em(2), "forward_passes": passes,
            "flops_per_question": sum(s.flops) / len(s.flops)}
