"""bf16 autocast is chosen only where the hardware has bf16 units, and fp32 is a no-op."""
from __future__ import annotations

import pytest
import torch

from shoulders.utils.precision import autocast, cpu_has_bf16, resolve_precision


def test_auto_follows_the_cpu_and_explicit_choices_stand(monkeypatch):
    import shoulders.utils.precision as precision

    assert isinstance(cpu_has_bf16(), bool)
    for units, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda units=units: units)
        assert resolve_precision("auto", "cpu") == expected
        assert resolve_precision("auto", "meta") == "fp32"  # no bf16 units to find there, whatever the CPU has
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "cuda") == "fp32"


def test_auto_on_a_gpu_wants_native_bf16_not_emulated(monkeypatch):
    """A pre-Ampere GPU (V100, T4) only emulates bf16, which is slower than float32: `auto`
    keeps float32 there, as it does on a CPU without bf16 units."""
    for native, expected in ((False, "fp32"), (True, "bf16")):
        # torch's default `including_emulation=True` answers True on both kinds of GPU
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, native=native:
                            native or including_emulation)
        assert resolve_precision("auto", "cuda") == expected


def test_an_unknown_precision_names_the_field():
    with pytest.raises(ValueError, match=r"RerankerConfig.precision='fp8': expected auto, bf16 or fp32"):
        resolve_precision("fp8", field="RerankerConfig.precision")


def test_autocast_runs_matmuls_in_bf16_and_fp32_leaves_them_alone():
    a = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32
