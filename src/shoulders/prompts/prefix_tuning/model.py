"""Prefix tuning: P learned key/value positions in every attention layer of the frozen LM.

Prompt tuning learns P input vectors; prefix tuning learns, for every layer, the keys and
values that P positions before the input would have had (Li & Liang 2021), so it steers
every layer directly. The learned tensor has PEFT's `PREFIX_TUNING` layout,
[P, num_layers * 2 * kv_width] (kv_width = key/value heads x head size; for each layer its
keys, then its values), so a module exports to and imports from PEFT without conversion.
With `projection` (PEFT's `prefix_projection`, Li & Liang's reparameterisation), a
[P, kv_width] embedding goes through a two-layer tanh MLP that writes that tensor.

The backbone receives the prefix as a `KVPrefix` (see `shoulders.backbone.layout`): the
keys and values are pre-filled into the attention cache, the input's positions start at P.
So `init: text` starts the module exactly as the backbone reading `init_text` before every
input, and rows of prefix-tuning modules share batches with soft-prompt rows.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from shoulders.backbone import cache as kv
from shoulders.backbone.layout import KVPrefix
from shoulders.modules.base import ModuleCapabilities, SoftPromptModule
from shoulders.modules.peft import read_adapter, write_adapter
from shoulders.prompts.prefix_tuning.config import PrefixTuningConfig


def kv_layout(backbone) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of the backbone, which must be the same in every
    layer (PEFT's flat layout assumes it)."""
    shapes = kv.kv_shapes(backbone)
    if len(set(shapes)) != 1:
        raise ValueError(f"prefix tuning needs one key/value shape in every layer; {backbone.name_or_path} has "
                         f"(heads, head size) {sorted(set(shapes))}")
    return (len(shapes), *shapes[0])


class PrefixTuning(SoftPromptModule):
    module_type = "prefix_tuning"
    config_class = PrefixTuningConfig
    capabilities = ModuleCapabilities(batchable=True, reader_prompt=True, peft_type="PREFIX_TUNING")

    def __init__(self, config: PrefixTuningConfig, layers: int, heads: int, head_dim: int):
        super().__init__(config)
        self.kv_shape = (layers, heads, head_dim)
        p, width = config.num_virtual_tokens, heads * head_dim
        if config.projection:
            self.embedding = nn.Parameter(torch.zeros(p, width))
            hidden = config.projection_hidden or width
            self.transform = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, layers * 2 * width))
        else:
            self.prompt_embeddings = nn.Parameter(torch.zeros(p, layers * 2 * width))  # PEFT's name and layout

    @classmethod
    def build(cls, config: PrefixTuningConfig, backbone) -> "PrefixTuning":
        backbone.refuse_checkpointing("prefix_tuning modules")  # now, not at the first training step
        module = cls(config, *kv_layout(backbone))
        with torch.no_grad():
            if config.projection:  # PEFT's initialisation (an Embedding's N(0, 1), Linear's default), seeded
                with torch.random.fork_rng():
                    torch.manual_seed(config.seed)
                    module.embedding.normal_()
                    for layer in module.transform:
                        if isinstance(layer, nn.Linear):
                            layer.reset_parameters()
            else:
                module.prompt_embeddings.copy_(initial_prefix(config, backbone))
        return module.to(backbone.device)

    @classmethod
    def from_saved(cls, config: PrefixTuningConfig, meta: dict, backbone) -> "PrefixTuning":
        if backbone is None:
            raise ValueError("loading a prefix_tuning module needs its backbone (its key/value shapes)")
        return cls(config, *kv_layout(backbone))

    def flat(self) -> Tensor:
        """The prefix in PEFT's layout: [P, layers * 2 * kv_width]."""
        return self.transform(self.embedding) if self.config.projection else self.prompt_embeddings

    def prefix(self, backbone, examples) -> KVPrefix:
        """Every layer's keys and values ([1, heads, P, head size] each), shared by every row."""
        layers, heads, head_dim = self.kv_shape
        p = self.config.num_virtual_tokens
        x = self.flat().view(p, 2 * layers, heads, head_dim).permute(1, 2, 0, 3).unsqueeze(1)  # [2L, 1, H, P, d]
        return KVPrefix(tuple(x[0::2].unbind(0)), tuple(x[1::2].unbind(0)))

    def prefix_length(self) -> int:
        return self.config.num_virtual_tokens

    def export_peft(self, backbone, out_dir):
        """Write this module as a PEFT PREFIX_TUNING adapter for `backbone` (a module with
        `projection` exports the MLP's output, as PEFT saves a projected prefix)."""
        from peft import PrefixTuningConfig as PeftPrefixTuningConfig

        layers, heads, head_dim = self.kv_shape
        peft_cfg = PeftPrefixTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=self.config.num_virtual_tokens,
            token_dim=heads * head_dim,
            num_transformer_submodules=1,
            num_attention_heads=heads,
            num_layers=layers,
            encoder_hidden_size=heads * head_dim,
            prefix_projection=False,
            base_model_name_or_path=backbone.name_or_path,
        )
        return write_adapter(out_dir, peft_cfg, self.flat(), backbone.dtype)

    @classmethod
    def import_peft(cls, adapter_dir, backbone, **config_overrides) -> "PrefixTuning":
        """A module read from a PEFT PREFIX_TUNING adapter directory."""
        _, flat, weights = read_adapter(adapter_dir, "PREFIX_TUNING")
        layers, heads, head_dim = kv_layout(backbone)
        width = layers * 2 * heads * head_dim
        if flat.dim() != 2 or flat.shape[1] != width:
            raise ValueError(f"{weights}: prompt_embeddings has shape {tuple(flat.shape)}, the backbone needs "
                             f"[num_virtual_tokens, {width}] ({layers} layers x 2 x {heads} heads x {head_dim})")
        config = PrefixTuningConfig(num_virtual_tokens=flat.shape[0], init="random", **config_overrides)
        module = cls(config, layers, heads, head_dim)
        module.prompt_embeddings.data.copy_(flat.float())
        return module.to(backbone.device)


def initial_prefix(config: PrefixTuningConfig, backbone) -> Tensor:
    """The starting [P, layers * 2 * kv_width] prefix, in float32: the backbone's own keys and
    values for sampled tokens or a text, or noise of their scale."""
    n = config.num_virtual_tokens
    gen = torch.Generator().manual_seed(config.seed)
    if config.init == "text":
        tokens = backbone.encode([config.init_text], add_special_tokens=False)[0]
        if not tokens:
            raise ValueError(f"init_text {config.init_text!r} has no tokens")
        ids = torch.tensor((tokens * (n // len(tokens) + 1))[:n])
    else:
        ids = torch.randint(0, min(config.init_vocab_top, backbone.vocab_size), (n,), generator=gen)
    cache = kv.new_cache(backbone)
    with torch.no_grad():
        backbone.model(input_ids=ids[None].to(backbone.device), use_cache=True, **{backbone._cache_kw: cache})
    states = torch.stack([t[0] for pair in kv.layer_states(cache) for t in pair])  # [2L, H, P, d]
    flat = states.permute(2, 0, 1, 3).reshape(n, -1).float().cpu()
    if config.init == "random":
        return torch.randn(flat.shape, generator=gen) * flat.std()
    return flat
