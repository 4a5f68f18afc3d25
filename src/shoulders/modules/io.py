"""The module format: a directory with `module.json` and `weights.safetensors`.

module.json names the module type, the format version, the hyper-parameters, the frozen
parts it rebuilds (an encoder's path, say), the backbone it was trained on (name, sizes,
embedding fingerprint) and the size and sha256 of the weights file, which loading
verifies. Weights are safetensors only: loading a module never runs code from a file.
"""
from __future__ import annotations

from shoulders.errors import ShouldersError, format_validation_error

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from shoulders._version import __version__
from shoulders.backbone.fingerprint import compare_backbones
from shoulders.modules.registry import MODULE_TYPES, module_class
from shoulders.modules.stages import mark_done
from shoulders.utils.fs import atomic_dir, sha256_file

FORMAT_VERSION = 1
CONFIG_NAME = "module.json"
WEIGHTS_NAME = "weights.safetensors"


class ModuleFormatError(ShouldersError):
    """A module directory that cannot be loaded; the message names the file and the problem."""


class BackboneMismatchError(ModuleFormatError):
    pass


def save_module(module, path: str | Path, backbone=None, *, extra: dict[str, Any] | None = None) -> Path:
    """Write `module` to directory `path` atomically (a crash leaves the old one intact)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_module_files(module, tmp, backbone, extra=extra)
    return path


def require_same_backbone(path: Path, meta: dict, backbone) -> None:
    """Raise BackboneMismatchError, naming both backbones, when the module (or checkpoint)
    at `path` was trained on another backbone than `backbone` (by sizes and embedding
    fingerprint)."""
    if not meta.get("backbone"):
        return
    diffs = compare_backbones(meta["backbone"], backbone.info())
    if diffs:
        recorded = meta["backbone"].get("name_or_path", "?")
        raise BackboneMismatchError(
            f"{path}: module was trained on backbone {recorded!r}, not on {backbone.name_or_path!r}: "
            + "; ".join(diffs)
        )


def write_module_files(module, directory: Path, backbone=None, *, extra: dict[str, Any] | None = None) -> dict:
    """Write module.json and weights.safetensors into an existing (temporary) directory."""
    backbone_info = backbone.info() if backbone is not None else getattr(module, "backbone_info", None)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_to_save().items()}
    weights = directory / WEIGHTS_NAME
    save_file(tensors, str(weights), metadata={"format": "pt", "module_type": module.module_type})
    meta = {
        "module_type": module.module_type,
        "format_version": FORMAT_VERSION,
        "library": f"shoulders {__version__}",
        "config": module.config.model_dump(mode="json"),
        "frozen_components": module.frozen_components(),
        "backbone": backbone_info,
        "trainable_parameters": module.num_trainable(),
        "weights": {"file": WEIGHTS_NAME, "size": weights.stat().st_size, "sha256": sha256_file(weights)},
        "extra": extra or {},
    }
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_module_json(path: str | Path) -> dict:
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not path.exists():
        from shoulders.utils.fs import recover_dir

        recover_dir(path)  # a save killed between its two renames left the old copy aside
    if not path.is_dir():
        raise ModuleFormatError(f"{path}: not a module directory (expected a folder with {CONFIG_NAME})")
    if not cfg_file.is_file():
        raise ModuleFormatError(f"{cfg_file}: missing (a module directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModuleFormatError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ModuleFormatError(f"{cfg_file}: expected a JSON object at the top level")
    for key in ("module_type", "format_version", "config", "weights"):
        if key not in meta:
            raise ModuleFormatError(f"{cfg_file}: missing field {key!r}")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ModuleFormatError(f"{cfg_file}: field 'format_version' must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModuleFormatError(
            f"{cfg_file}: format_version {version} is newer than this shoulders "
            f"({__version__}) reads (<= {FORMAT_VERSION}); upgrade shoulders"
        )
    return meta


def verify_weights(path: Path, meta: dict) -> Path:
    info = meta["weights"]
    weights = path / info.get("file", WEIGHTS_NAME)
    if weights.name != WEIGHTS_NAME or weights.parent != path:
        raise ModuleFormatError(f"{path / CONFIG_NAME}: field 'weights.file' must be {WEIGHTS_NAME!r}")
    if not weights.is_file():
        raise ModuleFormatError(f"{weights}: missing")
    size = weights.stat().st_size
    if "size" in info and size != info["size"]:
        raise ModuleFormatError(
            f"{weights}: {size} bytes but module.json records {info['size']} (truncated or replaced file)"
        )
    if "sha256" in info and sha256_file(weights) != info["sha256"]:
        raise ModuleFormatError(f"{weights}: sha256 does not match module.json (corrupted or tampered file)")
    return weights


def load_weights_into(module, weights: Path, tensors: dict) -> None:
    """`module.load_saved_state(tensors)`, with a mismatch reported against the weights file."""
    try:
        module.load_saved_state(tensors)
    except ValueError as e:  # names or shapes that module.json's config does not produce
        raise ModuleFormatError(f"{weights}: {e} (weights saved for a different config?)") from None


def load_module(path: str | Path, backbone=None, *, check_backbone: bool = True, device=None):
    """Load a saved module for `backbone`, refusing a backbone it was not trained on.

    With `backbone=None` the module is built without the backbone check (use
    `shoulders.load` to also load the recorded backbone).
    """
    path = Path(path)
    meta = read_module_json(path)
    if meta["module_type"] not in MODULE_TYPES:
        raise ModuleFormatError(
            f"{path / CONFIG_NAME}: field 'module_type' is {meta['module_type']!r}, expected one of "
            f"{sorted(MODULE_TYPES)} (a plugin's type must be registered before loading)"
        )
    cls = module_class(meta["module_type"])
    try:
        config = cls.config_class.model_validate(meta["config"])
    except ValidationError as e:
        raise ModuleFormatError(f"{path / CONFIG_NAME}: {format_validation_error(e, 'config.')}") from None
    if backbone is not None and check_backbone:
        require_same_backbone(path, meta, backbone)
    weights = verify_weights(path, meta)
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types on bad headers
        raise ModuleFormatError(f"{weights}: not a readable safetensors file ({e})") from None
    module = cls.from_saved(config, meta, backbone) if hasattr(cls, "from_saved") else cls.build(config, backbone)
    load_weights_into(module, weights, tensors)
    mark_done(module)  # its weights are the result of its stages: training it does not run them again
    module.backbone_info = meta.get("backbone")
    module.extra = meta.get("extra", {})
    target_device = device or (backbone.device if backbone is not None else None)
    if target_device is not None:
        module.to(target_device)
    return module
