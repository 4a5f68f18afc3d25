"""Pre-train the toy backbones from scratch on the world's corpus, once, and cache them.

The embedded default needs a frozen LM that really *knows* the world, built on a
laptop CPU in minutes. Plain PyTorch loop (AdamW, warmup + cosine, seeded, fixed data
order; the step and the schedule from shoulders.train.loop), standard `transformers`
Llama configs so every HF tool loads the result, and a content-addressed cache: the
directory name hashes everything that shapes the weights, so a changed config trains a
new backbone and an unchanged one is reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, Field, model_validator

from shoulders.errors import ShouldersError
from shoulders.train import loop
from shoulders.toyworld.tiny_lm import llama_config
from shoulders.utils.fs import atomic_write_json
from shoulders.utils.precision import cpu_has_bf16  # noqa: F401  (re-exported: experiments and tests use it here)
from shoulders.utils.precision import autocast
from shoulders.utils.precision import resolve_precision as _resolve
from shoulders.utils.strict_model import StrictModel

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


class ModelConfig(StrictModel):
    """A Llama-architecture decoder; sizes only (vocab comes from the tokenizer)."""

    name: str = Field("toy-small", min_length=1, description="the backbone's name (its cache folder and the "
                      "name experiments ask for)")
    hidden_size: int = Field(128, ge=1, description="model width; a multiple of num_heads")
    num_layers: int = Field(4, ge=1, description="decoder layers")
    num_heads: int = Field(4, ge=1, description="attention heads (as many key/value heads)")
    intermediate_size: int = Field(512, ge=1, description="SwiGLU width")
    max_positions: int = Field(256, ge=1, description="the context window; equals the training sequence length")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base")
    lr: float | None = Field(None, gt=0, description="overrides PretrainConfig.lr: bigger models want smaller "
                             "steps (None: PretrainConfig.lr)")
    epochs: float | None = Field(None, gt=0, description="overrides PretrainConfig.epochs: a token budget per size, "
                                 "as the larger members of an LM family are trained on more tokens (None: "
                                 "PretrainConfig.epochs, and older cache keys stay valid)")
    prev_token_heads: tuple[int, ...] | None = Field(None, description="first-layer heads that start as \"look d "
                                                     "tokens back\" heads, one offset d >= 1 per head "
                                                     "(toyworld/attention_prior.py; needs q/k biases, so it turns "
                                                     "attention_bias on). None = off, and keeps older cache keys")

    @model_validator(mode="after")
    def _check(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}")
        if self.prev_token_heads is not None:
            if len(self.prev_token_heads) > self.num_heads:
                raise ValueError(f"prev_token_heads: {len(self.prev_token_heads)} offsets for {self.num_heads} heads")
            if any(d < 1 for d in self.prev_token_heads):
                raise ValueError(f"prev_token_heads: offsets must be >= 1, got {self.prev_token_heads}")
        return self

    def hf_config(self, tokenizer):
        extra = {"attention_bias": True} if self.prev_token_heads else {}
        return llama_config(tokenizer, hidden=self.hidden_size, layers=self.num_layers, heads=self.num_heads,
                            intermediate=self.intermediate_size, max_positions=self.max_positions,
                            rope_theta=self.rope_theta, attn_implementation="sdpa", **extra)

    def build(self, tokenizer):
        """A freshly initialised model of this shape (with its attention prior, if any)."""
        from transformers import LlamaForCausalLM

        from shoulders.toyworld.attention_prior import wire_previous_token_heads

        model = LlamaForCausalLM(self.hf_config(tokenizer))
        if self.prev_token_heads:
            wire_previous_token_heads(model, tuple(self.prev_token_heads))
        return model


TOY_SMALL = ModelConfig(name="toy-small", hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512)
# Twice toy-small's width (3.5x the parameters, about 1.6x its step time): chosen on dev
# probes over a bigger world (docs/backbones.md, "Scale"), where it stored 100% of 1-hop
# facts against toy-small's 98.7%, and the earlier 128-wide, 8-layer shape 48.7% (lr 5e-3)
# or 77.6% (lr 2e-3). Trained on twice toy-small's tokens (epochs=2.0), as the larger members
# of an LM family are: at equal tokens the two sizes answered the same closed-book questions;
# on twice the tokens toy-large is ahead on 2-hop questions (docs/backbones.md, "A token
# budget per size").
TOY_LARGE = ModelConfig(name="toy-large", hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, lr=2e-3,
                        epochs=2.0)


class PretrainConfig(StrictModel):
    """The pre-training loop, shared by every backbone of a world."""

    seed: int = Field(0, description="seeds the initialisation, the copy rows and the data order")
    seq_len: int = Field(256, ge=2, description="tokens per packed training row")
    batch_size: int = Field(8, ge=1, description="sequences per step")
    epochs: float = Field(1.0, gt=0, description="passes over the packed corpus (the corpus itself repeats facts)")
    max_steps: int = Field(0, ge=0, description="if > 0, stop after this many steps (smoke tests)")
    lr: float = Field(3e-3, gt=0, description="peak learning rate (a model's own ModelConfig.lr overrides it)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr * min_lr_ratio")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps before the cosine decay")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (on weights of 2+ dimensions; biases "
                                "and norms get none)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clip")
    threads: int = Field(0, ge=0, description="torch threads; 0 = auto (idle cores, see `auto_threads`); not part "
                         "of the cache key")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto (bf16 autocast where the CPU has "
                                                       "bf16 units, else fp32) | bf16 | fp32")
    doc_mask: bool = Field(True, description="attention stays inside each packed document, positions restart at "
                           "its <bos>: every document is seen as at inference, and the context a copy must search "
                           "is the document, not the whole 256-token row (see docs/backbones.md: copying forms far "
                           "sooner so)")
    copy_warmup_steps: int = Field(0, ge=0, description="steps of random token sequences said twice before the "
                                   "corpus (always doc-masked): only copying predicts the repeat, so attention "
                                   "learns to copy (induction) first, and reading drills then teach reading in a "
                                   "few hundred steps (docs/backbones.md)")
    copy_mix: float | None = Field(None, ge=0, lt=1, description="share of the main phase's rows that are random "
                                   "copy rows too (shuffled in with the corpus rows): keeps copying needed on every "
                                   "step, not only during the warm-up. None = 0 (and keeps older cache keys)")
    compile: Literal["auto", "on", "off"] | None = Field(None, description="run the training step through "
                                                         "torch.compile (inductor's fused CPU kernels): toy-small's "
                                                         "runs 1.23-1.30x faster, toy-large's steps 1.17x, after "
                                                         "about 45 s of compiling (docs/backbones.md); auto = on "
                                                         "where the C++ compiler inductor calls is found. "
                                                         "Compiled kernels round differently, so "
                                                         "the resolved on/off is part of the cache key; on world "
                                                         "seed 0 the compiled backbones read worse, so it is off "
                                                         "by default. None = off (and keeps older cache keys)")

    @classmethod
    def quick(cls) -> "PretrainConfig":
        """A ~270k-token run: more, smaller steps and a larger lr learn more facts per token
        (quick toy-small few-shot 1-hop EM: 16% at bs 8 / lr 3e-3, 26% at bs 4 / 3e-3,
        42% at bs 4 / 6e-3, 18% at bs 4 / 1e-2; chance 15%)."""
        return cls(batch_size=4, warmup_steps=20, lr=6e-3)


def resolve_precision(precision: str) -> str:
    """"bf16" or "fp32" for a PretrainConfig.precision on this machine."""
    return _resolve(precision, "cpu", field="PretrainConfig.precision")


def resolve_compile(compile: str | None) -> bool:
    """Whether a PretrainConfig.compile compiles the training step on this machine.

    Inductor builds C++ for the CPU with `$CXX`, else g++ (clang++ on macOS), so "auto" turns
    on only where that compiler is on PATH and `TORCHDYNAMO_DISABLE` is not set (torch would
    then run eager weights under a compiled key); "on" without a working toolchain fails at
    the first step, naming this field. None (unset) and "off" are off."""
    if compile != "auto":
        return compile == "on"
    if os.environ.get("TORCHDYNAMO_DISABLE", "") not in ("", "0"):
        return False
    return shutil.which(os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")) is not None


def resolved(train_cfg: PretrainConfig) -> PretrainConfig:
    """`train_cfg` as it shapes the weights on this machine: its precision resolved, and
    compile "on" or None (off, as runs before the option had it). This is what is hashed
    into the cache key and recorded in pretrain.json."""
    return train_cfg.model_copy(update={"precision": resolve_precision(train_cfg.precision),
                                        "compile": "on" if resolve_compile(train_cfg.compile) else None})


def auto_threads(max_threads: int = 4) -> int:
    """Cores not already busy (by the 1-minute load average), at least 1.

    Measured on 2 cores: with another process running, 2 threads train ~4x slower than
    1 (OpenMP threads wait on each other while descheduled), so never oversubscribe.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(max_threads, cores, int(cores - busy + 0.5)))


def pack(tokenizer, docs: list[str], seq_len: int) -> torch.Tensor:
    """Greedy packing of whole documents (bos ... eos) into rows; pad fills the rest.

    A document never straddles two rows, so a Q/A line is never cut from its answer.
    Longer documents are truncated to seq_len (none of the generators writes one).
    """
    ids = tokenizer(docs, add_special_tokens=True)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rows, cur = [], []
    for t in ids:
        t = (t + [eos])[:seq_len]
        if len(cur) + len(t) > seq_len:
            rows.append(cur + [pad] * (seq_len - len(cur)))
            cur = []
        cur += t
    if cur:
        rows.append(cur + [pad] * (seq_len - len(cur)))
    return torch.tensor(rows, dtype=torch.long)


def doc_positions(batch: torch.Tensor, bos_id: int) -> torch.Tensor:
    """Position ids that restart at 0 on every <bos> of a packed row.

    Given these and no attention mask, `transformers` builds a block-diagonal causal mask
    (its packed-sequence support), so no token attends across a document boundary.
    """
    idx = torch.arange(batch.shape[1]).expand_as(batch)
    start = torch.where(batch == bos_id, idx, torch.zeros_like(idx)).cummax(-1).values
    return idx - start


def row_order(n_warm: int, n_main: int, epochs: int, gen: torch.Generator) -> torch.Tensor:
    """Row indices in training order: the warm-up rows (0..n_warm-1) once, shuffled, then
    `epochs` shuffled passes over the main rows (n_warm..n_warm+n_main-1)."""
    return torch.cat([torch.randperm(n_warm, generator=gen)]
                     + [n_warm + torch.randperm(n_main, generator=gen) for _ in range(epochs)])


def copy_rows(tokenizer, n_rows: int, seq_len: int, gen: torch.Generator,
              length: tuple[int, int] = (5, 20)) -> torch.Tensor:
    """Rows of packed documents `<bos> s s <eos>`, s a run of distinct random tokens (no
    special or single-byte ones): the second copy can only be predicted by copying the first."""
    low, high = 3 + 256, len(tokenizer)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    rows = []
    for _ in range(n_rows):
        row: list[int] = []
        while True:
            n = int(torch.randint(length[0], length[1], (1,), generator=gen))
            s = (torch.randperm(high - low, generator=gen)[:n] + low).tolist()
            if len(row) + 2 * n + 2 > seq_len:
                break
            row += [bos, *s, *s, eos]
        rows.append(row + [pad] * (seq_len - len(row)))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, seq_len)


def step_loss(model, batch: torch.Tensor, tokenizer, *, doc_mask: bool, bf16: bool) -> tuple[torch.Tensor, int]:
    """Next-token loss on a packed batch (pad never a label); with `doc_mask`, attention
    stays inside each document and no <bos> is a label. Returns (loss, label tokens)."""
    labels = batch.masked_fill(batch == tokenizer.pad_token_id, -100)
    extra = {}
    if doc_mask:  # the next document's <bos> cannot be predicted from this one
        labels = labels.masked_fill(batch == tokenizer.bos_token_id, -100)
        extra = {"position_ids": doc_positions(batch, tokenizer.bos_token_id), "use_cache": False}
    # Weights, optimizer state and the update stay float32; only the matmuls run in bf16.
    with autocast("bf16" if bf16 else "fp32", "cpu"):
        loss = model(input_ids=batch, labels=labels, **extra).loss
    return loss, int((labels != -100).sum())


def train_step(model, opt, batch: torch.Tensor, tokenizer, *, doc_mask: bool, bf16: bool,
               grad_clip: float) -> tuple[float, int]:
    """One optimizer step of `step_loss`. Returns (loss, number of label tokens)."""
    loss, n_labels = step_loss(model, batch, tokenizer, doc_mask=doc_mask, bf16=bf16)
    return loop.step(loss, opt, params=model.parameters(), max_grad_norm=grad_clip), n_labels


def lr_at(step: int, total: int, cfg: PretrainConfig, peak: float) -> float:
    """Linear warmup to `peak`, then cosine decay to peak * min_lr_ratio."""
    return loop.warmup_cosine_floor(step, total, peak, cfg.warmup_steps, cfg.min_lr_ratio)


def pretrain(model_cfg: ModelConfig, train_cfg: PretrainConfig, tokenizer, docs: list[str], out_dir: Path,
             progress: bool = True) -> dict:
    """Train one backbone and save it (model + tokenizer + pretrain.json) into out_dir.

    With `copy_warmup_steps`, random copy rows come first (a curriculum), then `epochs`
    passes over `docs`; one lr schedule spans both.
    """
    threads = torch.get_num_threads()
    n_threads = train_cfg.threads or auto_threads()
    torch.set_num_threads(n_threads)
    try:
        torch.manual_seed(train_cfg.seed)
        start = time.time()
        data = pack(tokenizer, docs, train_cfg.seq_len)
        model = model_cfg.build(tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        peak_lr = model_cfg.lr or train_cfg.lr
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": train_cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=peak_lr, betas=train_cfg.betas)
        gen = torch.Generator().manual_seed(train_cfg.seed)
        warm = copy_rows(tokenizer, train_cfg.copy_warmup_steps * train_cfg.batch_size, train_cfg.seq_len, gen)
        corpus_rows = len(data)
        if train_cfg.copy_mix:  # a share in [0, 1), checked by PretrainConfig
            n_mix = round(len(data) * train_cfg.copy_mix / (1 - train_cfg.copy_mix))
            data = torch.cat([data, copy_rows(tokenizer, n_mix, train_cfg.seq_len, gen)])
        epochs = model_cfg.epochs or train_cfg.epochs
        order = row_order(len(warm), len(data), math.ceil(epochs), gen)
        data = torch.cat([warm, data])
        total = max(1, (len(warm) + int((len(data) - len(warm)) * epochs)) // train_cfg.batch_size)
        if train_cfg.max_steps:
            total = min(total, train_cfg.max_steps)
        model.train()
        train_cfg = resolved(train_cfg)
        precision, compiled = train_cfg.precision, train_cfg.compile == "on"
        # The compiled module shares `model`'s parameters; `model` itself is what is saved.
        # Static shapes: every batch is batch_size x seq_len, and a second model compiled in
        # the same process must not turn this one's graph dynamic.
        step_model = torch.compile(model, dynamic=False) if compiled else model
        tokens, first, recent = 0, None, deque(maxlen=20)  # final loss = mean of the last 20 steps
        bar = loop.steps(total, f"pre-training {model_cfg.name}", progress)
        for step in bar:
            batch = data[order[step * train_cfg.batch_size:(step + 1) * train_cfg.batch_size]]
            loop.set_lr(opt, lr_at(step, total, train_cfg, peak_lr))
            try:
                loss, n_labels = train_step(step_model, opt, batch, tokenizer, bf16=precision == "bf16",
                                            grad_clip=train_cfg.grad_clip,
                                            doc_mask=train_cfg.doc_mask or step < train_cfg.copy_warmup_steps)
            except Exception as e:  # the first compiled step builds the kernels: say which setting to change
                if compiled and step == 0:
                    raise ShouldersError(f"PretrainConfig.compile: torch.compile could not build the training step "
                                         f"on this machine ({type(e).__name__}: {e}); set train.compile to 'off' "
                                         "or install a working C++ compiler") from e
                raise
            tokens += n_labels
            first = loss if first is None else first
            recent.append(loss)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
        model.eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        stats = {"name": model_cfg.name, "params": n_params,
                 "corpus_tokens": int((data[len(warm):len(warm) + corpus_rows] != tokenizer.pad_token_id).sum()),
                 "copy_warmup_tokens": int((warm != tokenizer.pad_token_id).sum()),
                 "copy_mix_tokens": int((data[len(warm) + corpus_rows:] != tokenizer.pad_token_id).sum()),
                 "tokens_seen": tokens,
                 "steps": total,
                 "first_loss": round(first, 4), "final_loss": round(sum(recent) / len(recent), 4),
                 "wall_time_s": round(time.time() - start, 1), "threads": n_threads, "precision": precision,
                 "compiled": compiled,
                 "model": model_cfg.model_dump(), "train": train_cfg.model_dump(), "format_version": FORMAT_VERSION}
        (out_dir / "pretrain.json").write_text(json.dumps(stats, indent=2))
        return stats
    finally:
        torch.set_num_threads(threads)


def _hashed(part):
    """What of one key part shapes the weights: a config's fields less the thread count
    and unset (None) options; anything else as it is."""
    d = part.model_dump() if isinstance(part, BaseModel) else part
    return {k: v for k, v in d.items() if k != "threads" and v is not None} if isinstance(d, dict) else d


def config_hash(*parts) -> str:
    """Hash of everything that shapes the weights.

    Left out: the thread count (it changes nothing beyond float noise) and options set to
    None (unset), so adding an optional field later does not invalidate existing caches.
    """
    blob = json.dumps([FORMAT_VERSION, *map(_hashed, parts)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SHOULDERS_CACHE")
    return Path(env) / "toyworld" if env else Path.home() / ".cache" / "shoulders" / "toyworld"


def key_record(names: tuple[str, ...], parts: tuple) -> dict:
    """The hashed settings as one flat, readable dict ("corpus.n_passes": 60, ...), written
    beside each cached backbone so a later cache miss can say what changed."""
    out: dict = {}
    for name, part in zip(names, parts):
        if isinstance(part, BaseModel):
            out.update({f"{name}.{k}": v for k, v in _hashed(part).items()})
        else:
            out[name] = part
    return json.loads(json.dumps(out, default=str))


def cache_miss_message(final: Path, record: dict) -> str:
    """Why `final` must be pre-trained: nothing cached yet, or which settings differ from the
    nearest backbone of the same name already in the cache (that one is kept)."""
    name, root = final.name, final.parent.parent
    others = [d for d in root.glob(f"*/{name}") if (d / "pretrain.json").exists() and d != final] if root.exists() else []
    if not others:
        return f"{name}: no cached backbone in {root}: pre-training it (minutes; then cached)"
    best = None
    for d in others:
        try:
            old = json.loads((d / "key.json").read_text())
        except (OSError, ValueError):
            continue
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if best is None or len(diff) < len(best[1]):
            best = (d, diff, old)
    if best is None:
        return (f"{name}: the {len(others)} cached backbone(s) of this name in {root} were built by an earlier "
                "version of shoulders or with other settings: pre-training anew (minutes; the old ones are kept)")
    d, diff, old = best
    shown = "; ".join(f"{k}: {old.get(k, '-')} -> {record.get(k, '-')}" for k in diff[:6])
    more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
    return (f"{name}: settings differ from the cached {d.parent.name}/{name} ({shown}{more}): "
            "pre-training anew (minutes; the old one is kept)")


def train_cached(model_cfg: ModelConfig, train_cfg: PretrainConfig, key_parts: tuple, data: Callable[[], tuple],
                 cache_dir: str | Path | None = None, progress: bool = True,
                 key_names: tuple[str, ...] | None = None) -> Path:
    """The backbone's cache directory, pre-training it first if it is not there yet.

    `data()` returns (tokenizer, documents); it is only called when training is needed.
    `key_names` names `key_parts` for the record written beside the backbone (`key.json`)
    and for the message that says why a backbone is pre-trained (what changed since the
    nearest cached one).

    Training writes into a temporary sibling which is renamed into place only when
    complete, so an interrupted run never leaves a half-written backbone behind.
    """
    # The resolved precision and compile choice are hashed: bf16 and fp32 runs, compiled and
    # eager ones, give different weights.
    train_cfg = resolved(train_cfg)
    final = cache_root(cache_dir) / config_hash(*key_parts, model_cfg, train_cfg) / model_cfg.name
    if (final / "pretrain.json").exists():
        return final
    names = (*(key_names or tuple(f"key{i}" for i in range(len(key_parts)))), "model", "train")
    record = key_record(names, (*key_parts, model_cfg, train_cfg))
    log.info(cache_miss_message(final, record))
    tmp = final.parent / f".tmp-{model_cfg.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer, docs = data()
    pretrain(model_cfg, train_cfg, tokenizer, docs, tmp, progress=progress)
    if tmp.is_dir():
        atomic_write_json(tmp / "key.json", record)
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return final
