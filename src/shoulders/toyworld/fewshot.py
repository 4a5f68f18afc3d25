"""Few-shot closed-book QA with a frozen backbone and a plain text prompt (no training).

This is the check that a pre-trained toy backbone really holds the world's facts:
k solved "Q: ... A: ..." lines, then the question, greedy decoding up to the end of
the line. It is also the no-training baseline that learned modules must beat.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import Field

from shoulders.data.examples import Example
from shoulders.data.metrics import exact_match
from shoulders.utils.strict_model import StrictModel


class FewShotConfig(StrictModel):
    """How the few-shot baseline prompts and decodes."""

    k: int = Field(5, ge=0, description="demonstrations per prompt")
    max_new_tokens: int = Field(12, ge=1, description="greedy tokens generated per answer")
    batch_size: int = Field(32, ge=1, description="prompts per generation batch")
    seed: int = Field(0, description="picks the demonstrations (different ones for each question)")
    match: str | None = Field("hops", description="draw demos with the same meta[match] as the question "
                              "(None: any)")


@dataclass
class FewShotResult:
    em: float
    n: int
    by_group: dict[str, float] = field(default_factory=dict)  # e.g. {"hops=1": .., "relation=born_in": ..}
    predictions: list[str] = field(default_factory=list)


def build_prompt(question: str, demos: Sequence[Example]) -> str:
    lines = [f"Q: {d.input} A: {d.target}" for d in demos]
    return "\n".join([*lines, f"Q: {question} A:"])


def _load(model_or_dir):
    if isinstance(model_or_dir, (str, Path)):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_or_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_or_dir), dtype=torch.float32)
        return model.eval(), tok
    return model_or_dir


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: Sequence[str], cfg: FewShotConfig) -> list[str]:
    """Greedy continuation of each prompt, cut at the first newline."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for i in range(0, len(prompts), cfg.batch_size):
            enc = tokenizer(list(prompts[i:i + cfg.batch_size]), return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [t.split("\n")[0].strip() for t in texts]
    finally:
        tokenizer.padding_side = side
    return out


def fewshot_eval(model_or_dir, questions: Sequence[Example], demos: Sequence[Example],
                 cfg: FewShotConfig | None = None, group_keys: Sequence[str] = ("hops", "relation")) -> FewShotResult:
    """Exact match of greedy few-shot answers; `model_or_dir` is a directory or (model, tokenizer).

    Demonstrations are drawn from `demos` (a train split) per question, never the
    question itself, and by default of the same hop count (so a 2-hop question is shown
    2-hop examples); groups report EM per value of each `meta` key in `group_keys`.
    """
    cfg = cfg or FewShotConfig()
    model, tok = _load(model_or_dir)
    rng = random.Random(cfg.seed)
    pools: dict = defaultdict(list)
    for d in demos:
        pools[d.meta.get(cfg.match) if cfg.match else None].append(d)
    prompts = []
    for q in questions:
        pool = pools.get(q.meta.get(cfg.match) if cfg.match else None) or list(demos)
        chosen = [d for d in rng.sample(pool, min(len(pool), cfg.k + 1)) if d.input != q.input][: cfg.k]
        prompts.append(build_prompt(q.input, chosen))
    preds = generate_answers(model, tok, prompts, cfg)
    scores = [exact_match(p, q.gold) for p, q in zip(preds, questions)]
    groups: dict[str, list[float]] = defaultdict(list)
    for q, s in zip(questions, scores):
        for key in group_keys:
            if key in q.meta:
                groups[f"{key}={q.meta[key]}"].append(s)
    return FewShotResult(em=sum(scores) / max(1, len(scores)), n=len(scores),
                         by_group={g: sum(v) / len(v) for g, v in sorted(groups.items())}, predictions=preds)
