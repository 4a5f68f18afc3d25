"""Resumable checkpoints with no pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a module directory (loadable by `load_module`) plus the optimizer's
tensors, and `trainer_state.json` (step, scheduler, sampler, history, RNG states).
Each is written to a temporary directory and renamed, so a kill at any moment leaves
the previous checkpoint complete.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from shoulders.modules.io import write_module_files
from shoulders.utils.fs import atomic_dir

OPTIMIZER_NAME = "optimizer.safetensors"
STATE_NAME = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def optimizer_to_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])


def save_checkpoint(root: Path, step: int, module, backbone, optimizer, scheduler, state: dict, keep: int = 2) -> Path:
    """Write `root/step-NNNNNN` atomically and prune all but the newest `keep`."""
    path = Path(root) / f"step-{step:07d}"
    with atomic_dir(path) as tmp:
        write_module_files(module, tmp, backbone, extra={"checkpoint_step": step})
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        save_file({**opt_tensors, **rng_state()}, str(tmp / OPTIMIZER_NAME))
        full = dict(state, step=step, optimizer=opt_meta, scheduler=scheduler.state_dict())
        (tmp / STATE_NAME).write_text(json.dumps(full, indent=1) + "\n")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    for tmp in root.glob(".step-*"):  # left by a writer killed mid-save
        if tmp.name.endswith(".tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def load_checkpoint(path: Path, module, optimizer, scheduler, backbone=None) -> dict:
    """Restore module weights, optimizer, scheduler and RNG; return the trainer state.

    With `backbone`, a checkpoint trained on another backbone is refused before anything
    is restored (continuing it would mix two backbones' results in one run).
    """
    from shoulders.modules.io import (
        ModuleFormatError,
        load_weights_into,
        read_module_json,
        require_same_backbone,
        verify_weights,
    )

    path = Path(path)
    meta = read_module_json(path)
    if backbone is not None:
        require_same_backbone(path, meta, backbone)
    weights = verify_weights(path, meta)
    load_weights_into(module, weights, load_file(str(weights)))
    try:
        state = json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModuleFormatError(f"{path / STATE_NAME}: not valid JSON ({e})") from None
    tensors = load_file(str(path / OPTIMIZER_NAME))
    optimizer_from_tensors(optimizer, {k: v for k, v in tensors.items() if k.startswith("state.")}, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(tensors)
    return state
