"""Export plain prompt tuning to a PEFT adapter directory, and import one back.

The exported directory loads with `peft.PeftModel.from_pretrained(base, dir)` and gives
the same logits as shoulders on the same backbone (checked in the tests). PEFT has no
notion of our TextFormat, so inputs must be rendered the same way by the caller.
"""
from __future__ import annotations

from pathlib import Path

from shoulders.modules.peft import read_adapter, write_adapter
from shoulders.prompts.prompt_tuning import PromptTuning, PromptTuningConfig


def export_peft(module: PromptTuning, backbone, out_dir: str | Path) -> Path:
    """Write `module` as a PEFT PROMPT_TUNING adapter for `backbone`."""
    from peft import PromptTuningConfig as PeftPromptTuningConfig

    if not isinstance(module, PromptTuning):
        raise TypeError(f"only prompt_tuning modules export to PEFT, not {module.module_type}")
    cfg = backbone.config
    peft_cfg = PeftPromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=module.config.num_virtual_tokens,
        token_dim=backbone.hidden_size,
        num_transformer_submodules=1,
        num_attention_heads=getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None),
        num_layers=getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None),
        base_model_name_or_path=backbone.name_or_path,
    )
    return write_adapter(out_dir, peft_cfg, module.prompt, backbone.dtype)


def import_peft(adapter_dir: str | Path, backbone, **config_overrides) -> PromptTuning:
    """Read a PEFT PROMPT_TUNING adapter directory into a PromptTuning module."""
    _, prompt, weights = read_adapter(adapter_dir, "PROMPT_TUNING")
    if prompt.shape[1] != backbone.hidden_size:
        raise ValueError(
            f"{weights}: prompt width {prompt.shape[1]} does not match the backbone's hidden size {backbone.hidden_size}"
        )
    config = PromptTuningConfig(num_virtual_tokens=prompt.shape[0], init="random", **config_overrides)
    module = PromptTuning(config, backbone.hidden_size)
    module.prompt.data.copy_(prompt.float())
    return module.to(backbone.device)
