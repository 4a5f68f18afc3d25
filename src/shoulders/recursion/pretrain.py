"""Connector pre-training on plain language modelling (the paper found it vital).

A text is cut in two at a random point. Pass 1 reads the beginning behind prompt1;
pass 2 reads *only* [prompt2 ; connector(pass-1 states over the beginning)] — the
beginning's tokens are not repeated — and must predict the continuation. So whatever
pass 2 knows about the beginning came through the Connector: it learns to hand pass
1's states over as inputs pass 2 can read, on any text, before any task data. By default
only the Connector trains (the prompts keep their values for task training).

`NeuralRecursionConfig.lm_pretrain` names this as the module's `lm_pretrain` stage, which
the Trainer runs before task training (shoulders.modules.stages); a recipe may call
`pretrain_connector` itself instead. Building a module never runs it.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field

from shoulders.modules.base import StrictModel
from shoulders.train.loop import lr_scheduler, run


class LMPretrainConfig(StrictModel):
    texts: str | None = Field(None, description="text file: one document per line (.txt) or JSONL with 'text'")
    steps: int = Field(0, ge=0, description="optimizer steps; 0 = no pre-training")
    batch_size: int = Field(16, gt=0, description="texts per step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (constant after a 10-step warm-up)")
    max_tokens: int = Field(48, ge=4, description="tokens of each text used (its beginning plus continuation)")
    context_frac: tuple[float, float] = Field((0.3, 0.7), description="cut point as a share of the text's tokens, "
                                              "drawn uniformly from this range")
    train_prompts: bool = Field(False, description="also train prompt1 and prompt2 (default: the Connector only)")
    seed: int = Field(0, description="seed of the text order and cut points")


def read_texts(path: str | Path) -> list[str]:
    """Documents from a .txt file (one per non-empty line) or a JSONL file with a 'text' field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file (lm_pretrain.texts)")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line)["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}:{n}: expected a JSON object with a 'text' field") from None
    return out


def pretrain_connector(module, backbone, texts: Sequence[str], config: LMPretrainConfig | None = None, *,
                       progress: bool = True, **overrides) -> dict:
    """Train `module`'s Connector to pass text through both frozen passes.

    `config` (or keyword overrides of it: steps, batch_size, lr, ...) sets the run.
    Returns {"losses": [per step], "steps", "wall_s"}.
    """
    cfg = (config or LMPretrainConfig()).model_copy(update=overrides)
    docs = [t[: cfg.max_tokens] for t in backbone.encode(list(texts))]
    docs = [t for t in docs if len(t) >= 4]
    if not docs:
        raise ValueError("pretrain_connector: no text has at least 4 tokens")
    rng = random.Random(cfg.seed)
    prompts = [module.prompt1, module.prompt2]
    saved_flags = [p.requires_grad for p in prompts]
    for p in prompts:
        p.requires_grad_(cfg.train_prompts)
    params = list(module.connector.parameters()) + (prompts if cfg.train_prompts else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = lr_scheduler(opt, "constant", 10, cfg.steps)

    def batch_loss(_step: int) -> torch.Tensor:
        ctx, tgt = [], []
        for doc in (rng.choice(docs) for _ in range(cfg.batch_size)):
            cut = int(len(doc) * rng.uniform(*cfg.context_frac))
            cut = min(max(cut, 1), len(doc) - 1)
            ctx.append(doc[:cut])
            tgt.append(doc[cut:])
        h, mask, _ = module.pass1_states(backbone, ctx)
        return backbone(module.pass2_prefix(h, mask), [[] for _ in ctx], tgt).loss

    was_training, start = module.training, time.perf_counter()
    module.train()
    try:
        losses = run(batch_loss, opt, sched, cfg.steps, desc="connector LM pre-training", progress=progress,
                     params=params, max_grad_norm=1.0)
    finally:
        for p, flag in zip(prompts, saved_flags):
            p.requires_grad_(flag)
        module.train(was_training)
    return {"losses": losses, "steps": cfg.steps, "wall_s": time.perf_counter() - start}
