"""Crash safety: SIGKILL at random moments (mid-save included), then resume exactly."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from shoulders.backbone import FrozenLM
from shoulders.modules import load_module
from shoulders.train.checkpoint import list_checkpoints
from tests.tasks_fixture import write_keyword_config

STEPS = 40


def _setup(tmp_path: Path, backbone: Path, name: str) -> Path:
    return write_keyword_config(tmp_path, backbone, name, optim="lr: 0.05, warmup_steps: 3",
                                train=f"steps: {STEPS}, batch_size: 4, eval_every: 10, eval_max_examples: 4, "
                                      "checkpoint_every: 1, keep_checkpoints: 2")


def _train(cfg: Path, kill_after: float | None = None) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "shoulders", "-q", "train", str(cfg), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        return proc.returncode
    ckpts = cfg.parent / cfg.stem / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts.is_dir() and any(ckpts.iterdir())) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # kill only once training (and saving) is under way
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def test_sigkill_then_resume_reproduces_uninterrupted_run(tiny_dirs, tmp_path):
    backbone = tiny_dirs["gpt2"]
    _train(_setup(tmp_path, backbone, "clean"))
    lm = FrozenLM.from_pretrained(backbone, dtype="float32", device="cpu")
    reference = load_module(tmp_path / "clean" / "final", lm).prompt

    cfg = _setup(tmp_path, backbone, "killed")
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        code = _train(cfg, kill_after=rng.uniform(0.0, 0.6))
        if code == -signal.SIGKILL:
            kills += 1
            found = list_checkpoints(tmp_path / "killed" / "checkpoints")
            if found:  # the newest complete checkpoint always loads
                load_module(found[-1], lm)
    assert kills >= 1
    _train(cfg)  # resume to the end
    resumed = load_module(tmp_path / "killed" / "final", lm).prompt
    assert torch.equal(resumed, reference)
