"""Export plain prompt tuning to a PEFT adapter directory, and import one back.

The exported directory loads with `peft.PeftModel.from_pretrained(base, dir)` and gives
the same logits as shoulders on the same backbone (checked in the tests). PEFT has no
notion of our TextFormat, so inputs must be rendered the same way by the caller.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from shoulders.prompts.prompt_tuning import PromptTuning, PromptTuningConfig
from shoulders.utils.fs import atomic_dir

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


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
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        peft_cfg.save_pretrained(str(tmp))
        prompt = module.prompt.detach().to("cpu", backbone.dtype).contiguous()
        save_file({"prompt_embeddings": prompt}, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return out_dir


def import_peft(adapter_dir: str | Path, backbone, **config_overrides) -> PromptTuning:
    """Read a PEFT PROMPT_TUNING adapter directory into a PromptTuning module."""
    adapter_dir = Path(adapter_dir)
    cfg_file = adapter_dir / ADAPTER_CONFIG
    if not cfg_file.is_file():
        raise ValueError(f"{cfg_file}: missing (not a PEFT adapter directory)")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type") != "PROMPT_TUNING":
        raise ValueError(f"{cfg_file}: peft_type is {cfg.get('peft_type')!r}, expected 'PROMPT_TUNING'")
    if cfg.get("num_transformer_submodules", 1) != 1:
        raise ValueError(f"{cfg_file}: num_transformer_submodules must be 1 for a causal LM")
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"{weights}: missing (only safetensors adapters are read)")
    prompt = load_file(str(weights))["prompt_embeddings"]
    if prompt.shape[1] != backbone.hidden_size:
        raise ValueError(
            f"{weights}: prompt width {prompt.shape[1]} does not match the backbone's hidden size {backbone.hidden_size}"
        )
    config = PromptTuningConfig(num_virtual_tokens=prompt.shape[0], init="random", **config_overrides)
    module = PromptTuning(config, backbone.hidden_size)
    module.prompt.data.copy_(prompt.float())
    return module.to(backbone.device)
