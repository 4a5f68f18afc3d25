"""tests/gpu_checks.py is the script the device machine runs (issue #23, part 5); a GPU is
lent to some sessions only, so the script itself is checked here on the CPU: the same
checks, a small family subset, both dtypes, and the FSDP comparison under torchrun."""
import json

import pytest
import torch

from tests import gpu_checks
from tests.backbone.matrix import Mismatch


def test_the_script_passes_on_the_cpu(tmp_path):
    rc = gpu_checks.main(["--out", str(tmp_path), "--device", "cpu", "--families", "llama", "gpt2",
                          "--dtypes", "float32", "bfloat16", "--checks", "matrix", "fsdp"])
    report = json.loads((tmp_path / "gpu_checks.json").read_text())
    names = [c["name"] for c in report["checks"]]
    assert names == ["matrix/float32/llama", "matrix/float32/gpt2", "matrix/bfloat16/llama",
                     "matrix/bfloat16/gpt2", "fsdp/float32", "fsdp/bfloat16"]
    assert rc == 0, [c for c in report["checks"] if c["result"] != "pass"]
    assert report["summary"] == {"pass": 6, "fail": 0, "error": 0}
    assert report["device_type"] == "cpu" and report["torch"] == torch.__version__
    fsdp = next(c for c in report["checks"] if c["name"] == "fsdp/float32")
    assert "on one process" in fsdp["notes"][0]


def test_decoding_that_parts_away_from_a_near_tie_is_a_mismatch():
    logits = torch.zeros(10)
    logits[3], logits[4] = 5.0, 4.99  # 3 and 4 within bf16 rounding of each other
    note = gpu_checks._parted([1, 4], [1, 3], lambda seq: logits, None, "row")
    assert note is not None and "near tie at step 1" in note
    logits[4] = 1.0  # the reference prefers 3 by far: a real difference
    with pytest.raises(Mismatch, match="parts at step 1"):
        gpu_checks._parted([1, 4], [1, 3], lambda seq: logits, None, "row")
    assert gpu_checks._parted([1, 3], [1, 3], lambda seq: logits, None, "row") is None


def test_no_cuda_is_a_clear_exit():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_checks.main(["--out", "unused"])
