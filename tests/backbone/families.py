"""Tiny random configs of every causal-LM family in the installed transformers.

`tiny_config(family, tok)` shrinks a family's default config to hidden 64 / 2 layers,
with sliding windows small enough to be hit by a 20-token row, hybrid models keeping at
least one attention layer beside a recurrent/linear one, and MoE layers with few
experts. The generic rules below cover most families by their config keys; FAMILY
holds what one family needs beyond them. `tiny_model` also gives per-layer weights that
a family initialises to zero small random values, so they take part in the check.
"""
from __future__ import annotations

import math

import torch

WIDTH, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, WINDOW, POSITIONS = 64, 2, 4, 2, 16, 128, 4, 256

# generic: config key -> value (applied when the family's default config has that key)
GENERIC: dict[str, object] = {
    **dict.fromkeys(("hidden_size", "d_model", "n_embd", "emb_dim", "embedding_size", "word_embed_proj_dim",
                     "input_embedding_size", "output_embedding_size", "embed_dim", "dim_model"), WIDTH),
    **dict.fromkeys(("num_hidden_layers", "n_layer", "n_layers", "num_layers", "decoder_layers"), LAYERS),
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "decoder_attention_heads", "n_heads"), HEADS),
    **dict.fromkeys(("num_key_value_heads", "num_kv_heads", "multi_query_group_num", "n_kv_heads"), KV_HEADS),
    **dict.fromkeys(("head_dim", "attention_head_dim", "kv_channels", "dim_head", "qk_head_dim", "swa_head_dim",
                     "v_head_dim", "linear_head_dim", "linear_key_head_dim", "linear_value_head_dim"), HEAD_DIM),
    **dict.fromkeys(("intermediate_size", "ffn_dim", "decoder_ffn_dim", "n_inner", "ffn_hidden_size", "dim_ff", "dff",
                     "feed_forward_size", "d_inner", "intermediate_size_mlp", "dense_intermediate_size"), FFN),
    **dict.fromkeys(("moe_intermediate_size", "shared_expert_intermediate_size", "moe_shared_expert_intermediate_size",
                     "shared_experts_intermediate_size", "shared_intermediate_size", "expert_ffn_hidden_size"), 32),
    **dict.fromkeys(("num_experts", "num_local_experts", "n_routed_experts"), 4),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "max_target_positions",
                     "context_length", "original_max_position_embeddings", "max_source_positions"), POSITIONS),
    **dict.fromkeys(("sliding_window", "sliding_window_size", "attention_window_size", "window_size",
                     "local_attention_window_len"), WINDOW),
    "num_experts_per_tok": 2, "num_experts_per_token": 2, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
    "num_expert_group": 1, "kv_lora_rank": 16, "q_lora_rank": 32, "o_lora_rank": 16,
    "qk_rope_head_dim": 8, "rotary_dim": 8, "qk_nope_head_dim": 8, "mamba_d_state": 8, "ssm_state_size": 8, "state_size": 8,
    "mamba_n_heads": 4, "mamba_num_heads": 4, "mamba_headdim": 32, "mamba_head_dim": 32, "mamba_d_head": 32,
    "mamba_dt_rank": 8, "time_step_rank": 8, "mamba_chunk_size": 8, "chunk_size": 8, "lru_width": WIDTH,
    "attention_hidden_size": WIDTH, "mamba_d_ssm": 128, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
    "n_mamba_heads": 4, "n_groups": 1, "mamba_n_groups": 1, "index_head_dim": 16, "index_topk": 8,
    "hidden_size_per_layer_input": 16, "laurel_rank": 8, "adapter_rank": 8, "block_size": 8, "num_mem_blocks": 1,
    "tie_word_embeddings": False,  # tied and random, the next token is the last one, whatever came before
    "router_hidden_size": 32, "mlp_dim": FFN, "output_channels": WIDTH, "pronunciation_embed_dim": 16,
    "shape_embed_dim": 16, "adapter_in_dim": WIDTH, "moe_latent_size": None, "num_nextn_predict_layers": 0, "rope_scaling": None,
}


def _kinds(values: list) -> list:
    """Each kind of layer once, in order of first appearance (sliding and full attention,
    linear attention, mamba, mlp-only...), so a tiny model keeps one of each."""
    return list(dict.fromkeys(values))


def _rope(*types: str) -> dict:
    return {"rope_parameters": {t: {"rope_type": "default", "rope_theta": 10000.0} for t in types}}


# family -> config kwargs beyond the generic rules (what its validators or layer layout need)
FAMILY: dict[str, dict] = {
    "bamba": {"attn_layer_indices": [1]},
    "cohere_compass_text": _rope("full_attention"),
    "dory": {"layer_types": ["sliding_attention", "mlp", "full_attention", "mlp"], "num_hidden_layers": 4},
    "gemma3n_text": {"layer_types": ["sliding_attention", "full_attention"] * 2, "num_hidden_layers": 4,
                     "num_kv_shared_layers": 2, "activation_sparsity_pattern": [0.95, 0.0, 0.0, 0.0],
                     "intermediate_size": [FFN] * 4},
    "gpt_neo": {"attention_types": [[["global", "local"], 1]], "num_layers": 2},
    "granitemoehybrid": {"layer_types": ["mamba", "attention"]},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"], "num_dense_layers": 1},
    "mamba2": {"num_heads": 8, "head_dim": 16},
    "qwen4_exp_text": {"indexer_n_heads": 2, "indexer_kv_heads": 1, "indexer_head_dim": 16, "indexer_budget": 8,
                       "indexer_compress_ratio": 2},
    "recurrent_gemma": {"block_types": ["recurrent", "attention"]},
    "reformer": {"attention_head_size": 16, "attn_layers": ["local", "lsh"], "axial_pos_shape": [16, 16],
                 "axial_pos_embds_dim": [32, 32], "local_attn_chunk_length": 4, "lsh_attn_chunk_length": 4,
                 "num_buckets": 2, "is_decoder": True, "hash_seed": 0},
    "zamba": {"attention_hidden_size": 2 * WIDTH, "attention_head_dim": 2 * WIDTH // HEADS, "attn_layer_period": 2,
              "attn_layer_offset": 1, "n_mamba_heads": 2},
    "zamba2": {"attention_hidden_size": 2 * WIDTH, "attention_head_dim": 2 * WIDTH // HEADS, "hybrid_layer_ids": [1],
               "layers_block_type": ["linear_attention", "hybrid"], "mamba_headdim": 32},
    "zaya": {"num_experts_per_tok": 1},
}


# families the matrix does not build, and why (each a model that is not a plain text LM on its own, or
# whose tiny config this file cannot make valid); docs/families.md lists them
NOT_BUILT: dict[str, str] = {
    "blt": "byte-latent model (patcher, local encoder, global transformer, local decoder): no tiny config this "
           "file makes consistent",
    "dbrx": "transformers' own DbrxConfig has no attn_config.rope_theta, which its model reads",
    "dots3_note": "multimodal wrapper whose audio-adapter checks the tiny config does not meet; its text model "
                  "dots3_note_text is in the matrix",
    "gemma3n": "its vision tower needs the timm package (not installed); its text model gemma3n_text is in the matrix",
    "gemma4_assistant": "speculative-decoding drafter: it reads its target model's KV states, it is not an LM on its "
                        "own (its sibling gemma4_unified_assistant is refused at load for that reason)",
    "musicgen": "audio-codebook decoder: its input ids are [batch x codebooks, length], not text",
    "musicgen_melody": "audio-codebook decoder: its input ids are [batch x codebooks, length], not text",
}

# what a user does after loading before the model runs at all
AFTER_LOAD = {"xmod": lambda model: model.set_default_language("en_XX")}

_ASSISTANT_TEXT = {"hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 0, "enable_moe_block": False,
                   "use_double_wide_mlp": False, "num_kv_shared_layers": LAYERS}


def tiny_kwargs(family: str, tok) -> dict:
    """The kwargs of the family's config class that make it tiny."""
    from transformers import CONFIG_MAPPING

    kw = _shrink(CONFIG_MAPPING[family], tok)
    kw.update(FAMILY.get(family, {}))
    if family.endswith("_assistant"):  # drafters share every layer's KV with their target
        kw["text_config"].update(_ASSISTANT_TEXT)
    return kw


def _shrink(cls, tok) -> dict:
    from transformers import PretrainedConfig

    default = cls()
    defaults = default.to_dict()
    kw = {k: v for k, v in GENERIC.items() if k in defaults}
    for key, sub in vars(default).items():  # text/vision/audio sub-configs, shrunk by the same rules
        if isinstance(sub, PretrainedConfig):
            kw[key] = {k: v for k, v in sub.to_dict().items() if k != "per_layer_config"}  # indexed by layer
            kw[key].update(_shrink(type(sub), tok))
            kw[key].update(FAMILY.get(sub.model_type, {}))
    per_layer = {k: v for k, v in defaults.items()
                 if isinstance(v, list) and v and len(v) == defaults.get("num_hidden_layers", -1)}
    kinds = {k: _kinds(v) for k, v in per_layer.items() if all(isinstance(x, str) for x in v)}
    n = max([LAYERS, *map(len, kinds.values())])
    for key, value in per_layer.items():
        if key in kinds:
            kw[key] = kinds[key] + [kinds[key][-1]] * (n - len(kinds[key]))
        else:  # per-layer sizes (gemma3n's intermediate_size) shrink like their scalar key
            kw[key] = [GENERIC[key]] * n if key in GENERIC else value[:n]
    if per_layer and "num_hidden_layers" in defaults:
        kw["num_hidden_layers"] = n
    if "qk_rope_head_dim" in defaults:  # MLA: the rotary part is the head_dim that rope sees; no grouped KV
        kw.update({k: v for k, v in (("head_dim", GENERIC["qk_rope_head_dim"]), ("num_key_value_heads", HEADS))
                   if k in defaults})
    for key in ("vocab_size", "unpadded_vocab_size"):
        if key in defaults:
            kw[key] = len(tok)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        if key in defaults:
            kw[key] = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}.get(key, tok.pad_token_id)
    if "is_decoder" in defaults and defaults.get("model_type") not in ("xlnet",):
        kw["is_decoder"] = True
    return kw


def tiny_config(family: str, tok):
    from transformers import CONFIG_MAPPING

    return CONFIG_MAPPING[family](**tiny_kwargs(family, tok))


def _randomize(model, seed: int) -> None:
    """Every matrix drawn at unit gain (N(0, 1/fan_in)), so a 2-layer random model's next
    token depends on its input (at a family's 0.02 init, tied-embedding models repeat the
    last token whatever came before); vectors a family initialises to exactly zero
    (per-layer scales, gates, adapter biases) get small random values, so the checks
    cover the paths they gate."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            elif p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def tiny_model(family: str, tok, seed: int = 0):
    """A tiny random float32 model of the family, in eval mode."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(family, tok)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    _randomize(model, seed)
    if family in AFTER_LOAD:
        AFTER_LOAD[family](model)
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())

