"""Top-level conveniences: load a module together with the backbone it was trained on."""
from __future__ import annotations

from pathlib import Path

from shoulders.backbone.frozen import FrozenLM
from shoulders.modules.io import ModuleFormatError, load_module, read_module_json


def load(path: str | Path, backbone: FrozenLM | str | None = None, *, dtype: str = "auto", device: str = "auto",
         trust_remote_code: bool = False):
    """Return (module, backbone). Without `backbone`, load the one recorded in module.json;
    a module type that reads no backbone (the re-ranker) comes back with None."""
    if backbone is None:
        from shoulders.modules.registry import MODULE_TYPES, module_class

        kind = read_module_json(path).get("module_type")
        if kind in MODULE_TYPES and module_class(kind).capabilities.backbone_free:
            return load_module(path), None
    if backbone is None or isinstance(backbone, (str, Path)):
        name = backbone
        if name is None:
            recorded = (read_module_json(path).get("backbone") or {}).get("name_or_path")
            if not recorded:
                raise ModuleFormatError(f"{path}: module.json records no backbone; pass one explicitly")
            name = recorded
        backbone = FrozenLM.from_pretrained(name, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    return load_module(path, backbone), backbone
