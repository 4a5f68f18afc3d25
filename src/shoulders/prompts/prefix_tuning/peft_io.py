"""Export prefix tuning to a PEFT `PREFIX_TUNING` adapter directory, and import one back
(the format itself is `PrefixTuning.export_peft` / `import_peft`).

The adapter is PEFT's own layout: `adapter_config.json` and `adapter_model.safetensors`
holding `prompt_embeddings` [num_virtual_tokens, num_layers * 2 * kv_width]. It loads with
`peft.PeftModel.from_pretrained(base, dir)` and gives the same logits as shoulders on the
same backbone (checked in the tests). A module with `projection` exports the MLP's output,
as PEFT itself saves a projected prefix, so the adapter (and a module imported from it)
has no MLP. PEFT has no notion of our TextFormat: the caller renders inputs the same way.
"""
from __future__ import annotations

from pathlib import Path

from shoulders.prompts.prefix_tuning.model import PrefixTuning


def export_peft(module: PrefixTuning, backbone, out_dir: str | Path) -> Path:
    """Write `module` as a PEFT PREFIX_TUNING adapter for `backbone`."""
    if not isinstance(module, PrefixTuning):
        raise TypeError(f"export_peft writes prefix_tuning modules, not {module.module_type}")
    return module.export_peft(backbone, out_dir)


def import_peft(adapter_dir: str | Path, backbone, **config_overrides) -> PrefixTuning:
    """Read a PEFT PREFIX_TUNING adapter directory into a PrefixTuning module."""
    return PrefixTuning.import_peft(adapter_dir, backbone, **config_overrides)
