"""A byte-level BPE tokenizer trained on the toy corpus, saved as a HF tokenizer.

Byte-level BPE (GPT-2 style) never meets an unknown character, and a small vocabulary
keeps the embedding matrix, the biggest block of a tiny model, small. `<bos>` is added
to every encoded input (like Llama tokenizers), `<eos>` ends each pre-training
document, and `<pad>` exists so that batching never has to borrow eos.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SPECIAL = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>"}


@dataclass
class TokenizerConfig:
    vocab_size: int = 3072  # total, special tokens and the 256 byte symbols included
    min_frequency: int = 2  # a merge must occur at least this often in the corpus


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig | None = None):
    """Train the BPE on `texts` and return a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    cfg = cfg or TokenizerConfig()
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, show_progress=False,
        special_tokens=list(SPECIAL.values()), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    bos = SPECIAL["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=SPECIAL["eos"], pad_token=SPECIAL["pad"],
        model_max_length=1 << 30, clean_up_tokenization_spaces=False)


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
