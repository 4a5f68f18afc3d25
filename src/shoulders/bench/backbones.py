"""Randomly initialised backbones for the benchmarks, built in code (no hub downloads).

Speed and memory depend on a model's shapes, not on its weights, so each entry copies
the shapes of a real checkpoint (GPT-2, SmolLM = Llama architecture) or of the toy
world's backbones, with random weights. The tokenizer is a word-level one with exactly
the model's vocabulary ("w0 w1 ..."): one word is one token, so a workload of "128
input tokens" is exactly that, and the LM head has the real vocabulary width (a big
share of the cost for PEFT, which computes logits everywhere).

Dropout is zero everywhere so that a frozen backbone in eval mode and a PEFT model in
train mode run the same arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from shoulders.toyworld.pretrain import TOY_LARGE, TOY_SMALL, ModelConfig

GPT2_VOCAB = 50257
SMOLLM_VOCAB = 49152
TOY_VOCAB = 3072  # shoulders.toyworld.TokenizerConfig.vocab_size


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "gpt2" | "llama"
    hidden: int
    layers: int
    heads: int
    vocab: int
    intermediate: int = 0  # llama MLP width (gpt2: 4 * hidden)
    kv_heads: int = 0  # llama grouped-query heads (0 = heads)
    tied: bool = True
    note: str = ""

    def hf_config(self):
        from transformers import GPT2Config, LlamaConfig

        common = dict(vocab_size=self.vocab, bos_token_id=None, eos_token_id=None, pad_token_id=0)
        if self.family == "gpt2":
            return GPT2Config(n_embd=self.hidden, n_layer=self.layers, n_head=self.heads, n_positions=1024,
                              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
        return LlamaConfig(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                           num_key_value_heads=self.kv_heads or self.heads, intermediate_size=self.intermediate,
                           max_position_embeddings=2048, tie_word_embeddings=self.tied, attention_dropout=0.0,
                           **common)


def _toy(m: ModelConfig) -> BackboneSpec:
    """The shapes of a toyworld preset, read from it so the bench never keeps a stale copy."""
    return BackboneSpec(m.name, "llama", m.hidden_size, m.num_layers, m.num_heads, TOY_VOCAB, m.intermediate_size,
                        note=f"shapes of shoulders.toyworld {m.name.upper().replace('-', '_')}")


SPECS: dict[str, BackboneSpec] = {s.name: s for s in (
    BackboneSpec("tiny", "llama", 32, 2, 4, 512, 64, 2, note="for tests: seconds per bench"),
    BackboneSpec("tiny-gpt2", "gpt2", 32, 2, 4, 512, note="for tests: seconds per bench"),
    *(_toy(m) for m in (TOY_SMALL, TOY_LARGE)),
    BackboneSpec("gpt2-mini", "gpt2", 256, 4, 4, GPT2_VOCAB, note="4 layers of 256, GPT-2 vocabulary"),
    BackboneSpec("gpt2", "gpt2", 768, 12, 12, GPT2_VOCAB, note="shapes of gpt2 (124M)"),
    BackboneSpec("gpt2-medium", "gpt2", 1024, 24, 16, GPT2_VOCAB, note="shapes of gpt2-medium (355M)"),
    BackboneSpec("gpt2-large", "gpt2", 1280, 36, 20, GPT2_VOCAB, note="shapes of gpt2-large (774M)"),
    BackboneSpec("llama-mini", "llama", 256, 4, 4, SMOLLM_VOCAB, 768, 2, note="4 layers of 256, SmolLM vocabulary"),
    BackboneSpec("smollm-135m", "llama", 576, 30, 9, SMOLLM_VOCAB, 1536, 3, note="shapes of SmolLM-135M"),
    BackboneSpec("smollm-360m", "llama", 960, 32, 15, SMOLLM_VOCAB, 2560, 5, note="shapes of SmolLM-360M"),
)}


def word_tokenizer(vocab: int):
    """A tokenizer whose token i is the word `w{i}` (id 0 is `<pad>`); no BOS, no EOS, so
    targets and generations have exactly the lengths asked for."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, **{f"w{i}": i for i in range(1, vocab)}}
    tok = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<pad>")


def build_backbone(name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0):
    """A FrozenLM with random weights and the shapes of `name` (a key of SPECS or a
    directory of a saved HF model, e.g. a toy world backbone)."""
    from transformers import AutoModelForCausalLM

    from shoulders.backbone import FrozenLM

    if name not in SPECS:  # a path: load it as any user would
        lm = FrozenLM.from_pretrained(name, dtype=dtype, device=device)
        _no_eos(lm)
        return lm
    spec = SPECS[name]
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(spec.hf_config(), dtype=dtype, attn_implementation="sdpa")
    lm = FrozenLM(model, word_tokenizer(spec.vocab), name)
    _no_eos(lm)
    return lm


def _no_eos(lm) -> None:
    """Generation runs its full budget in both implementations (no early EOS)."""
    gc = lm.model.generation_config
    gc.eos_token_id = None
    gc.pad_token_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    gc.bos_token_id = None
    if lm.tokenizer.eos_token_id is not None:  # a real tokenizer: hide EOS from FrozenLM too
        lm.tokenizer.eos_token = None


def count_parameters(lm) -> dict[str, int]:
    """total, matmul (weights of Linear/Conv1D layers in the blocks: the FLOP-bearing
    ones), embedding (input + position embeddings) and head (LM head if untied)."""
    from torch import nn

    head = lm.lm_head
    matmul = 0
    for module in lm.base.modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            matmul += module.weight.numel()
    emb = sum(m.weight.numel() for m in lm.base.modules() if isinstance(m, nn.Embedding))
    tied = head.weight is lm.input_embeddings.weight
    return {"total": lm.num_parameters, "matmul": matmul, "embedding": emb, "head": 0 if tied else head.weight.numel()}
