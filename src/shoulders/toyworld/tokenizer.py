"""A byte-level BPE tokenizer trained on the toy corpus, saved as a HF tokenizer.

Built by `tiny_lm.byte_bpe`, the builder every tiny backbone shares. `<bos>` is added to
every encoded input (like Llama tokenizers), `<eos>` ends each pre-training document,
and `<pad>` exists so that batching never has to borrow eos.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import Field

from shoulders.toyworld.tiny_lm import byte_bpe
from shoulders.utils.strict_model import StrictModel


class TokenizerConfig(StrictModel):
    """The byte-level BPE trained on the corpus."""

    vocab_size: int = Field(3072, ge=259, description="total, special tokens and the 256 byte symbols included")
    min_frequency: int = Field(2, ge=1, description="a merge must occur at least this often in the corpus")


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig | None = None):
    """Train the BPE on `texts` and return a `PreTrainedTokenizerFast`."""
    cfg = cfg or TokenizerConfig()
    return byte_bpe(texts, cfg.vocab_size, min_frequency=cfg.min_frequency, bos_first=True,
                    model_max_length=1 << 30, clean_up_tokenization_spaces=False)


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
