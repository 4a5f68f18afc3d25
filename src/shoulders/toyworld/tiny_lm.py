"""The one builder of tiny from-scratch backbones: a byte-level BPE and a Llama config.

The toy world's backbones, the recursion stand-in's, the serve bench's random one and the
tests' all start here; each passes its own sizes and options. Byte-level BPE (GPT-2
style) never meets an unknown character, and a small vocabulary keeps the embedding
matrix, the biggest block of a tiny model, small. `<pad>` exists so that batching never
has to borrow `<eos>`.
"""
from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def byte_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 0, bos_first: bool = False,
             **fast_kwargs):
    """Train a byte-level BPE with `<pad>`, `<bos>`, `<eos>` (ids 0, 1, 2) on `texts`; returns
    a `PreTrainedTokenizerFast` (`fast_kwargs` go to it). `vocab_size` counts the special
    tokens and the 256 byte symbols; a merge must occur `min_frequency` times; `bos_first`
    starts every encoding with `<bos>`, like Llama tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=[PAD, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if bos_first:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, **fast_kwargs)


def llama_config(tokenizer, *, hidden: int, layers: int, heads: int, intermediate: int, max_positions: int,
                 kv_heads: int | None = None, tied: bool = True, **extra):
    """A `LlamaConfig` over `tokenizer`'s vocabulary and special ids; `kv_heads` None = `heads`
    (no grouped-query attention); `extra` goes to the config as it is."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads or heads, max_position_embeddings=max_positions,
        tie_word_embeddings=tied, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **extra)
