"""Gradient checkpointing through the frozen backbone gives the same gradients."""
import torch

from shoulders.backbone import FrozenLM
from shoulders.backbone.checkpointing import disable_gradient_checkpointing, enable_gradient_checkpointing


def _grad(lm, prefix, ids, tgt):
    p = prefix.clone().requires_grad_(True)
    lm(p, ids, tgt).loss.backward()
    return p.grad


def test_same_gradients_with_and_without_checkpointing(tiny_dir):
    lm = FrozenLM.from_pretrained(tiny_dir, dtype="float32", device="cpu")
    torch.manual_seed(0)
    prefix = torch.randn(5, lm.hidden_size)
    ids = lm.encode(["the cat is happy", "a dog was born in paris"])
    tgt = lm.encode_targets([" yes", " no"])
    plain = _grad(lm, prefix, ids, tgt)
    assert enable_gradient_checkpointing(lm) == 2
    # the backbone's dropout sub-modules stay in eval mode
    assert not any(m.training for m in lm.model.modules() if isinstance(m, torch.nn.Dropout))
    from transformers.modeling_layers import GradientCheckpointingLayer

    layer = next(m for m in lm.model.modules() if isinstance(m, GradientCheckpointingLayer))
    calls = []  # a checkpointed layer runs its sub-modules again during backward
    child = next(iter(layer.children()))
    handle = child.register_forward_hook(lambda *_: calls.append(1))
    recomputed = _grad(lm, prefix, ids, tgt)
    handle.remove()
    assert len(calls) == 2
    torch.testing.assert_close(plain, recomputed, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in lm.model.parameters())
    disable_gradient_checkpointing(lm)
    assert not lm.model.training


def test_on_off_flips_leave_no_hooks_behind(tiny_dir):
    lm = FrozenLM.from_pretrained(tiny_dir, dtype="float32", device="cpu")
    emb = lm.model.get_input_embeddings()
    before = len(emb._forward_hooks)
    for _ in range(3):
        enable_gradient_checkpointing(lm)
        disable_gradient_checkpointing(lm)
    assert len(emb._forward_hooks) == before
    assert not any(getattr(m, "gradient_checkpointing", False) for m in lm.model.modules())
