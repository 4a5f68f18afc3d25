"""A backbone's identity, stored with every module and checked when it is loaded.

The fingerprint hashes a fixed sample of input-embedding rows rounded to bfloat16, so
the same checkpoint loaded in fp32 or bf16 (or on another device) gives the same
fingerprint, while a different checkpoint of the same architecture does not.
"""
from __future__ import annotations

import hashlib

import torch

_SAMPLE_ROWS = 256


def embedding_fingerprint(weight: torch.Tensor) -> str:
    vocab, dim = weight.shape
    idx = torch.linspace(0, vocab - 1, steps=min(vocab, _SAMPLE_ROWS)).round().long()
    sample = weight.detach()[idx.to(weight.device)].to("cpu", torch.bfloat16).contiguous()
    digest = hashlib.sha256()
    digest.update(f"{vocab}x{dim}".encode())
    digest.update(sample.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def backbone_info(lm) -> dict:
    cfg = lm.config
    return {
        "name_or_path": lm.name_or_path,
        "model_type": getattr(cfg, "model_type", ""),
        "hidden_size": lm.hidden_size,
        "vocab_size": lm.vocab_size,
        "num_parameters": lm.num_parameters,
        "embedding_fingerprint": embedding_fingerprint(lm.input_embeddings.weight),
    }


def compare_backbones(expected: dict, actual: dict) -> list[str]:
    """Human-readable differences between a module's recorded backbone and the given one."""
    diffs = []
    for key in ("model_type", "hidden_size", "vocab_size", "embedding_fingerprint"):
        if key in expected and expected[key] != actual.get(key):
            diffs.append(f"{key}: module has {expected[key]!r}, backbone has {actual.get(key)!r}")
    return diffs
