"""The prompted multi-task suite (P3/T0 style) as `shoulders.data.Task` objects.

What is held out: every entity of the world is assigned once to train, dev or test
(`entity_splits`), and an example belongs to the split of the entity it is about, so
test examples ask about entities no training example of *any* task mentions
(`fiction_qa` invents fresh names per example, so it is held out by construction).
Templates are shared across splits by default; `heldout_template=True` reserves each
task's last template for the test split (T0's held-out-prompt evaluation), so a
method that merely learnt a template's wording is caught out.
"""
from __future__ import annotations

import random

from pydantic import Field, model_validator

from shoulders.data.examples import Example, Task
from shoulders.toyworld.splits import SPLITS, entity_splits
from shoulders.toyworld.task_defs import SPECS, TaskSpec
from shoulders.toyworld.world import World
from shoulders.utils.strict_model import StrictModel


class TaskSetConfig(StrictModel):
    """The sizes and splits of the prompted multi-task suite."""

    n_train: int = Field(300, ge=0, description="training examples per task (fewer if the entity pool runs dry)")
    n_dev: int = Field(50, ge=0, description="dev examples per task (fewer if the entity pool runs dry)")
    n_test: int = Field(100, ge=0, description="test examples per task (fewer if the entity pool runs dry)")
    dev_frac: float = Field(0.15, ge=0, le=1, description="share of each kind's entities held out for dev")
    test_frac: float = Field(0.15, ge=0, le=1, description="share of each kind's entities held out for test")
    heldout_template: bool = Field(False, description="test uses only the last template, train/dev the others")
    tasks: tuple[str, ...] = Field(tuple(s.name for s in SPECS), description="which datasets to build "
                                   "(names from task_defs.SPECS)")

    @model_validator(mode="after")
    def _check(self):
        if self.dev_frac + self.test_frac > 1:
            raise ValueError(f"dev_frac + test_frac must be <= 1, got {self.dev_frac} + {self.test_frac}")
        return self

    @classmethod
    def quick(cls) -> "TaskSetConfig":
        return cls(n_train=100, n_dev=20, n_test=40)


def _render(spec: TaskSpec, fields: dict[str, str], label: str, t_idx: int, eid: str, idx: str) -> Example:
    template = spec.templates[t_idx]
    text = template.text.format(**fields)
    if spec.labels:  # classification: the template's verbalizer gives target and choices
        target = template.labels[label]
        choices = list(dict.fromkeys(template.labels[lab] for lab in spec.labels))
    else:
        target = label
        choices = fields["_choices"].split("|") if "_choices" in fields else None
    return Example(input=text, target=target, task=spec.name, id=idx, choices=choices,
                   meta={"template": t_idx, "subject": eid, "label": label})


def build_task(world: World, spec: TaskSpec, cfg: TaskSetConfig, splits: dict[str, str]) -> Task:
    rng = random.Random(f"task-{spec.name}-{world.seed}")
    n_tmpl = len(spec.templates)
    task = Task(name=spec.name, metric="accuracy" if spec.labels or spec.metric == "accuracy" else spec.metric,
                cluster=spec.cluster)
    for split, n in zip(SPLITS, (cfg.n_train, cfg.n_dev, cfg.n_test)):
        if cfg.heldout_template:
            t_ids = [n_tmpl - 1] if split == "test" else list(range(n_tmpl - 1))
        else:
            t_ids = list(range(n_tmpl))
        pool = sorted(e for e, s in splits.items() if s == split and world.entities[e].kind in spec.kinds)
        if spec.kinds and not pool:
            raise ValueError(f"task {spec.name}: no {split} entities of kinds {spec.kinds}; use a larger world")
        seen: set[str] = set()
        examples = getattr(task, split)
        for _ in range(20 * n):  # draws may repeat on a small world: dedupe, give up after 20x
            if len(examples) >= n:
                break
            eid = rng.choice(pool) if pool else ""
            fields, label = spec.gen(world, eid, rng)
            ex = _render(spec, fields, label, rng.choice(t_ids), eid, f"{spec.name}-{split}-{len(examples):04d}")
            if ex.input not in seen:
                seen.add(ex.input)
                examples.append(ex)
    return task


def build_tasks(world: World, cfg: TaskSetConfig | None = None) -> list[Task]:
    """All datasets of the suite, in a fixed order (see `task_defs.SPECS`)."""
    cfg = cfg or TaskSetConfig()
    unknown = set(cfg.tasks) - {s.name for s in SPECS}
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}: expected some of {[s.name for s in SPECS]}")
    splits = entity_splits(world, cfg.dev_frac, cfg.test_frac)
    return [build_task(world, spec, cfg, splits) for spec in SPECS if spec.name in cfg.tasks]


def clusters(tasks: list[Task]) -> dict[str, list[str]]:
    """cluster -> task names, in suite order."""
    out: dict[str, list[str]] = {}
    for t in tasks:
        out.setdefault(t.cluster, []).append(t.name)
    return out
