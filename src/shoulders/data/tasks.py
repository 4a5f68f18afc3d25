"""Build `Task` objects from task configs (files on disk)."""
from __future__ import annotations

from shoulders.data.examples import Task
from shoulders.data.loaders import load_examples


def load_task(cfg) -> Task:
    """Read a task's train/dev/test files as described by a `TaskConfig`."""
    task = Task(name=cfg.name, metric=cfg.metric, cluster=cfg.cluster or cfg.name)
    for split in ("train", "dev", "test"):
        path = getattr(cfg, split)
        if path:
            examples = load_examples(
                path,
                task=cfg.name,
                fmt=cfg.format,
                input_field=cfg.input_field,
                target_field=cfg.target_field,
                choices=cfg.choices,
                label_names=cfg.label_names,
            )
            setattr(task, split, examples)
    return task
