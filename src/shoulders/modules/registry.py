"""Module types by name, imported lazily (no registration by import side effects).

`module.json` names its type; loading picks the class from this table.
"""
from __future__ import annotations

import importlib

MODULE_TYPES: dict[str, str] = {
    "prompt_tuning": "shoulders.prompts.prompt_tuning.model:PromptTuning",
    "idpt": "shoulders.prompts.idpt.model:InputDependentPrompt",
    "prefix_tuning": "shoulders.prompts.prefix_tuning.model:PrefixTuning",
    "reranker": "shoulders.reader.reranker:CrossEncoderReranker",
    "reader": "shoulders.reader.reader:Reader",
    "textual_recursion": "shoulders.recursion.textual:TextualRecursion",
    "neural_recursion": "shoulders.recursion.neural:NeuralRecursion",
    "finetune": "shoulders.modules.finetune:FullFinetune",
}


def register(name: str, target: str) -> None:
    """Add a module type (`"package.module:Class"`), e.g. from a plugin."""
    MODULE_TYPES[name] = target


def module_class(name: str):
    try:
        target = MODULE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown module type {name!r}: expected one of {sorted(MODULE_TYPES)}") from None
    mod, _, cls = target.partition(":")
    return getattr(importlib.import_module(mod), cls)


def types_with(capability: str) -> list[str]:
    """The registered type names whose class declares `capability` (importing each class;
    one that fails to import is left out). For messages and look-ups, not hot paths."""
    found = []
    for name in MODULE_TYPES:
        try:
            cls = module_class(name)
        except Exception:  # a plugin whose package is missing: it has no capabilities here
            continue
        caps = getattr(cls, "capabilities", None)
        if caps is not None and getattr(caps, capability, False):
            found.append(name)
    return found
