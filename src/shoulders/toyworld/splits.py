"""Train/dev/test assignment shared by the task suite and the QA sets.

One seeded assignment of entities to splits, used everywhere, means that "held-out
entity" means the same thing in every dataset: a test entity is the subject of no
training example in any task or QA set built with the same fractions.
"""
from __future__ import annotations

import random

from shoulders.toyworld.world import World

SPLITS = ("train", "dev", "test")


def entity_splits(world: World, dev_frac: float = 0.15, test_frac: float = 0.15) -> dict[str, str]:
    """entity id -> "train" | "dev" | "test", per kind; every kind with >= 3 entities gets all three."""
    rng = random.Random(f"entity-splits-{world.seed}")
    out: dict[str, str] = {}
    for kind in sorted({e.kind for e in world.entities.values()}):
        ids = sorted(e.id for e in world.of_kind(kind))
        rng.shuffle(ids)
        n_test = max(1, round(len(ids) * test_frac)) if len(ids) >= 3 else 0
        n_dev = max(1, round(len(ids) * dev_frac)) if len(ids) >= 3 else 0
        for i, eid in enumerate(ids):
            out[eid] = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
    return out


def split3(items: list, rng: random.Random, dev_frac: float, test_frac: float) -> tuple[list, list, list]:
    """Shuffle and cut a list into (train, dev, test)."""
    items = items[:]
    rng.shuffle(items)
    n_test, n_dev = round(len(items) * test_frac), round(len(items) * dev_frac)
    return items[n_test + n_dev:], items[n_test:n_test + n_dev], items[:n_test]
