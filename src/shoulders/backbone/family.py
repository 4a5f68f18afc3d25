"""What a backbone's family supports, found by running it on a few tokens at load.

Causal LMs in transformers differ in ways their config does not say: a cache keyword
swallowed by `**kwargs` (the model silently starts afresh every step), an attention
mask that is accepted and ignored, recurrent states whose rows cannot be dropped, per-
layer token embeddings that need the token ids beside `inputs_embeds`. Rather than keep
a list of families, `probe` compares each shortcut the library would like to take with
the plain computation it stands for (`model(input_ids)` on the whole sequence), and
takes it only where the two agree (`Family`'s fields):

- `needs_ids`: `model(inputs_embeds=embed(x))` differs from `model(input_ids=x)`, or soft
  vectors do not go in at all: the model gets the token ids and its input-embedding
  output is replaced by the soft vectors (soft positions get the pad id, as the family's
  multimodal models do for images);
- `positions`: explicit position ids 0, 1, 2, ... give the family's own logits (not so
  where positions count from the pad id, RoBERTa-style); else none are passed;
- `copy_embeds`: the forward writes into the `inputs_embeds` it is given (CTRL);
- `narrow`: the LM head runs once, on [B, L, D], so it can run on the positions read only;
- `cache`, `step_mask`, `batched`: decoding three tokens with the model's own cache gives
  the plain logits (with the attention mask passed each step or not; with two rows in
  one batch or one); otherwise every step recomputes the whole sequence;
- `rows`: dropping, reordering and repeating cache rows gives each row what it gives
  alone; otherwise finished rows stay in the batch, ignored, until it ends;
- `padding`: a left-padded row (noise in its masked positions) gives what it gives
  alone; otherwise rows of different lengths are decoded as separate batches;
- `mergeable`: caches that can be left-padded and concatenated (continuous batching).

A family is refused here, in one line naming it, when a forward on token ids fails, when
soft vectors cannot reach its layers, or when right padding changes the other rows of a
batch (what training and scoring rely on). Comparisons allow for the rounding of the
model's dtype: a broken shortcut is off by far more.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from shoulders.backbone import cache as kv
from shoulders.errors import BackboneError

PROBE_TEXT = "The quick brown fox jumps over the lazy dog near the river bank"


@dataclass(frozen=True)
class Family:
    name: str  # config.model_type
    accepts: frozenset[str]  # keywords the model's forward names (nothing else is passed)
    cache_kw: str | None  # keyword (and output field) of the model's own cache; None: recompute each step
    needs_ids: bool = False  # token ids go in beside the soft vectors
    positions: bool = True  # position ids are passed (RoBERTa-style models count from their pad id instead)
    copy_embeds: bool = False  # the forward writes into the inputs_embeds it is given (CTRL scales in place)
    narrow: bool = True  # the LM head runs once, on [B, L, D], giving the logits (so it can run on N positions)
    step_mask: bool = True  # decode steps pass the attention mask (mamba's cache goes wrong with it)
    batched: bool = True  # rows can share a batch (else each row is decoded alone)
    rows: bool = True  # cache rows can be dropped / reordered / repeated
    padding: bool = True  # left padding is masked exactly
    mergeable: bool = False  # two caches can be left-padded and concatenated

    def notes(self) -> list[str]:
        """What differs from the plain path, for logs and the families table."""
        out = []
        if self.needs_ids:
            out.append("token ids beside embeddings")
        if not self.positions:
            out.append("its own position ids")
        if self.copy_embeds:
            out.append("embeddings copied (written in place)")
        if not self.narrow:
            out.append("full logits")
        if self.cache_kw is None:
            out.append("no usable cache: recompute")
        elif not self.step_mask:
            out.append("steps without mask")
        if not self.batched:
            out.append("one row per batch")
        elif not self.padding:
            out.append("padding ignored: rows by length")
        if self.cache_kw is not None and self.batched and not self.rows:
            out.append("finished rows kept")
        return out


def accepted(model) -> frozenset[str]:
    """Keywords named in the model's forward signature (never those only **kwargs takes)."""
    params = inspect.signature(model.forward).parameters.values()
    return frozenset(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def _close(a: Tensor, b: Tensor, dtype: torch.dtype) -> bool:
    """Equal up to rounding of the model's dtype (a broken shortcut is off by far more)."""
    a, b = a.float().cpu(), b.float().cpu()
    if a.shape != b.shape or not torch.isfinite(a).all():
        return False
    rtol = 1e-4 if dtype == torch.float32 else 3e-2
    return bool((a - b).abs().max() <= rtol * (b.abs().max() + 1e-6))


def _probe_ids(lm, n: int = 6) -> Tensor:
    """Ordinary text tokens (special ids could switch on a multimodal path)."""
    ids = lm.encode([PROBE_TEXT], add_special_tokens=False)[0] if lm.tokenizer is not None else []
    if len(ids) < n + 2:
        ids = list(range(3, 3 + n + 2))
    return torch.tensor([ids[: n + 2]], device=lm.device)


def _one_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


@torch.no_grad()
def probe(lm) -> Family:
    """Run the model on a few tokens and return what its family supports (see module doc)."""
    model = lm.model
    name = getattr(model.config, "model_type", type(model).__name__)
    accepts = accepted(model)
    fam = Family(name, accepts, None, needs_ids=True, batched=False, rows=False, padding=False)
    lm.family = fam  # the most cautious plan while probing
    dtype = lm.dtype
    seq = _probe_ids(lm)  # [1, 8]
    two = torch.cat([seq, seq.flip(1)])  # two rows of one length
    heads = []
    handle = lm.lm_head.register_forward_hook(lambda _m, _a, out: heads.append(tuple(out.shape)))
    try:
        ref = lm.call(input_ids=two, use_cache=False).logits  # [2, 8, V]: the plain computation
    except Exception as e:
        raise BackboneError(f"{lm.name_or_path}: the {name} family ({type(model).__name__}) cannot run a plain "
                            f"forward on token ids, so shoulders cannot use it ({type(e).__name__}: {_one_line(e)})") from None
    finally:
        handle.remove()
    fam = replace(fam, narrow=heads == [tuple(ref.shape)])
    x = seq[:, :6]
    if "position_ids" in accepts:  # the family's own positions are 0, 1, 2, ... (not so for RoBERTa's)
        try:
            arange = torch.arange(8, device=two.device).expand(2, -1)
            fam = replace(fam, positions=_close(lm.call(input_ids=two, position_ids=arange,
                                                        use_cache=False).logits, ref, dtype))
        except Exception:
            fam = replace(fam, positions=False)
    else:
        fam = replace(fam, positions=False)
    lm.family = fam
    try:  # token embeddings must give the token logits, and soft vectors must go in at all
        emb = lm.embed(x)
        given = emb.clone()
        embeds = lm.call(inputs_embeds=given, use_cache=False).logits
        fam = replace(fam, copy_embeds=not torch.equal(given, emb))
        lm.family = fam
        lm.call(inputs_embeds=emb * 0.5 + emb.flip(1) * 0.5, use_cache=False)
        fam = replace(fam, needs_ids=not torch.equal(embeds, lm.call(input_ids=x, use_cache=False).logits))
    except Exception:  # e.g. gemma4_text reverses its embedding to find the ids: soft vectors fail there
        pass
    lm.family = fam
    if fam.needs_ids and not _replaced(lm, x):
        raise BackboneError(f"{lm.name_or_path}: the {name} family ({type(model).__name__}) takes no soft vectors: "
                            "it has no working inputs_embeds, and its input embedding's output is not what its "
                            "layers read, so shoulders cannot use it")
    try:
        padded = _right_padding_ok(lm, seq, dtype)
    except Exception as e:
        raise BackboneError(f"{lm.name_or_path}: the {name} family ({type(model).__name__}) cannot run a padded "
                            f"batch of soft vectors, so shoulders cannot use it ({type(e).__name__}: "
                            f"{_one_line(e)})") from None
    if not padded:
        raise BackboneError(f"{lm.name_or_path}: in the {name} family ({type(model).__name__}) a row's logits "
                            "change with the rows padded beside it (its attention mask does not hide right "
                            "padding), so shoulders cannot train or score on it in batches")
    try:  # rows of one batch are computed independently
        alone = lm.call(input_ids=two[1:], use_cache=False).logits
        fam = replace(fam, batched=_close(ref[1], alone[0], dtype))
    except Exception:
        pass
    lm.family = fam
    keyword = next((k for k in kv.CACHE_KEYWORDS if k in accepts), None)
    if keyword is not None:  # the model's own cache, decoding three tokens after a prefill
        for batched, step_mask in ((True, True), (True, False), (False, True), (False, False)):
            if batched and not fam.batched:
                continue
            rows = two if batched else two[:1]
            if _decodes(lm, rows, ref[: len(rows)], keyword, step_mask, dtype):
                fam = replace(fam, cache_kw=keyword, step_mask=step_mask, batched=batched)
                break
    lm.family = fam
    if fam.batched:
        fam = replace(fam, padding=fam.step_mask and _padding_ok(lm, seq, dtype))
        lm.family = fam
        fam = replace(fam, rows=fam.cache_kw is None or _rows_ok(lm, two, ref, dtype))
        lm.family = fam
        merge = fam.cache_kw is None or kv.is_mergeable(_prefilled(lm, two[:, :2]))
        # merged caches are padded to a new length: only rows whose positions we pass stay right
        fam = replace(fam, mergeable=fam.padding and fam.rows and fam.positions and merge)
    lm.family = fam
    return fam


def _step(lm, tokens: Tensor, cache, length: int, step_mask: bool = True, keyword: str | None = None):
    """One decode step of rows that fill `length` positions before it (no padding)."""
    b = tokens.shape[0]
    kwargs = {"input_ids": tokens[:, None], "position_ids": torch.full((b, 1), length, device=tokens.device),
              "use_cache": True, (keyword or lm.family.cache_kw): cache}
    if step_mask if keyword else lm.family.step_mask:
        kwargs["attention_mask"] = torch.ones(b, length + 1, dtype=torch.long, device=tokens.device)
    return lm.call(**kwargs)


def _decodes(lm, rows: Tensor, ref: Tensor, keyword: str, step_mask: bool, dtype) -> bool:
    """Prefill rows[:, :5], then decode rows[:, 5:8] one token a step with the cache the
    model returned: each step's logits equal the plain computation's."""
    try:
        out = lm.call(input_ids=rows[:, :5], attention_mask=torch.ones_like(rows[:, :5]), use_cache=True)
        cache = kv.returned(out, keyword)
        if cache is None:
            return False
        for t in range(5, 8):
            out = _step(lm, rows[:, t], cache, t, step_mask, keyword)
            if not _close(out.logits[:, -1], ref[:, t], dtype):
                return False
            cache = _returned(lm, out, cache, keyword)
        return True
    except Exception:
        return False


def _right_padding_ok(lm, seq: Tensor, dtype) -> bool:
    """Row seq[2:6] right-padded by two noisy masked positions beside seq[:6] gives its
    logits alone at every real position (what training and scoring batches rely on)."""
    alone = lm.call(input_ids=seq[:, 2:6], use_cache=False).logits[0]
    layout = lm.layout(None, [seq[0, :6].tolist(), seq[0, 2:6].tolist()], pad_side="right")
    gen = torch.Generator().manual_seed(1)
    scale = 10 * float(layout.inputs_embeds.float().std())
    layout.inputs_embeds[1, 4:] = (torch.randn(2, layout.inputs_embeds.shape[-1], generator=gen)
                                   * scale).to(layout.inputs_embeds)
    out = lm.call(**lm.model_inputs(layout, use_cache=False))
    return _close(out.logits[1, :4], alone, dtype)


def _replaced(lm, x: Tensor) -> bool:
    """Token ids with the input-embedding output replaced: the token embeddings give the
    plain logits, other vectors give others (so soft vectors reach the layers)."""
    try:
        emb = lm.embed(x)
        plain = lm.call(input_ids=x, use_cache=False).logits
        same = lm.call(input_ids=x, inputs_embeds=emb, use_cache=False).logits
        other = lm.call(input_ids=x, inputs_embeds=emb.flip(1), use_cache=False).logits
        return torch.equal(same, plain) and not torch.equal(other, plain)
    except Exception:
        return False


def _returned(lm, out, cache, keyword: str | None = None):
    """The cache a step returned, or the one it was given (updated in place)."""
    from_out = kv.returned(out, keyword or lm.family.cache_kw)
    return from_out if from_out is not None else cache


def _prefilled(lm, x: Tensor):
    return kv.returned(lm.call(input_ids=x, use_cache=True), lm.family.cache_kw)


def _rows_ok(lm, two: Tensor, ref: Tensor, dtype) -> bool:
    """Two rows prefilled together, then rows [1, 0, 1] decode two steps: each must equal
    the plain computation of its row."""
    try:
        cache = _prefilled(lm, two[:, :5])
        idx = torch.tensor([1, 0, 1], device=two.device)
        cache = kv.select_rows(cache, idx)
        for t in (5, 6):
            out = _step(lm, two[idx, t], cache, t)
            if not _close(out.logits[:, -1], ref[idx, t], dtype):
                return False
            cache = _returned(lm, out, cache)
        return True
    except Exception:
        return False


def _padding_ok(lm, seq: Tensor, dtype) -> bool:
    """Row seq[2:6] left-padded by two noisy masked positions beside seq[:6] gives its
    logits alone, at prefill and (with a cache) at the next two steps."""
    try:
        alone = lm.call(input_ids=seq[:, 2:8], use_cache=False).logits[0]  # row 1 alone at every position
        layout = lm.layout(None, [seq[0, :6].tolist(), seq[0, 2:6].tolist()], pad_side="left")
        gen = torch.Generator().manual_seed(0)
        scale = 10 * float(layout.inputs_embeds.float().std())
        noise = torch.randn(2, layout.inputs_embeds.shape[-1], generator=gen) * scale
        layout.inputs_embeds[1, :2] = noise.to(layout.inputs_embeds)  # row 1's two masked positions
        use = lm.family.cache_kw is not None
        out = lm.call(**lm.model_inputs(layout, use_cache=use))
        if not _close(out.logits[1, -1], alone[3], dtype):
            return False
        mask, pos, cache = layout.attention_mask, layout.next_positions.to(seq.device), None
        for t in (6, 7) if use else ():
            cache = _returned(lm, out, cache)
            mask = torch.cat([mask, mask.new_ones(2, 1)], 1)
            out = lm.call(input_ids=seq[:, t:t + 1].expand(2, 1), attention_mask=mask, position_ids=pos[:, None],
                          use_cache=True, **{lm.family.cache_kw: cache})
            pos = pos + 1
            if not _close(out.logits[1, -1], alone[t - 2], dtype):
                return False
        return True
    except Exception:
        return False
