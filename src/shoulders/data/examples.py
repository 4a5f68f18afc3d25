"""The unit of data: an (input, target) example and a named task of them.

A task is data, as in lm-evaluation-harness: examples plus the metric that scores
them. `answers` holds every acceptable gold answer (SQuAD/NQ style, the metric takes
the max over them); `choices` turns evaluation into rank classification (T0 style).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Example:
    input: str
    target: str
    task: str = ""
    id: str | None = None
    answers: list[str] | None = None  # all gold answers; defaults to [target]
    choices: list[str] | None = None  # candidate targets for rank classification
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def gold(self) -> list[str]:
        return self.answers if self.answers else [self.target]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": self.input, "target": self.target}
        for key in ("task", "id", "answers", "choices"):
            value = getattr(self, key)
            if value:
                d[key] = value
        if self.meta:
            d["meta"] = self.meta
        return d


@dataclass
class Task:
    """A named set of examples with a metric and (optionally) a P3-style cluster."""

    name: str
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    metric: str = "exact_match"
    cluster: str = ""

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "dev", "test"):
            raise ValueError(f"unknown split {name!r}: expected train, dev or test")
        return getattr(self, name)
