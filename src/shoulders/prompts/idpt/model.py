"""Input-dependent prompt tuning (ID-PT; Levine et al. 2022, section 1).

Plain prompt tuning gives every input of a task the same soft prompt. ID-PT generates
a prompt p(x) *for each input*: a frozen pretrained encoder reads the (rendered) input
with its own tokenizer, a learned soft prompt prompt-tunes that encoder, and a learned
cross-attention network turns its variable-length output into L vectors in the LM's
input-embedding space. One generator then serves a whole multi-task mixture: p(x) can
carry the task's identity and what the encoder understood of the input.

    text --encoder tokenizer--> ids --[encoder prompt ; embed(ids)]--> frozen encoder
         --> [B, P_e+T, E] --cross-attention (L queries)--> p(x) [B, L, D]
    prefix = [fixed prompt (F, optional) ; p(x)]                           [B, F+L, D]

With `shared_prompt`, p(x) = P + g(x): an input-independent prompt P (initialised from
vocabulary embeddings, as prompt tuning is) plus the generated part g(x), whose output
projection starts at zero (as LoRA's B does). Training then starts exactly where prompt
tuning starts, and the generator learns only what should differ between inputs. P and
the fixed prompt are soft prompts, which want the larger steps prompt tuning takes:
`shared_lr` sets their learning rate apart from the network's.

Learned (and saved): the encoder prompt, the cross-attention network, the fixed and
shared prompts.
Frozen (rebuilt at load from its recorded name, checked by embedding fingerprint): the
encoder. The LM is the shared frozen backbone, as for every module.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from shoulders.modules.base import ModuleCapabilities, SoftPromptModule
from shoulders.modules.io import ModuleFormatError
from shoulders.prompts.encoders import FrozenEncoder, check_encoder
from shoulders.prompts.idpt.config import IDPTConfig
from shoulders.prompts.idpt.cross_attention import PromptGenerator


class EncoderMismatchError(ModuleFormatError):
    """The encoder found at load time is not the one the module was trained with."""


class InputDependentPrompt(SoftPromptModule):
    module_type = "idpt"
    config_class = IDPTConfig
    capabilities = ModuleCapabilities(batchable=True, reader_prompt=True, prompt_embeds=True)

    def __init__(self, config: IDPTConfig, encoder: FrozenEncoder, lm_hidden: int, out_std: float = 1.0):
        super().__init__(config)
        self.encoder = encoder
        e = encoder.hidden_size
        self.encoder_prompt = nn.Parameter(torch.zeros(config.encoder_prompt_length, e)) \
            if config.encoder_prompt_length else None
        self.generator = PromptGenerator(
            e, lm_hidden, config.prompt_length, hidden=config.hidden_size, layers=config.layers, heads=config.heads,
            mlp_ratio=config.mlp_ratio, dropout=config.dropout, self_attention=config.self_attention, out_std=out_std)
        self.fixed_prompt = nn.Parameter(torch.zeros(config.fixed_prompt_length, lm_hidden)) \
            if config.fixed_prompt_length else None
        self.shared_prompt = nn.Parameter(torch.zeros(config.prompt_length, lm_hidden)) \
            if config.shared_prompt else None
        if config.shared_prompt:  # g(x) starts at zero: p(x) = P at step 0
            nn.init.zeros_(self.generator.proj_out.weight)
        self._encoder_info: dict | None = None

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, config: IDPTConfig, backbone, *, encoder: FrozenEncoder | None = None,
              initialise: bool = True) -> "InputDependentPrompt":
        """A fresh module for `backbone`. `encoder` reuses an already loaded copy of
        `config.encoder` (several modules, seeds or tests then share one frozen encoder).
        `initialise=False` (loading saved weights over it) skips the data-dependent
        initialisation, which reads the LM's whole embedding table."""
        from shoulders.prompts.prompt_tuning.config import PromptTuningConfig
        from shoulders.prompts.prompt_tuning.model import embedding_std, initial_prompt

        encoder = encoder if encoder is not None else FrozenEncoder.from_pretrained(config.encoder)
        if not initialise:
            return cls(config, encoder, backbone.hidden_size).to(backbone.device)
        out_std = embedding_std(backbone.input_embeddings.weight.detach())
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            module = cls(config, encoder, backbone.hidden_size, out_std)
            if module.encoder_prompt is not None:
                # Embeddings of sampled encoder tokens (Lester et al.'s vocab init), skipping the
                # first tenth of the vocabulary, where BERT-style vocabularies keep unused slots.
                v = encoder.embeddings.weight.shape[0]
                ids = torch.randint(v // 10, v, (config.encoder_prompt_length,))
                module.encoder_prompt.data.copy_(encoder.embeddings.weight.detach()[ids].float())
        if module.fixed_prompt is not None:
            fixed = PromptTuningConfig(num_virtual_tokens=config.fixed_prompt_length, init="vocab", seed=config.seed)
            module.fixed_prompt.data.copy_(initial_prompt(fixed, backbone))
        if module.shared_prompt is not None:
            shared = PromptTuningConfig(num_virtual_tokens=config.prompt_length, init="vocab", seed=config.seed + 1)
            module.shared_prompt.data.copy_(initial_prompt(shared, backbone))
        return module.to(backbone.device)

    def param_groups(self, lr: float) -> list[dict]:
        """The soft prompts (fixed, shared) at `shared_lr`, everything else at `lr`."""
        prompts = [p for p in (self.fixed_prompt, self.shared_prompt) if p is not None and p.requires_grad]
        if self.config.shared_lr is None or not prompts:
            return super().param_groups(lr)
        ids = {id(p) for p in prompts}
        rest = [p for p in self.trainable_parameters() if id(p) not in ids]
        return [{"params": rest, "lr": lr}, {"params": prompts, "lr": self.config.shared_lr}]

    @classmethod
    def from_saved(cls, config: IDPTConfig, meta: dict, backbone) -> "InputDependentPrompt":
        """Rebuild the encoder from its recorded name and refuse a different one."""
        recorded = (meta.get("frozen_components") or {}).get("encoder")
        try:
            module = cls.build(config, backbone, initialise=False)
        except FileNotFoundError as e:
            where = (recorded or {}).get("resolved_path", config.encoder)
            raise ModuleFormatError(f"{e} (the module was trained with the encoder at {where!r})") from None
        diffs = check_encoder(recorded, module.frozen_components()["encoder"])
        if diffs:
            raise EncoderMismatchError(
                f"ID-PT module was trained with encoder {recorded.get('resolved_path', config.encoder)!r}, but "
                f"{module.encoder.name_or_path!r} loaded now is a different model: " + "; ".join(diffs))
        return module

    def frozen_components(self) -> dict:
        if self._encoder_info is None:
            self._encoder_info = self.encoder.info()
        return {"encoder": self._encoder_info}

    # ------------------------------------------------------------------ forward
    def encoder_ids(self, examples) -> list[list[int]]:
        """Each rendered input in the encoder's own tokens, cut to what the encoder reads."""
        texts = [self.config.text.render(ex if isinstance(ex, str) else ex.input) for ex in examples]
        limit = self.config.max_encoder_tokens
        n_prompt = 0 if self.encoder_prompt is None else self.encoder_prompt.shape[0]
        if self.encoder.max_positions is not None:  # the learned encoder prompt takes positions too
            limit = min(limit, self.encoder.max_positions - n_prompt)
        return self.encoder.tokenize(texts, limit)

    def precompute_encoder(self, examples) -> bool:
        """Encode every example's input up front (`FrozenEncoder.precompute`) when the encoder
        caches and nothing learned sits before it; True if anything was computed."""
        if self.encoder_prompt is not None or not self.encoder.caching:
            return False
        return self.encoder.precompute(self.encoder_ids(examples))

    def encode(self, examples) -> tuple[Tensor, Tensor]:
        """The frozen encoder's view of each rendered input: ([B, T', E], mask [B, T'])."""
        ids = self.encoder_ids(examples)
        if self.encoder_prompt is None:
            with torch.no_grad():  # nothing learned sits before the encoder: no backward through it
                hidden, mask = self.encoder(ids)
        else:
            hidden, mask = self.encoder(ids, self.encoder_prompt)
        if self.config.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            hidden = (hidden * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
            mask = mask[:, :1]
        return hidden, mask

    def prefix_length(self) -> int:
        return self.config.prompt_length + self.config.fixed_prompt_length

    def prefix(self, backbone, examples) -> Tensor:
        """[B, F+L, D]: the fixed prompt (if any) followed by the generated p(x)."""
        hidden, mask = self.encode(examples)
        prompt = self.generator(hidden, mask)
        if self.shared_prompt is not None:
            prompt = prompt + self.shared_prompt.unsqueeze(0)
        if self.fixed_prompt is not None:
            prompt = torch.cat([self.fixed_prompt.unsqueeze(0).expand(prompt.shape[0], -1, -1), prompt], dim=1)
        return prompt
