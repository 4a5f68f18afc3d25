"""Export plain prompt tuning to a PEFT adapter directory, and import one back
(the format itself is `PromptTuning.export_peft` / `import_peft`).

The exported directory loads with `peft.PeftModel.from_pretrained(base, dir)` and gives
the same logits as shoulders on the same backbone (checked in the tests). PEFT has no
notion of our TextFormat, so inputs must be rendered the same way by the caller.
"""
from __future__ import annotations

from pathlib import Path

from shoulders.prompts.prompt_tuning.model import PromptTuning


def export_peft(module: PromptTuning, backbone, out_dir: str | Path) -> Path:
    """Write `module` as a PEFT PROMPT_TUNING adapter for `backbone`."""
    if not isinstance(module, PromptTuning):
        raise TypeError(f"only prompt_tuning modules export to PEFT, not {module.module_type}")
    return module.export_peft(backbone, out_dir)


def import_peft(adapter_dir: str | Path, backbone, **config_overrides) -> PromptTuning:
    """Read a PEFT PROMPT_TUNING adapter directory into a PromptTuning module."""
    return PromptTuning.import_peft(adapter_dir, backbone, **config_overrides)
