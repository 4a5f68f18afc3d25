"""Export prefix tuning to a PEFT `PREFIX_TUNING` adapter directory, and import one back.

The adapter is PEFT's own layout: `adapter_config.json` and `adapter_model.safetensors`
holding `prompt_embeddings` [num_virtual_tokens, num_layers * 2 * kv_width]. It loads with
`peft.PeftModel.from_pretrained(base, dir)` and gives the same logits as shoulders on the
same backbone (checked in the tests). A module with `projection` exports the MLP's output,
as PEFT itself saves a projected prefix, so the adapter (and a module imported from it)
has no MLP. PEFT has no notion of our TextFormat: the caller renders inputs the same way.
"""
from __future__ import annotations

from pathlib import Path

from shoulders.modules.peft import read_adapter, write_adapter
from shoulders.prefix_tuning.model import PrefixTuning, PrefixTuningConfig, kv_layout


def export_peft(module: PrefixTuning, backbone, out_dir: str | Path) -> Path:
    """Write `module` as a PEFT PREFIX_TUNING adapter for `backbone`."""
    from peft import PrefixTuningConfig as PeftPrefixTuningConfig

    if not isinstance(module, PrefixTuning):
        raise TypeError(f"export_peft writes prefix_tuning modules, not {module.module_type}")
    layers, heads, head_dim = module.kv_shape
    peft_cfg = PeftPrefixTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=module.config.num_virtual_tokens,
        token_dim=heads * head_dim,
        num_transformer_submodules=1,
        num_attention_heads=heads,
        num_layers=layers,
        encoder_hidden_size=heads * head_dim,
        prefix_projection=False,
        base_model_name_or_path=backbone.name_or_path,
    )
    return write_adapter(out_dir, peft_cfg, module.flat(), backbone.dtype)


def import_peft(adapter_dir: str | Path, backbone, **config_overrides) -> PrefixTuning:
    """Read a PEFT PREFIX_TUNING adapter directory into a PrefixTuning module."""
    _, flat, weights = read_adapter(adapter_dir, "PREFIX_TUNING")
    layers, heads, head_dim = kv_layout(backbone)
    width = layers * 2 * heads * head_dim
    if flat.dim() != 2 or flat.shape[1] != width:
        raise ValueError(f"{weights}: prompt_embeddings has shape {tuple(flat.shape)}, the backbone needs "
                         f"[num_virtual_tokens, {width}] ({layers} layers x 2 x {heads} heads x {head_dim})")
    config = PrefixTuningConfig(num_virtual_tokens=flat.shape[0], init="random", **config_overrides)
    module = PrefixTuning(config, layers, heads, head_dim)
    module.prompt_embeddings.data.copy_(flat.float())
    return module.to(backbone.device)
