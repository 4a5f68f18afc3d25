"""Gated recursion: spend the second pass only where pass 1 is unsure.

Pass 1 answers every question (greedy, scored by its mean token log-probability, or
by the agreement of its sampled candidates); questions whose confidence is below the
threshold go on to pass 2. Threshold -inf is pass 1 alone (a prompt-tuned single
pass); +inf is plain recursion. One pass-1 and one pass-2 answer per question are
enough to trace the whole accuracy/cost curve (`gate_sweep`), since the gate only
chooses between them.

Cost convention: a question answered by pass 1 alone costs 1 forward pass, a recursed
one 2 (the implementation recomputes pass 1's prefill for pass 2 rather than keeping
its states; the FLOPs estimates count it once, as a shared-cache implementation would).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shoulders.backbone.generation import Generation, GenerationConfig
from shoulders.data.examples import Example


@dataclass
class GateResult:
    generations: list[list[Generation]]  # per input: pass 2's generations if recursed, else pass 1's (n each)
    recursed: list[bool]
    confidence: list[float]
    first: list[Generation]  # pass 1's answer per input


def gated_generate(module, backbone, examples: Sequence[Example], config: GenerationConfig,
                   threshold: float | None = None) -> GateResult:
    """Answer with pass 1 where its confidence >= threshold (default: the module's gate), else recurse."""
    threshold = module.config.gate.threshold if threshold is None else threshold
    if threshold is None:
        threshold = math.inf
    first, conf, states = module.pass1(backbone, examples, config)
    recurse = [i for i, c in enumerate(conf) if c < threshold]
    gens = [[g] for g in first]
    keep = [i for i in range(len(examples)) if i not in set(recurse)]
    if config.n > 1 and keep:  # callers (the server) expect n generations per input
        for i, g in zip(keep, module.pass1_generate(backbone, [examples[i] for i in keep], config)):
            gens[i] = g
    if recurse:
        second = module.pass2_generate(backbone, [examples[i] for i in recurse], config, [states[i] for i in recurse])
        for i, g in zip(recurse, second):
            gens[i] = g
    chosen = set(recurse)
    return GateResult(gens, [i in chosen for i in range(len(examples))], conf, first)


def sweep_thresholds(confidence: Sequence[float], points: int = 20) -> list[float]:
    """Thresholds that recurse 0, 1/points, ..., all of the questions (by confidence quantile)."""
    ordered = sorted(confidence)
    n = len(ordered)
    out = [-math.inf]
    for k in range(1, points):
        out.append(ordered[min(n - 1, round(k * n / points))])
    out.append(math.inf)
    return sorted(set(out))


def gate_sweep(confidence: Sequence[float], correct1: Sequence[float], correct2: Sequence[float],
               thresholds: Sequence[float] | None = None) -> list[dict]:
    """Per threshold: EM (percent) and average forward passes per question (1 + share recursed)."""
    n = len(confidence)
    if not n or not (n == len(correct1) == len(correct2)):
        raise ValueError("gate_sweep needs equally long, non-empty confidence and correctness lists")
    rows = []
    for t in thresholds if thresholds is not None else sweep_thresholds(confidence):
        rec = [c < t for c in confidence]
        em = sum(b if r else a for a, b, r in zip(correct1, correct2, rec)) / n
        rows.append({"threshold": t, "em": 100.0 * em, "recursed": sum(rec) / n, "forward_passes": 1 + sum(rec) / n})
    return rows


def choose_threshold(rows: Sequence[dict], tolerance: float = 1.0) -> dict:
    """The cheapest row whose EM is within `tolerance` points of the best EM (pick on dev)."""
    best = max(r["em"] for r in rows)
    return min((r for r in rows if r["em"] >= best - tolerance), key=lambda r: (r["forward_passes"], -r["em"]))


def plot_gate_sweep(curves: dict[str, Sequence[dict]] | Sequence[dict], path: str | Path, *,
                    references: dict[str, tuple[float, float]] | None = None, chosen: dict | None = None,
                    title: str = "Gated recursion") -> None:
    """PNG of EM against average forward passes: one line per sweep in `curves` (a label ->
    `gate_sweep` rows, or one list of rows); `references` maps a label to (passes, EM)."""
    import matplotlib.pyplot as plt

    from shoulders.train.plots import save_figure

    if not isinstance(curves, dict):
        curves = {"gated (threshold sweep)": curves}
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, rows in curves.items():
        rows = sorted(rows, key=lambda r: r["forward_passes"])
        ax.plot([r["forward_passes"] for r in rows], [r["em"] for r in rows], "o-", ms=3, alpha=0.8, label=label)
    for (label, (x, y)), marker in zip((references or {}).items(), "s^vDP*"):
        ax.plot([x], [y], marker, ms=8, label=label)
    if chosen is not None:
        ax.plot([chosen["forward_passes"]], [chosen["em"]], "kx", ms=10, mew=2, label="threshold chosen on dev")
    ax.set_xlabel("average forward passes per question")
    ax.set_ylabel("exact match (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path)
