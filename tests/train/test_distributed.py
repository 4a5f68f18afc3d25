"""Data-parallel training on 2 CPU processes (gloo) equals single-process training.

Launched with `torchrun --nproc_per_node 2 -m shoulders train CONFIG` (accelerate
reads the torchrun environment). With the same global batch and seed, each process
takes half of every global batch and DDP averages the gradients of the module only.
The task has one-token labels, so every process's half carries the same number of
target tokens and the mean of the per-process losses is exactly the global mean:
the modules then agree to float tolerance (1e-5), the only difference being the
order of floating-point additions in the all-reduce.
"""
import os
import subprocess
import sys
from pathlib import Path

import torch

from shoulders.backbone import FrozenLM
from shoulders.modules import load_module
from tests.tasks_fixture import write_keyword_config

AUDIT = Path(__file__).with_name("audit_run.py")


def _config(tmp_path, backbone, name):
    return write_keyword_config(tmp_path, backbone, name,
                                train="steps: 6, batch_size: 8, eval_every: 3, eval_max_examples: 4")


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", SHOULDERS_WRITE_LOG=str(tmp_path / "writes-{rank}.txt"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_process_gloo_matches_single_process(tiny_dirs, tmp_path):
    backbone = tiny_dirs["gpt2"]
    single = _config(tmp_path, backbone, "single")
    _run([sys.executable, "-m", "shoulders", "-q", "train", str(single), "--no-progress"], tmp_path)
    double = _config(tmp_path, backbone, "ddp")
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                str(AUDIT), "train", str(double), "--no-progress"], tmp_path)
    assert ddp.stdout.count('"best_dev_score"') == 1, ddp.stdout  # the summary from rank 0 only
    lm = FrozenLM.from_pretrained(backbone, dtype="float32", device="cpu")
    a = load_module(tmp_path / "single" / "final", lm).prompt
    b = load_module(tmp_path / "ddp" / "final", lm).prompt
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not torch.equal(a, load_module(tmp_path / "ddp" / "checkpoints" / "step-0000003", lm).prompt)
    out = str(tmp_path / "ddp")
    rank0 = (tmp_path / "writes-0.txt").read_text().splitlines()
    rank1 = (tmp_path / "writes-1.txt").read_text().splitlines()
    assert any(p.startswith(out) for p in rank0)
    assert [p for p in rank1 if p.startswith(out)] == []

    # Resume across a changed number of processes: drop the last checkpoint and the
    # final module, then finish on one process from the 2-process step-3 checkpoint.
    import shutil

    shutil.rmtree(tmp_path / "ddp" / "checkpoints" / "step-0000006")
    shutil.rmtree(tmp_path / "ddp" / "final")
    _run([sys.executable, "-m", "shoulders", "-q", "train", str(double), "--no-progress"], tmp_path)
    c = load_module(tmp_path / "ddp" / "final", lm).prompt
    torch.testing.assert_close(a, c, rtol=0, atol=1e-5)
