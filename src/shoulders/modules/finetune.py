"""Full fine-tuning: the reference every frozen-LM method is measured against.

This is *not* a frozen-LM method. It plays the paper's T0++ role: the whole LM trained on
the same multi-task mixture. To make the comparison apples to apples it goes through
the same `Trainer`, mixture sampler, TextFormat, evaluation and module format as the
frozen-LM modules: it deep-copies the backbone's model at build time, unfreezes the
copy, and runs its loss / rank classification / generation on that copy. The shared
backbone passed in is never touched (its weights stay bit-identical).

Because it is the reference and not a small module, `weights.safetensors` holds *all*
of the copy's weights (tied embeddings are stored once); loading needs the original
backbone only to rebuild the architecture and tokenizer and to check its identity.
"""
from __future__ import annotations

import copy

from shoulders.backbone.frozen import FrozenLM
from shoulders.modules.base import ModuleConfig, SoftPromptModule


class FinetuneConfig(ModuleConfig):
    """Only the shared `text` format: what varies between fine-tuning runs is the optimizer
    (`optim.lr`: ~1e-4..1e-3 suits a small LM, far below a prompt's 1e-2..1e-1)."""


class FullFinetune(SoftPromptModule):
    """A trainable copy of the backbone's LM, used with no soft prefix."""

    module_type = "finetune"
    config_class = FinetuneConfig

    def __init__(self, config: FinetuneConfig, backbone: FrozenLM):
        super().__init__(config)
        self.model = copy.deepcopy(backbone.model)  # registered child: its parameters are the module's
        # FrozenLM gives the copy the same layout/run/generate code path as the frozen backbone;
        # its constructor freezes the copy, which is then unfrozen (it is an attribute, not a child).
        self.lm = FrozenLM(self.model, backbone.tokenizer, backbone.name_or_path)
        self.model.requires_grad_(True)
        self.model.train()

    @classmethod
    def build(cls, config: FinetuneConfig, backbone) -> "FullFinetune":
        return cls(config, backbone).to(backbone.device)

    def prefix(self, backbone, examples):
        return None  # no soft vectors: the learned part is the LM itself

    # The shared SoftPromptModule code, run on the trained copy instead of the frozen backbone.
    def loss(self, backbone, examples):
        return super().loss(self.lm, examples)

    def choice_logprobs(self, backbone, examples):
        return super().choice_logprobs(self.lm, examples)

    def generate(self, backbone, inputs, config=None, **overrides):
        return super().generate(self.lm, inputs, config, **overrides)
