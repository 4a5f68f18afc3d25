"""Neural recursion: LM -> Connector -> LM, in effect a deeper, mostly frozen Transformer.

Pass 1 runs the frozen LM over [prompt1 ; question] and keeps its final hidden states
over the question tokens (`connect: tokens`) or only the last one (`connect: last`).
The Connector maps them to input vectors, and pass 2 runs the same frozen LM over
[prompt2 ; connector(h1) ; question again (if `repeat_question`)] and generates the
answer. Training is end to end through both frozen passes: the loss on the answer
after pass 2 reaches prompt2, the Connector and (through pass 1) prompt1.

`pass1_loss_weight > 0` adds pass 1's own answer loss, computed from the same pass-1
forward (causal attention makes the question's states independent of the answer
after them), which keeps pass 1 a competent single-pass answerer: what gated recursion
needs to decide from. `lm_pretrain` names a training stage, `pretrain_connector`, that
the Trainer runs before task training (`stages()`), so one `shoulders train` does both;
building the module only builds it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from shoulders.data.examples import Example
from shoulders.recursion.common import TwoPassConfig, TwoPassModule
from shoulders.recursion.connector import Connector, ConnectorConfig, embedding_rms
from shoulders.recursion.pretrain import LMPretrainConfig, pretrain_connector, read_texts


class NeuralRecursionConfig(TwoPassConfig):
    connector: ConnectorConfig = Field(default_factory=ConnectorConfig, description="the Connector's architecture")
    connect: Literal["tokens", "last"] = Field("tokens", description="pass-1 states handed over: every question "
                                               "token's (tokens) or the last one's (last)")
    repeat_question: bool = Field(True, description="pass 2 reads the question tokens again after the Connector's "
                                  "output")
    pass1_loss_weight: float = Field(0.0, ge=0, description="weight of pass 1's own answer loss (0 = off)")
    train_prompt1: bool = Field(True, description="False keeps prompt1 as built / as init_from gave it")
    lm_pretrain: LMPretrainConfig = Field(default_factory=LMPretrainConfig,
                                          description="Connector pre-training on plain text: a stage the Trainer runs "
                                          "before task training (never at build)")

    @model_validator(mode="after")
    def _check_gate(self):
        if self.gate.confidence != "mean_logprob":
            raise ValueError("neural recursion gates on gate.confidence='mean_logprob' (pass 1 samples no candidates)")
        return self


class NeuralRecursion(TwoPassModule):
    module_type = "neural_recursion"
    config_class = NeuralRecursionConfig
    config: NeuralRecursionConfig

    def __init__(self, config: NeuralRecursionConfig, hidden_size: int):
        super().__init__(config, hidden_size)
        with torch.random.fork_rng(devices=[]):  # drawn from connector.seed, not from whatever ran before
            torch.manual_seed(config.connector.seed)
            self.connector = Connector(config.connector, hidden_size)

    def stages(self) -> dict:
        """`lm_pretrain` (when it has steps and texts): the Connector's pre-training, which the
        Trainer runs before task training; building the module never runs it."""
        pre = self.config.lm_pretrain
        if not (pre.steps and pre.texts):
            return {}
        return {"lm_pretrain": lambda backbone, progress=True: pretrain_connector(
            self, backbone, read_texts(pre.texts), pre, progress=progress)}

    def init_fresh(self, backbone) -> None:
        super().init_fresh(backbone)
        with torch.no_grad():
            self.connector.gain.fill_(embedding_rms(backbone))

    def set_trainable(self) -> None:
        self.prompt1.requires_grad_(self.config.train_prompt1)
        self.prompt2.requires_grad_(True)
        self.connector.requires_grad_(True)

    # ---------------------------------------------------------------- passes
    def pass1_states(self, backbone, ids: Sequence[Sequence[int]], targets=None):
        """Pass 1 over [prompt1 ; ids (; targets)]: (h [B, L, D], mask [B, L], LMOutput).

        L is the longest question (connect=tokens; mask marks each row's real tokens)
        or 1 (connect=last). With `targets`, the LMOutput carries pass 1's answer loss.
        """
        out = backbone(self.prompt1, ids, targets, return_hidden=True)
        hidden = out.hidden_states  # [B, P1 + T (+ targets), D], right padded, rows start at 0
        start = self.prompt1.shape[0]
        lens = torch.tensor([len(t) for t in ids])
        if self.config.connect == "last":
            rows = torch.arange(len(ids))
            h = hidden[rows.to(hidden.device), (start + lens - 1).to(hidden.device)][:, None]
            return h, torch.ones(len(ids), 1, dtype=torch.bool, device=hidden.device), out
        width = max(1, int(lens.max()))
        h = hidden[:, start:start + width]
        if h.shape[1] < width:  # every question empty: nothing after the prompt
            h = torch.cat([h, h.new_zeros(h.shape[0], width - h.shape[1], h.shape[2])], 1)
        mask = (torch.arange(width)[None] < lens[:, None]).to(hidden.device)
        return h, mask, out

    def pass2_prefix(self, h: Tensor, mask: Tensor) -> list[Tensor]:
        """Per row, [prompt2 ; connector(h)[real positions]]: a list of [P2 + n_i, D]."""
        c = self.connector(h, mask)  # [B, L, D]
        n = mask.sum(1).tolist()
        return [torch.cat([self.prompt2, c[i, : int(n[i])]], 0) for i in range(c.shape[0])]

    def pass2_inputs(self, backbone, examples, states=None):
        ids = self.encode_inputs(backbone, examples)
        h, mask, _ = self.pass1_states(backbone, ids)
        return self.pass2_prefix(h, mask), self._pass2_ids(ids)

    def input_room(self, backbone) -> int:
        """Pass 2 reads prompt2, the Connector's vectors (one per question token, or one) and
        the question again (repeat_question): the input must fit that twice over."""
        room = super().input_room(backbone)
        used = self.prompt2.shape[0] + self.config.answer_tokens
        if self.config.connect == "tokens":
            return min(room, self._room(backbone, used, 2 if self.config.repeat_question else 1))
        return min(room, self._room(backbone, used + 1))

    def _pass2_ids(self, ids: list[list[int]]) -> list[list[int]]:
        return ids if self.config.repeat_question else [[] for _ in ids]

    def loss(self, backbone, examples: Sequence[Example]) -> Tensor:
        ids = self.encode_inputs(backbone, examples)
        targets = self.encode_targets(backbone, [ex.target for ex in examples])
        weight = self.config.pass1_loss_weight
        h, mask, out1 = self.pass1_states(backbone, ids, targets if weight else None)
        loss = backbone(self.pass2_prefix(h, mask), self._pass2_ids(ids), targets).loss
        return loss + weight * out1.loss if weight else loss

    def connector_parameters(self) -> int:
        return sum(p.numel() for p in self.connector.parameters())
