"""bf16 autocast where the hardware has bf16 units, float32 elsewhere.

On CPUs with AVX512-BF16 or AMX, `torch.autocast("cpu", dtype=torch.bfloat16)` runs the
matmuls of a training step 1.5-2x faster than float32 (docs/backbones.md; the re-ranker's
numbers are in docs/reader.md); without those units bf16 is emulated and slower, so
"auto" falls back to float32. Weights, optimizer state and updates stay float32 either
way: only the matmuls run in bf16. Results stay deterministic for a given machine.
"""
from __future__ import annotations

import contextlib
import functools

import torch

PRECISIONS = ("auto", "bf16", "fp32")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU units that make a bf16-autocast step faster than fp32
    (elsewhere bf16 is emulated and slower). Probed once: the re-ranker resolves its
    precision on every forward."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def resolve_precision(precision: str, device: torch.device | str = "cpu", field: str = "precision") -> str:
    """"bf16" or "fp32" for a configured auto | bf16 | fp32 on `device`; `field` names the
    setting in the error."""
    if precision not in PRECISIONS:
        raise ValueError(f"{field}={precision!r}: expected auto, bf16 or fp32")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":  # native bf16 only (compute capability 8.0+): older GPUs emulate it, slowly
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if kind == "cpu" and cpu_has_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str = "cpu"):
    """The autocast context for a resolved precision ("bf16" or "fp32", which is a no-op)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
