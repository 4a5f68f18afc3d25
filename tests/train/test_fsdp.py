"""A frozen backbone sharded over 2 CPU processes (FSDP2 on gloo) trains as one process does.

The same config (`backbone.fsdp: true`) runs once on one process (nothing to shard: the
whole backbone is loaded) and once under torchrun with 2 processes, each holding half of
the backbone's weights (measured from its local shards) while the prompt stays whole on
both and DDP averages its gradients. The loss curve, the dev scores (every process runs
the evaluation: each forward gathers weights from all) and the final prompt agree to
float tolerance. A run killed after its step-3 checkpoint and started again finishes
exactly where the uninterrupted one did.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from shoulders.backbone import FrozenLM
from shoulders.modules import load_module
from shoulders.train import Trainer, load_config
from tests.helpers import build_tiny_backbone
from tests.tasks_fixture import write_keyword_config


def _config(tmp_path, backbone, name):
    return write_keyword_config(tmp_path, backbone, name, init="vocab", fsdp=True,
                                train="steps: 6, batch_size: 8, eval_every: 3, eval_max_examples: 4, "
                                      "max_new_tokens: 4, log_every: 1")


def _torchrun(cfg, port):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(port), "-m", "shoulders", "train", str(cfg), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _history(run):
    return json.loads((run / "history.json").read_text())


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    # hidden 64: every weight's first dimension splits evenly, as a real model's does
    return build_tiny_backbone(tmp_path_factory.mktemp("fsdp") / "llama", "llama", hidden=64, layers=2)


def test_fsdp_two_processes_match_one_and_resume_exactly(llama, tmp_path):
    single = _config(tmp_path, llama, "single")
    Trainer(load_config(single), progress=False).fit()  # one process: the whole backbone

    sharded = _config(tmp_path, llama, "fsdp")
    proc = _torchrun(sharded, 29531)
    shards = _history(tmp_path / "fsdp")["fsdp"]
    local, total = shards["local_parameters"], shards["backbone_parameters"]
    print(f"\nbackbone parameters: {total}; local shards per process: "
          + ", ".join(f"rank {r}: {n} ({n / total:.3f})" for r, n in enumerate(local)))
    assert shards["processes"] == 2 and sum(local) == total
    assert all(abs(n / total - 0.5) < 0.02 for n in local), local
    assert "local shards hold" in proc.stderr  # the trainer reports the split too

    one, two = _history(tmp_path / "single"), _history(tmp_path / "fsdp")
    assert [e["step"] for e in two["train"]] == list(range(1, 7))
    torch.testing.assert_close([e["loss"] for e in two["train"]], [e["loss"] for e in one["train"]],
                               rtol=0, atol=1e-5)
    assert [e["average"] for e in two["eval"]] == [e["average"] for e in one["eval"]]
    lm = FrozenLM.from_pretrained(llama, dtype="float32", device="cpu")
    assert total == lm.num_parameters
    a = load_module(tmp_path / "single" / "final", lm).prompt
    b = load_module(tmp_path / "fsdp" / "final", lm).prompt
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    step3 = load_module(tmp_path / "fsdp" / "checkpoints" / "step-0000003", lm).prompt
    assert not torch.equal(b, step3)  # it trained past the checkpoint the resume starts from
    assert sorted(p.name for p in (tmp_path / "fsdp" / "final").iterdir()) == ["module.json", "weights.safetensors"]

    # Killed after step 3: drop what came later and run the same command again.
    shutil.rmtree(tmp_path / "fsdp" / "checkpoints" / "step-0000006")
    shutil.rmtree(tmp_path / "fsdp" / "final")
    _torchrun(sharded, 29532)
    torch.testing.assert_close(load_module(tmp_path / "fsdp" / "final", lm).prompt, b, rtol=0, atol=0)
    resumed = [e["loss"] for e in _history(tmp_path / "fsdp")["train"]]
    assert resumed == [e["loss"] for e in two["train"]]


def test_fsdp_config_errors_name_the_fields():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from shoulders.train.config import ConfigError

    base = {"method": "prompt_tuning", "backbone": {"name_or_path": "x", "fsdp": True}}
    with pytest.raises(ConfigError, match="backbone.fsdp and backbone.device_map"):
        load_config(data=dict(base, backbone={"name_or_path": "x", "fsdp": True, "device_map": "auto"}))
    with pytest.raises(ConfigError, match="finetune trains the backbone's own weights"):
        load_config(data=dict(base, method="finetune"))
    with pytest.raises(ConfigError, match="accelerate FSDP config shards the trained module"):
        Trainer(load_config(data=base), accelerator=SimpleNamespace(distributed_type=DistributedType.FSDP))
