"""The module protocol, the registry of module types and the on-disk format."""
from shoulders.modules.base import ModuleConfig, SoftModule, SoftPromptModule, TextFormat
from shoulders.modules.io import (
    BackboneMismatchError,
    ModuleFormatError,
    load_module,
    read_module_json,
    save_module,
)
from shoulders.modules.registry import MODULE_TYPES, module_class, register

__all__ = [
    "ModuleConfig",
    "SoftModule",
    "SoftPromptModule",
    "TextFormat",
    "BackboneMismatchError",
    "ModuleFormatError",
    "load_module",
    "read_module_json",
    "save_module",
    "MODULE_TYPES",
    "module_class",
    "register",
]
