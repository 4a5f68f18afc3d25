"""PEFT interchange for any module type that declares it (`capabilities.peft_type`).

`export_peft` writes a module as the PEFT adapter of its type; `import_peft` reads an
adapter's `peft_type` and hands it to the registered type that declares the same one.
The formats themselves live with each method (`prompts/prompt_tuning/peft_io.py`,
`prompts/prefix_tuning/peft_io.py`).
"""
from __future__ import annotations

import json
from pathlib import Path

from shoulders.errors import ShouldersError
from shoulders.modules.registry import MODULE_TYPES, module_class, types_with


class PeftError(ShouldersError):
    """An adapter or module that cannot go through PEFT interchange."""


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def write_adapter(out_dir: str | Path, peft_cfg, prompt_embeddings, dtype) -> Path:
    """PEFT's adapter directory (its config, and `prompt_embeddings` as safetensors in `dtype`),
    written whole or not at all: the layout every PEFT prompt-learning type shares."""
    import torch
    from safetensors.torch import save_file

    from shoulders.utils.fs import atomic_dir

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        peft_cfg.save_pretrained(str(tmp))
        tensor = prompt_embeddings.detach().to("cpu", dtype or torch.float32).contiguous()
        save_file({"prompt_embeddings": tensor}, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return out_dir


def read_adapter(adapter_dir: str | Path, peft_type: str):
    """(adapter config dict, its `prompt_embeddings` tensor, the weights path) of a PEFT
    adapter directory of `peft_type`; ValueError naming the file for anything else."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg_file = adapter_dir / ADAPTER_CONFIG
    if not cfg_file.is_file():
        raise ValueError(f"{cfg_file}: missing (not a PEFT adapter directory)")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type") != peft_type:
        raise ValueError(f"{cfg_file}: peft_type is {cfg.get('peft_type')!r}, expected {peft_type!r}")
    if cfg.get("num_transformer_submodules", 1) != 1:
        raise ValueError(f"{cfg_file}: num_transformer_submodules must be 1 for a causal LM")
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"{weights}: missing (only safetensors adapters are read)")
    tensors = load_file(str(weights))
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"{weights}: no 'prompt_embeddings' tensor (found {sorted(tensors)})")
    return cfg, tensors["prompt_embeddings"], weights


def _by_peft_type() -> dict[str, str]:
    return {module_class(name).capabilities.peft_type: name for name in types_with("peft_type")}


def _class_for(peft_type):
    """The first registered type declaring `peft_type`, importing no more types than needed."""
    for name in MODULE_TYPES:
        try:
            cls = module_class(name)
        except Exception:  # a plugin whose package is missing
            continue
        if getattr(getattr(cls, "capabilities", None), "peft_type", None) == peft_type and peft_type:
            return cls
    return None


def export_peft(module, backbone, out_dir: str | Path) -> Path:
    """Write `module` as a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
    if not type(module).capabilities.peft_type:
        raise PeftError(f"{module.module_type} modules do not export to PEFT (the types that do: "
                        f"{', '.join(sorted(_by_peft_type().values()))})")
    return module.export_peft(backbone, out_dir)


def import_peft(adapter_dir: str | Path, backbone, **config):
    """A module read from a PEFT adapter directory, of the type that declares its peft_type."""
    cfg_file = Path(adapter_dir) / ADAPTER_CONFIG
    if not cfg_file.is_file():
        raise PeftError(f"{cfg_file}: missing (not a PEFT adapter directory)")
    try:
        peft_type = json.loads(cfg_file.read_text()).get("peft_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise PeftError(f"{cfg_file}: not a JSON object ({e})") from None
    cls = _class_for(peft_type)
    if cls is None:
        raise PeftError(f"{cfg_file}: peft_type is {peft_type!r}, expected one of {sorted(_by_peft_type())}")
    from pydantic import ValidationError

    try:
        return cls.import_peft(adapter_dir, backbone, **config)
    except ValueError as e:  # the format's own checks: a missing file, a shape the backbone cannot take
        if isinstance(e, (ShouldersError, ValidationError)):
            raise
        raise PeftError(str(e)) from None
