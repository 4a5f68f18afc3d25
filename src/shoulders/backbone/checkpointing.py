"""Gradient checkpointing through a frozen backbone.

The backward pass through a frozen LM still needs its activations (to carry gradients
back to the soft prefix). Checkpointing recomputes them layer by layer instead of
keeping them, trading compute for memory. transformers only checkpoints layers in
training mode, but a frozen backbone must stay in eval mode (no dropout): so only the
decoder-layer objects themselves are flagged as training, never their sub-modules, and
the non-reentrant implementation is used (it works when no weight needs a gradient).
"""
from __future__ import annotations


def enable_gradient_checkpointing(lm) -> int:
    """Turn checkpointing on for every decoder layer; returns how many layers."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    model = lm.model
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    count = 0
    for module in lm.model.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module.training = True  # the layer only; its dropout sub-modules stay in eval mode
            count += 1
    if count == 0:
        raise ValueError(f"{lm.name_or_path}: no checkpointable decoder layers found")
    return count


def disable_gradient_checkpointing(lm) -> None:
    """Back to a backbone that was never switched on.

    transformers' enable also hooks the input embeddings (so that their output requires
    grad, for reentrant checkpointing) and its disable leaves that hook in place: it is
    removed here, so that repeated on/off flips do not pile hooks up."""
    model = lm.model
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
    if getattr(model, "_require_grads_hooks", None) or hasattr(model, "_require_grads_hook"):
        model.disable_input_require_grads()
    model.eval()
