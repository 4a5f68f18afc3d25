"""Training stages: what a module's config asks to train before its main training.

Building or loading a module never trains it. A module whose config names a stage
(NeuralRecursion's `lm_pretrain`, the Connector's pre-training on plain text) lists it
in `module.stages()`, and whoever trains the module runs the stages first with
`run_stages`: the Trainer as soon as it holds the module, a recipe that trains without
the Trainer right after building. Each stage runs once per module object, and a loaded
module has been through its stages already (its weights are their result).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def pending_stages(module) -> dict:
    """The stages `module`'s config names that have not run on it yet: name -> fn(backbone, progress)."""
    named = module.stages() if hasattr(module, "stages") else {}
    done = getattr(module, "stages_done", set())
    return {name: fn for name, fn in named.items() if name not in done}


def mark_done(module) -> None:
    """Record every stage of `module` as run (a loaded module's weights are their result)."""
    module.stages_done = set(module.stages()) if hasattr(module, "stages") else set()


def run_stages(module, backbone, *, progress: bool = True) -> dict[str, dict]:
    """Run `module`'s pending stages in order; returns name -> the stage's stats (its losses...)."""
    out = {}
    for name, stage in pending_stages(module).items():
        out[name] = stats = stage(backbone, progress)
        module.stages_done = getattr(module, "stages_done", set()) | {name}
        losses = stats.get("losses") or []
        if losses:
            log.info("stage %s: %d steps, loss %.4f -> %.4f", name, len(losses), losses[0], losses[-1])
    return out
