"""Runs our benches from parsed CLI flags: device, dtype, threads, sizes, then writes.

Kept apart from the CLI file so that tests (and scripts) can call `run_benches` with a
plain namespace, and apart from the bench files so each of those only measures.
"""
from __future__ import annotations

import os
import re
import time
from types import SimpleNamespace

import torch

from shoulders.bench import report
from shoulders.bench.timing import setup_threads

DEFAULTS = {  # (full run, --quick): sized for ~15 and ~2 minutes of `all` on 2 idle cores
    "train": (["gpt2-mini", "gpt2", "gpt2-medium", "llama-mini", "smollm-135m", "smollm-360m"],
              ["gpt2-mini", "llama-mini"]),
    "generate": (["gpt2-mini", "llama-mini", "gpt2", "smollm-135m"], ["gpt2-mini", "llama-mini"]),
    "idpt": (["toy-small", "toy-large", "gpt2-mini", "gpt2", "smollm-135m", "gpt2-medium", "smollm-360m"],
             ["toy-small", "toy-large", "gpt2-mini", "gpt2"]),
    # not in `all`: ~6 minutes on its own (4 of CPU: one thread, 2 shared cores)
    "checkpointing": (["gpt2-mini", "llama-mini", "gpt2"], ["gpt2-mini", "llama-mini"]),
    # not in `all`: the pre-training rows' backbones (the re-ranker's rows always run)
    "precision": (["toy-small", "toy-large"], ["toy-small"]),
}
# timed rounds when --repeats is not given (full run, --quick); others: (3, 2)
REPEATS = {"precision": (7, 2)}  # its rounds take seconds, and a ratio wants more of them
# the sizes measured again at --long-input-tokens, when --sizes is not given
LONG_DEFAULTS = {"checkpointing": (["gpt2-mini", "llama-mini"], ["gpt2-mini"])}
SECTIONS = {"train": ("Training step", "train"), "generate": ("Generation", "generate"),
            "idpt": ("ID-PT overhead", "idpt"), "checkpointing": ("Gradient checkpointing", "checkpointing"),
            "precision": ("Precision: float32 vs bf16 autocast", "precision")}


def resolve(args) -> tuple[torch.device, torch.dtype]:
    from shoulders.backbone.frozen import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def _sizes(name: str, args) -> list[str]:
    if getattr(args, "bench", None) == name and args.sizes:
        return [s.strip() for s in args.sizes.split(",") if s.strip()]
    sizes = DEFAULTS[name][1 if args.quick else 0]
    if name == "idpt" and getattr(args, "toy_backbone", None):
        sizes = list(args.toy_backbone) + [s for s in sizes if not s.startswith("toy-")]
    return sizes


def _get(args, key, default):
    """A bench-specific flag when this bench was asked for by name, else its default."""
    return getattr(args, key, default) if getattr(args, "bench", None) not in (None, "all") else default


def run_one(name: str, args, device, dtype, repeats: int) -> tuple[dict, object]:
    """(result, its markdown function) of one bench."""
    sizes = _sizes(name, args)
    if name == "train":
        from shoulders.bench.train import Workload, run_train_bench
        from shoulders.bench.train_report import train_markdown

        w = Workload(batch=_get(args, "batch", 8), input_tokens=_get(args, "input_tokens", 128),
                     target_tokens=_get(args, "target_tokens", 8), prompt=_get(args, "prompt", 20))
        methods = [m.strip() for m in _get(args, "methods", "peft,pt,idpt,ft").split(",") if m.strip()]
        result = run_train_bench(sizes, methods, w, repeats, args.warmup, device, dtype,
                                 _get(args, "ft_max_params", 2e8), getattr(args, "matmul_n", 0), args.clock)
        return result, train_markdown
    if name == "generate":
        from shoulders.bench.generate import GenWorkload, generate_markdown, run_generate_bench

        w = GenWorkload(batch=_get(args, "batch", 8), input_tokens=_get(args, "input_tokens", 64),
                        prompt=_get(args, "prompt", 20), new_tokens=_get(args, "new_tokens", 32))
        return run_generate_bench(sizes, w, repeats, args.warmup, device, dtype, args.clock), generate_markdown
    if name == "checkpointing":
        from shoulders.bench.checkpointing import checkpointing_markdown, run_checkpointing_bench
        from shoulders.bench.train import Workload

        w = Workload(batch=_get(args, "batch", 8), input_tokens=_get(args, "input_tokens", 128),
                     target_tokens=_get(args, "target_tokens", 8), prompt=_get(args, "prompt", 20))
        long_sizes = _get(args, "long_sizes", None)
        if long_sizes is None:  # the defaults' long rows go with the default sizes only
            asked = getattr(args, "bench", None) == name and args.sizes
            long_sizes = [] if asked else LONG_DEFAULTS[name][1 if args.quick else 0]
        else:
            long_sizes = [s.strip() for s in long_sizes.split(",") if s.strip()]
        result = run_checkpointing_bench(sizes, w, repeats, args.warmup, device, dtype,
                                         _get(args, "long_input_tokens", 512), long_sizes, args.clock)
        return result, checkpointing_markdown
    if name == "precision":
        from shoulders.bench.precision import PrecisionWorkload, precision_markdown, run_precision_bench

        quick = {"score_questions": 20} if args.quick else {}
        w = PrecisionWorkload(**{**quick, **{k: v for k in ("questions", "score_questions", "batch", "seq_len")
                                            if (v := _get(args, k, None)) is not None},
                                 "compile": not _get(args, "no_compile", False)})
        return run_precision_bench(sizes, w, repeats, args.warmup, args.clock), precision_markdown
    from shoulders.bench.idpt_overhead import IdptWorkload, idpt_markdown, run_idpt_bench

    return run_idpt_bench(sizes, IdptWorkload(), repeats, args.warmup, device, dtype, args.clock), idpt_markdown


def run_benches(names: list[str], args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random backbones only: never reach for the hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per encoder load would drown the tables
    threads = setup_threads(args.threads or None)
    device, dtype = resolve(args)
    for name in names:
        repeats = args.repeats or REPEATS.get(name, (3, 2))[1 if args.quick else 0]
        t0 = time.perf_counter()
        machine = report.machine_info(device)
        result, markdown = run_one(name, args, device, dtype, repeats)
        result.update(command=report.command_line(getattr(args, "argv", None)), machine=machine,
                      device=str(device), dtype=str(dtype).replace("torch.", ""), threads=threads, clock=args.clock,
                      peak_tflops=args.peak_tflops or None, total_s=round(time.perf_counter() - t0, 1))
        title, json_name = SECTIONS[name]
        if getattr(args, "section", None):  # an extra section beside the bench's own
            title = args.section.strip()
            json_name = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or json_name
        text = markdown(result, report.header(title, result))
        print(text)
        if not args.no_write:
            for path in report.write_section(args.root, title, text, json_name, result):
                print(f"wrote {path}")
    return 0


def namespace(**overrides) -> SimpleNamespace:
    """The flags of `shoulders bench all` with their defaults, for callers without a CLI."""
    base = dict(bench="all", quick=False, device="auto", dtype="auto", threads=0, repeats=0, warmup=1, clock="wall",
                peak_tflops=0.0, root=".", no_write=False, sizes=None)
    base.update(overrides)
    return SimpleNamespace(**base)
