"""Score a module on tasks: per task, per cluster, and the average over tasks (in percent)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from shoulders.backbone.generation import GenerationConfig
from shoulders.data.examples import Example, Task
from shoulders.data.metrics import score
from shoulders.utils.progress import bar_disabled


@torch.no_grad()
def predict(module, backbone, examples: Sequence[Example], *, batch_size: int = 32, max_new_tokens: int = 24,
            progress: bool = False, desc: str = "predict") -> list[str]:
    was_training = module.training
    module.eval()
    gen = GenerationConfig(max_new_tokens=max_new_tokens, stop=("\n",))
    preds: list[str] = []
    batches = range(0, len(examples), batch_size)
    for i in tqdm(batches, desc=desc, disable=bar_disabled(progress), leave=False):
        preds.extend(module.predict(backbone, examples[i : i + batch_size], gen))
    module.train(was_training)
    return preds


def evaluate(
    module,
    backbone,
    tasks: Sequence[Task],
    *,
    split: str = "dev",
    max_examples: int | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 24,
    progress: bool = False,
) -> dict:
    """Returns {"tasks": {name: score}, "clusters": {cluster: mean}, "average": mean over tasks}."""
    per_task: dict[str, float] = {}
    clusters: dict[str, list[float]] = defaultdict(list)
    for task in tasks:
        examples = task.split(split)[:max_examples] if max_examples else task.split(split)
        if not examples:
            continue
        preds = predict(module, backbone, examples, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        progress=progress, desc=f"eval {task.name}")
        value = 100.0 * sum(score(task.metric, p, ex.gold) for p, ex in zip(preds, examples)) / len(examples)
        per_task[task.name] = value
        clusters[task.cluster or task.name].append(value)
    if not per_task:
        raise ValueError(f"no task has {split} examples to evaluate")
    return {
        "tasks": per_task,
        "clusters": {c: sum(v) / len(v) for c, v in clusters.items()},
        "average": sum(per_task.values()) / len(per_task),
    }
