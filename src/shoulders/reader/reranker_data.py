"""The re-ranker's training data and loop: hard negatives mined from the retrievers.

A hard negative is a passage the retriever ranks high that does not answer: exactly the
mistakes the re-ranker must learn to undo. Mining BM25 and dense and interleaving their
lists gives both kinds of mistake (shared words; similar meaning about someone else).

`train_reranker` trains one in memory through the common `Trainer` (`method: reranker`,
no frozen LM loaded) for callers that hold examples rather than a YAML config (the
toyworld reader and SQuAD experiments).
The toyworld ODQA files the YAML presets read are written by an experiment that uses
these functions (`shoulders experiment toyworld-odqa`, shoulders.experiments.toyworld_odqa).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from shoulders.data.examples import Example
from shoulders.reader.corpus import Passage
from shoulders.reader.retrieval.base import Hit, passage_text


def _positive_ids(q: Any) -> set[str]:
    ids = getattr(q, "positive_ids", None)
    if ids is None:
        gold = getattr(q, "gold_id", None)
        ids = [gold] if gold is not None else []
    return set(ids)


def mine_negatives(retriever, questions: Sequence[Any], passages: Mapping[str, Passage], k: int, *,
                   depth: int | None = None, hits: Sequence[Sequence[Hit]] | None = None) -> list[list[str]]:
    """Hard negatives: the retriever's top passages that are *not* answers, per question.

    `questions` are objects with `question`, `answers` and `positive_ids` (toyworld) or
    `gold_id` (SQuAD). A candidate is excluded if it is a positive by id, or if it contains
    an answer string (it would teach the re-ranker to reject a passage that answers).
    `hits` reuses a search already done; otherwise the retriever is searched to `depth`.
    """
    from shoulders.reader.metrics import has_answer

    if hits is None:
        depth = depth or 3 * k + 10
        hits = retriever.search([q.question for q in questions], depth)
    out = []
    for q, row in zip(questions, hits):
        pos = _positive_ids(q)
        negs = [h.passage_id for h in row if h.passage_id not in pos
                and not has_answer(passages[h.passage_id].text, q.answers)]
        out.append(negs[:k])
    return out


def merge_negatives(*lists: Sequence[Sequence[str]], k: int) -> list[list[str]]:
    """Interleave several retrievers' negatives per question (BM25's and dense's mistakes
    differ), dropping repeats, up to k."""
    out = []
    for rows in zip(*lists):
        merged: list[str] = []
        for i in range(max(map(len, rows), default=0)):
            merged += [r[i] for r in rows if i < len(r) and r[i] not in merged]
        out.append(merged[:k])
    return out


def reranker_examples(questions: Sequence[Any], passages: Mapping[str, Passage], negatives: Sequence[Sequence[str]],
                      *, with_title: bool = True, seed: int = 0, task: str = "rerank") -> list[Example]:
    """One training example per question that has a positive in `passages`: a positive
    (picked with `seed` when there are several) and its negatives, as texts in `choices`."""
    import random

    rng = random.Random(seed)
    out = []
    for q, negs in zip(questions, negatives):
        pos = sorted(p for p in _positive_ids(q) if p in passages)
        if not pos or not negs:
            continue
        positive = passage_text(passages[rng.choice(pos)], with_title)
        neg_texts = [passage_text(passages[n], with_title) for n in negs]
        out.append(Example(input=q.question, target=positive, task=task, id=getattr(q, "id", None),
                           choices=[positive, *neg_texts]))
    return out


def train_reranker(examples: Sequence[Example], config=None, *, steps: int | None = None, epochs: float = 1.0,
                   batch_size: int = 8, lr: float = 3e-4, warmup: int = 10, max_grad_norm: float = 1.0,
                   seed: int = 0, progress: bool = False, module=None, output_dir: str | Path | None = None):
    """Train a re-ranker (a fresh one from `config`, or `module`) on `examples` with the Trainer.

    AdamW (torch's defaults but lr), warm-up times a linear decay, gradient clipping, shuffled
    epochs; a run is fixed by `seed` and leaves torch's global RNG as it found it. The
    Trainer's outputs (history.json, the curve) go to `output_dir` (a temporary directory
    when None); the module stays in memory. Returns (module in eval mode, each step's loss).
    """
    import tempfile

    from shoulders.data.examples import Task
    from shoulders.reader.reranker import CrossEncoderReranker, RerankerConfig
    from shoulders.train import Trainer, load_config

    if not examples:
        raise ValueError("train_reranker: no training examples")
    if module is None:  # built before the Trainer seeds torch, as the weights never depended on it
        cfg = config if isinstance(config, RerankerConfig) else RerankerConfig.model_validate(config or {})
        module = CrossEncoderReranker.build(cfg)
    total = steps or max(1, math.ceil(len(examples) * epochs / batch_size))
    with tempfile.TemporaryDirectory(prefix="reranker-") as tmp, torch.random.fork_rng():
        train_cfg = load_config(data={
            "method": "reranker", "module": module.config.model_dump(mode="json"), "device": str(module.device),
            "mixture": {"shuffle": "python"},
            "optim": {"lr": lr, "weight_decay": 0.01, "warmup_steps": warmup, "schedule": "warmup_times_linear",
                      "max_grad_norm": max_grad_norm},
            "train": {"steps": total, "batch_size": batch_size, "seed": seed, "eval_every": 0, "log_every": 1,
                      "save_final": False},
            "output_dir": str(output_dir or tmp), "resume": False})
        result = Trainer(train_cfg, tasks=[Task("rerank", train=list(examples))], module=module,
                         progress=progress).fit()
    module.eval()
    return module, [row["loss"] for row in result.history["train"]]
