"""Multi-task mixture sampling, as in T5 and T0, with a resumable state.

Rates: `proportional` draws a task with probability proportional to min(n_i, cap)
(examples-proportional mixing with an artificial size limit); `temperature` raises those
sizes to 1/T before normalising (T=1 is proportional, large T tends to uniform);
`uniform` ignores sizes. Within a task, examples are visited in a fresh seeded
permutation per epoch, so every example is seen before any repeats: numpy's, seeded by
(seed, task, epoch), or with `shuffle="python"` the permutations one `random.Random(seed)`
per task draws in turn with `random.sample` (the re-ranker's order from before it trained
in the Trainer; replayed from the seed on resume).

The state is a few integers (JSON), and the same state yields the same global batches
whatever the number of processes: each process then takes its own slice.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Literal

import numpy as np

MixKind = Literal["proportional", "temperature", "uniform"]
Shuffle = Literal["numpy", "python"]


def mixture_rates(
    sizes: Mapping[str, int], kind: MixKind = "proportional", cap: int | None = None, temperature: float = 1.0
) -> dict[str, float]:
    if not sizes:
        raise ValueError("a mixture needs at least one task")
    for name, n in sizes.items():
        if n <= 0:
            raise ValueError(f"task {name!r} has no training examples")
    if cap is not None and cap <= 0:
        raise ValueError(f"mixture cap must be positive, got {cap}")
    if temperature <= 0:
        raise ValueError(f"mixture temperature must be positive, got {temperature}")
    eff = {k: float(min(n, cap) if cap else n) for k, n in sizes.items()}
    if kind == "uniform":
        weights = {k: 1.0 for k in eff}
    elif kind == "proportional":
        weights = eff
    elif kind == "temperature":
        weights = {k: v ** (1.0 / temperature) for k, v in eff.items()}
    else:
        raise ValueError(f"unknown mixture kind {kind!r}: expected proportional, temperature or uniform")
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


class MixtureSampler:
    """Draws global batches of (task, example index) pairs."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        *,
        kind: MixKind = "proportional",
        cap: int | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        shuffle: Shuffle = "numpy",
    ):
        if shuffle not in ("numpy", "python"):
            raise ValueError(f"unknown shuffle {shuffle!r}: expected numpy or python")
        self.shuffle = shuffle
        self.sizes = dict(sizes)
        self.names = sorted(self.sizes)
        self.rates = mixture_rates(self.sizes, kind, cap, temperature)
        self._p = np.array([self.rates[n] for n in self.names])
        self.seed = seed
        self.draws = 0  # batches drawn so far
        self.cursor = {n: 0 for n in self.names}  # examples taken from each task so far
        self._perms: dict[str, tuple[int, np.ndarray]] = {}  # task -> (epoch, permutation)
        self._streams: dict[str, tuple[int, random.Random]] = {}  # shuffle=python: task -> (next epoch, rng)

    def _perm(self, name: str, epoch: int) -> np.ndarray:
        cached = self._perms.get(name)
        if cached is None or cached[0] != epoch:
            if self.shuffle == "python":
                perm = np.array(self._python_perm(name, epoch))
            else:
                rng = np.random.default_rng([self.seed, 1 + self.names.index(name), epoch])
                perm = rng.permutation(self.sizes[name])
            cached = self._perms[name] = (epoch, perm)
        return cached[1]

    def _python_perm(self, name: str, epoch: int) -> list[int]:
        """Epoch `epoch`'s permutation of the task's python stream (replayed from the seed
        when asked for an earlier epoch than the stream's next, as after a resume)."""
        n = self.sizes[name]
        nxt, rng = self._streams.get(name, (0, None))
        if rng is None or epoch < nxt:
            i = self.names.index(name)  # task 0 keeps the plain seed: the re-ranker's old order
            nxt, rng = 0, random.Random(self.seed if i == 0 else f"{self.seed}/{name}")
        while True:
            perm = rng.sample(range(n), n)
            nxt += 1
            if nxt > epoch:
                self._streams[name] = (nxt, rng)
                return perm

    def _take(self, name: str) -> int:
        pos = self.cursor[name]
        self.cursor[name] = pos + 1
        n = self.sizes[name]
        return int(self._perm(name, pos // n)[pos % n])

    def next_batch(self, batch_size: int) -> list[tuple[str, int]]:
        # The task draws of batch t depend only on (seed, t): resuming needs no RNG state.
        rng = np.random.default_rng([self.seed, 0, self.draws])
        picks = rng.choice(len(self.names), size=batch_size, p=self._p)
        self.draws += 1
        return [(self.names[i], self._take(self.names[i])) for i in picks]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "draws": self.draws, "cursor": dict(self.cursor), "sizes": dict(self.sizes),
                "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        if state.get("sizes") != self.sizes:
            raise ValueError(f"sampler state is for task sizes {state.get('sizes')}, this mixture has {self.sizes}")
        if state.get("shuffle", "numpy") != self.shuffle:
            raise ValueError(f"sampler state is for shuffle={state.get('shuffle', 'numpy')}, this mixture has "
                             f"shuffle={self.shuffle}")
        self._perms, self._streams = {}, {}
        self.seed = state["seed"]
        self.draws = state["draws"]
        self.cursor = {n: int(state["cursor"][n]) for n in self.names}
