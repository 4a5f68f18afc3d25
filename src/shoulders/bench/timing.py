"""Side-by-side timing, peak memory and the machine's matmul FLOP/s.

Comparisons are only meaningful when measured under the same conditions, and a shared
machine's load drifts: so every contender runs once per round, the order rotates from
round to round, and medians are reported (plus the median of per-round ratios, which
cancels drift between rounds). Wall time is the measure; `clock="cpu"` (process CPU
time) is for a machine shared with other jobs, used with one thread: it then counts the
work done, not the time spent waiting for a core.

Peak memory. On CUDA: `torch.cuda.max_memory_allocated` during one step, above what was
allocated before it. On CPU there are no allocator statistics and RSS is useless (glibc
keeps freed pages, and RSS misses nothing torch frees but counts everything Python
holds), so the profiler's memory events are used: every tensor allocation and free made
during one step, summed in time order; the peak of that running sum is the step's peak
tensor memory above what was live before it, as `max_memory_allocated` would say.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's start/stop lines off stderr


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Free what the last backbone held before the next one is built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def alternate(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1,
              clock: str = "wall") -> dict[str, list[float]]:
    """Run each fn once per round, rotating the order; `warmup` rounds are discarded.
    Returns the timed seconds per name on `clock` ("wall" or "cpu")."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            wall, cpu = timed(fns[name], device)
            if r >= warmup:
                times[name].append(cpu if clock == "cpu" else wall)
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of the per-round ratios num[i] / den[i] (both lists in round order)."""
    return median([a / b for a, b in zip(num, den)]) if num and den else float("nan")


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensor memory allocated while `fn` runs, above what was live before."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 4096, repeats: int = 5,
                 clock: str = "wall") -> float:
    """FLOP/s of one plain square `torch.matmul` (2 n^3 FLOPs), median of `repeats`: what
    this machine's BLAS does at its best, the yardstick of the model FLOP utilisation."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    times = [timed(lambda: torch.matmul(a, b), device)[1 if clock == "cpu" else 0] for _ in range(repeats)]
    return 2 * n**3 / median(times)


def setup_threads(threads: int | None) -> int:
    """Use every core this process may run on (or `threads`); returns the number set."""
    if not threads:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads
