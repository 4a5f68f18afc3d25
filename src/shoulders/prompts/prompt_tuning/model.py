"""Prompt tuning (Lester et al. 2021): N learned vectors before every input.

The baseline every other module is measured against. Initialisation follows PEFT's
options: random, sampled vocabulary embeddings, or the embeddings of a text.
"""
from __future__ import annotations

import torch
from torch import nn

from shoulders.modules.base import ModuleCapabilities, SoftPromptModule
from shoulders.modules.peft import read_adapter, write_adapter
from shoulders.prompts.prompt_tuning.config import PromptTuningConfig


class PromptTuning(SoftPromptModule):
    module_type = "prompt_tuning"
    config_class = PromptTuningConfig
    capabilities = ModuleCapabilities(batchable=True, reader_prompt=True, single_prompt=True, peft_type="PROMPT_TUNING",
                                      prompt_embeds=True)

    def __init__(self, config: PromptTuningConfig, hidden_size: int):
        super().__init__(config)
        self.prompt = nn.Parameter(torch.zeros(config.num_virtual_tokens, hidden_size))

    @classmethod
    def build(cls, config: PromptTuningConfig, backbone) -> "PromptTuning":
        module = cls(config, backbone.hidden_size)
        module.prompt.data.copy_(initial_prompt(config, backbone))
        return module.to(backbone.device)

    @classmethod
    def from_saved(cls, config: PromptTuningConfig, meta: dict, backbone) -> "PromptTuning":
        hidden = backbone.hidden_size if backbone is not None else meta["backbone"]["hidden_size"]
        return cls(config, hidden)

    def prefix(self, backbone, examples):
        return self.prompt  # one [P, D] prompt shared by every row

    def prefix_length(self) -> int:
        return self.config.num_virtual_tokens

    def single_prompt(self) -> torch.Tensor:
        return self.prompt

    def export_peft(self, backbone, out_dir):
        """Write this module as a PEFT PROMPT_TUNING adapter for `backbone` (loads with
        `peft.PeftModel.from_pretrained(base, dir)`, same logits; PEFT has no TextFormat, so
        inputs must be rendered the same way by the caller)."""
        from peft import PromptTuningConfig as PeftPromptTuningConfig

        cfg = backbone.config
        peft_cfg = PeftPromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=self.config.num_virtual_tokens,
            token_dim=backbone.hidden_size,
            num_transformer_submodules=1,
            num_attention_heads=getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None),
            num_layers=getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None),
            base_model_name_or_path=backbone.name_or_path,
        )
        return write_adapter(out_dir, peft_cfg, self.prompt, backbone.dtype)

    @classmethod
    def import_peft(cls, adapter_dir, backbone, **config_overrides) -> "PromptTuning":
        """A module read from a PEFT PROMPT_TUNING adapter directory."""
        _, prompt, weights = read_adapter(adapter_dir, "PROMPT_TUNING")
        if prompt.shape[1] != backbone.hidden_size:
            raise ValueError(f"{weights}: prompt width {prompt.shape[1]} does not match the backbone's hidden size "
                             f"{backbone.hidden_size}")
        config = PromptTuningConfig(num_virtual_tokens=prompt.shape[0], init="random", **config_overrides)
        module = cls(config, backbone.hidden_size)
        module.prompt.data.copy_(prompt.float())
        return module.to(backbone.device)


def embedding_std(weight: torch.Tensor, chunk_rows: int = 16384) -> float:
    """Std of all entries of an embedding matrix, in float64, a chunk of rows at a time:
    `weight.float().std()` would first copy a bf16 giant's whole table to float32 (4 GB
    for a 128k x 8k vocabulary)."""
    total, sq, n = 0.0, 0.0, weight.numel()
    with torch.no_grad():
        for start in range(0, weight.shape[0], chunk_rows):
            block = weight[start:start + chunk_rows].double()
            total += block.sum().item()
            sq += block.square().sum().item()
    mean = total / n
    return max(sq / n - mean * mean, 0.0) ** 0.5 * (n / max(n - 1, 1)) ** 0.5


def initial_prompt(config: PromptTuningConfig, backbone) -> torch.Tensor:
    """The starting [N, D] prompt, in float32 (trainable weights stay float32)."""
    n = config.num_virtual_tokens
    weight = backbone.input_embeddings.weight.detach()
    gen = torch.Generator().manual_seed(config.seed)
    if config.init == "random":
        std = embedding_std(weight)
        return torch.randn(n, weight.shape[1], generator=gen) * std
    if config.init == "vocab":
        top = min(config.init_vocab_top, weight.shape[0])
        ids = torch.randint(0, top, (n,), generator=gen)
    else:
        tokens = backbone.encode([config.init_text], add_special_tokens=False)[0]
        if not tokens:
            raise ValueError(f"init_text {config.init_text!r} has no tokens")
        ids = torch.tensor((tokens * (n // len(tokens) + 1))[:n])
    return backbone.embed(ids).detach().float().cpu()
