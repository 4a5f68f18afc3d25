"""One optimizer step and every learning-rate schedule, for every training loop in shoulders.

The Trainer, the re-ranker, Connector pre-training, the toy and stand-in backbones'
pre-training and the benchmarks all step through `update` (or `step`, which runs the
backward first), so the order is written once: backward -> clip -> optimizer step ->
schedule step -> zero grads.

Schedules come from `transformers.get_scheduler` where its formula gives the same floats
as ours (constant and cosine without warm-up). Elsewhere each is a named function here,
kept as it was so that no trained number of the demo moves: transformers' warm-up starts
at lr 0 (step / warmup) where ours starts at lr / warmup ((step + 1) / warmup, no step
spent at lr 0), and its linear decay computes (total - step) / (total - warmup) where ours
computes 1 - progress, which rounds differently.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from tqdm.auto import tqdm

from shoulders.utils.progress import bar_disabled

Multiplier = Callable[[int], float]  # step -> factor of the peak lr (torch's LambdaLR)


def warmup_then(schedule: str, warmup: int, total: int) -> Multiplier:
    """The Trainer's schedules: linear warm-up from 1/warmup, then constant, linear to 0
    or cosine to 0 over the remaining steps."""
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def warmup_times_linear(warmup: int, total: int) -> Multiplier:
    """The re-ranker's schedule: a linear warm-up times a linear decay that starts at step 0."""
    return lambda s: min(1.0, (s + 1) / max(1, warmup)) * max(0.0, 1.0 - s / total)


def lr_scheduler(optimizer, schedule: str, warmup: int, total: int):
    """A LambdaLR for `schedule`: constant | linear | cosine (`warmup_then`) or
    warmup_times_linear; transformers' own where it computes the same floats."""
    if warmup == 0 and schedule in ("constant", "cosine"):
        from transformers import get_scheduler

        return get_scheduler(schedule, optimizer, num_warmup_steps=0, num_training_steps=total)
    if schedule == "warmup_times_linear":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_times_linear(warmup, total))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then(schedule, warmup, total))


def _cosine_to(floor: float, progress: float) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_floor(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    """The toy backbones' lr: linear warm-up to `peak`, then cosine to peak * floor over the
    remaining steps. An lr, not a multiplier: peak * (step + 1) / warmup rounds as it did."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * _cosine_to(floor, (step - warmup) / max(1, total - warmup))


def warmup_times_cosine_floor(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    """The stand-in backbones' lr: a linear warm-up factor times a cosine to `floor` over all steps."""
    return peak * min(1.0, (step + 1) / warmup) * _cosine_to(floor, step / total)


def set_lr(optimizer, lr: float) -> None:
    """Every parameter group's lr, for loops that compute the lr itself (the backbones')."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def update(optimizer, scheduler=None, *, params: Iterable | None = None, max_grad_norm: float | None = None,
           clip: Callable = torch.nn.utils.clip_grad_norm_) -> None:
    """After the backward: clip the global grad norm (when `max_grad_norm` is set; `clip` is
    accelerate's under the Trainer), step, advance the schedule, drop the gradients."""
    if max_grad_norm:
        clip(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def step(loss: torch.Tensor, optimizer, scheduler=None, **kwargs) -> float:
    """Backward of `loss`, then `update`; the loss as a float."""
    loss.backward()
    update(optimizer, scheduler, **kwargs)
    return loss.item()


def steps(total: int, desc: str, progress: bool = True, *, start: int = 0, leave: bool = False):
    """range(start, total) under a progress bar (none with progress=False or --no-progress)."""
    return tqdm(range(start, total), desc=desc, total=total, initial=start, disable=bar_disabled(progress),
                leave=leave)


def run(loss_fn: Callable[[int], torch.Tensor], optimizer, scheduler, total: int, *, desc: str,
        progress: bool = True, **kwargs) -> list[float]:
    """`total` steps of `loss_fn(step)`; each step's loss. kwargs go to `update` (params, max_grad_norm)."""
    return [step(loss_fn(i), optimizer, scheduler, **kwargs) for i in steps(total, desc, progress)]
