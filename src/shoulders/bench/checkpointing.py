"""`shoulders bench checkpointing`: prompt tuning with and without gradient checkpointing.

The frozen backbone's activations are what a prompt-tuning step keeps for its backward
(no weight gradients, but the gradient must travel back through every layer to the
prompt). Checkpointing (`shoulders.backbone.checkpointing`, the switch the trainer turns
on with `backbone.gradient_checkpointing: true`) keeps only each decoder layer's input
and recomputes the layer during backward: one more forward for less memory.

Both variants run on the same backbone, the same prompt and the same token ids (the
train bench's backbones and workload), alternating round by round (`timing.alternate`),
so a drift of the machine's load hits both alike; the switch is flipped before each
call (its cost, a walk over the model's modules, is recorded as `toggle_s`). Peak memory
is the train bench's: `timing.peak_memory` of one step plus the optimizer state. The
prompt's gradient is computed once each way at the same weights and compared.

Rows: every size at the workload's input length, and the `long_sizes` again at
`long_input_tokens` (512 by default): activations grow with the sequence (attention
quadratically), the frozen weights and the LM head on the targets do not, so the saving
is larger there.
"""
from __future__ import annotations

import time

import torch

from shoulders.bench.backbones import build_backbone, count_parameters
from shoulders.bench.timing import alternate, median, paired_ratio, peak_memory, release
from shoulders.bench.train import Workload, _step, examples, optimizer_state_bytes


class Switch:
    """Gradient checkpointing of `lm` on or off, flipped only when it changes ("off" is a
    backbone never switched on: see `disable_gradient_checkpointing`)."""

    def __init__(self, lm):
        self.lm, self.on, self.layers = lm, False, 0

    def set(self, on: bool) -> None:
        from shoulders.backbone.checkpointing import disable_gradient_checkpointing, enable_gradient_checkpointing

        if on == self.on:
            return
        if on:
            self.layers = enable_gradient_checkpointing(self.lm)
        else:
            disable_gradient_checkpointing(self.lm)
        self.on = on


def prompt_gradient(pt, lm, exs) -> torch.Tensor:
    """d loss / d prompt at the prompt's current value (the prompt's .grad is left empty)."""
    pt.prompt.grad = None
    pt.loss(lm, exs).backward()
    grad = pt.prompt.grad.detach().float().clone()
    pt.prompt.grad = None
    return grad


def bench_row(lm, name: str, w: Workload, repeats: int, warmup: int, device, clock: str = "wall") -> dict:
    """One backbone at one input length: times, peaks and the gradient check, both ways."""
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    exs = examples(lm, w)
    pt = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=w.prompt, init="random"), lm)
    ids = pt.encode_inputs(lm, exs)
    if any(len(i) != w.input_tokens for i in ids):
        raise RuntimeError(f"workload tokenised to {sorted({len(i) for i in ids})} input tokens, not {w.input_tokens}")
    switch = Switch(lm)
    # The gradient check first, at the initial prompt, before any optimizer step moves it.
    plain = prompt_gradient(pt, lm, exs)
    switch.set(True)
    recomputed = prompt_gradient(pt, lm, exs)
    layers = switch.layers
    switch.set(False)
    diff = (plain - recomputed).abs().max().item()
    scale = plain.abs().max().item()
    tol = (1e-5 if lm.dtype == torch.float32 else 1e-2) * max(scale, 1e-30)

    opt = torch.optim.AdamW([pt.prompt], lr=1e-3)
    step = _step(lambda: pt.loss(lm, exs), opt)

    def variant(on: bool):
        def run():
            switch.set(on)
            step()
        return run

    fns = {"without": variant(False), "with": variant(True)}
    times = alternate(fns, device, repeats, warmup, clock)
    t0 = time.perf_counter()
    for _ in range(2):
        switch.set(not switch.on)
    toggle_s = (time.perf_counter() - t0) / 2
    peaks = {}
    for key, fn in fns.items():
        switch.set(key == "with")  # flipped outside the profiled step
        peaks[key] = peak_memory(fn, device) + optimizer_state_bytes(opt)
    switch.set(False)
    return {
        "backbone": name, "input_tokens": w.input_tokens, "layers": layers,
        "params": count_parameters(lm),
        "step_s": {k: median(v) for k, v in times.items()}, "times": times,
        "time_ratio": paired_ratio(times["with"], times["without"]),
        "peak_bytes": peaks, "memory_saving": 1 - peaks["with"] / peaks["without"],
        "grad_max_abs_diff": diff, "grad_max_abs": scale, "grad_tolerance": tol, "grad_match": diff <= tol,
        "toggle_s": toggle_s,
    }


def run_checkpointing_bench(sizes: list[str], w: Workload, repeats: int, warmup: int, device: torch.device,
                            dtype: torch.dtype, long_input_tokens: int = 512, long_sizes: list[str] | None = None,
                            clock: str = "wall", progress=print) -> dict:
    """Each of `sizes` at `w.input_tokens`, then each of `long_sizes` (default: none) at
    `long_input_tokens` (0: no long rows); one backbone is built per name."""
    long_sizes = [] if not long_input_tokens else list(long_sizes or [])
    result = {"workload": w.model_dump(), "long_input_tokens": long_input_tokens, "long_sizes": long_sizes,
              "repeats": repeats, "warmup": warmup, "clock": clock, "rows": []}
    for name in dict.fromkeys(sizes + long_sizes):
        lm = build_backbone(name, dtype=dtype, device=device)
        lengths = ([w.input_tokens] if name in sizes else []) + ([long_input_tokens] if name in long_sizes else [])
        for n in lengths:
            progress(f"bench checkpointing: {name}, {n} input tokens")
            result["rows"].append(bench_row(lm, name, w.model_copy(update={"input_tokens": n}), repeats, warmup, device, clock))
            release(device)
        del lm
        release(device)  # the backbone just measured, before the next is built
    return result


def checkpointing_markdown(result: dict, header_lines: list[str]) -> str:
    from shoulders.bench.report import fmt_mb, fmt_params, fmt_ratio, table

    w = result["workload"]
    out = header_lines + [
        f"Prompt tuning ({w['prompt']} prompt vectors) on randomly initialised backbones with the shapes named "
        f"(the train bench's), batch {w['batch']}, {w['target_tokens']} target tokens per row, input tokens as in "
        "the table; one step = forward + backward + AdamW step. *Without*: the frozen backbone keeps its "
        "activations for the backward; *with*: gradient checkpointing of every decoder layer "
        "(`shoulders.backbone.checkpointing.enable_gradient_checkpointing`, what `backbone.gradient_checkpointing: "
        "true` turns on in training), which keeps each layer's input and recomputes the layer in the backward. "
        f"Both run on the same backbone, prompt and tokens, alternating: median of {result['repeats']} rounds after "
        f"{result['warmup']} warm-up round(s), each variant once per round in rotating order; the time ratio is the "
        "median of the per-round ratios (with / without). Peak memory as in the training-step section: tensor memory "
        "allocated during one step above what was live before it (the profiler's allocation events on CPU, "
        "`torch.cuda.max_memory_allocated` on CUDA) plus the optimizer state; the frozen weights are not counted. "
        "Gradients: the prompt's gradient computed once each way at the same weights; max |difference| "
        "(and the gradient's max |value| for scale).", ""]
    rows = []
    for r in result["rows"]:
        rows.append([r["backbone"], fmt_params(r["params"]["total"]), str(r["input_tokens"]),
                     f"{r['step_s']['without']:.3f}", f"{r['step_s']['with']:.3f}", fmt_ratio(r["time_ratio"]),
                     fmt_mb(r["peak_bytes"]["without"]), fmt_mb(r["peak_bytes"]["with"]),
                     f"{r['memory_saving']:.0%} "
                     f"({fmt_mb(r['peak_bytes']['without'] - r['peak_bytes']['with'])} MB)",
                     f"{'yes' if r['grad_match'] else '**no**'} ({r['grad_max_abs_diff']:.1e} of "
                     f"{r['grad_max_abs']:.1e})"])
    out += table(["backbone", "params", "input tokens", "step s without", "step s with", "time ratio",
                  "peak MB without", "peak MB with", "memory saving", "gradients match (max abs diff)"], rows)
    if result["rows"]:
        out += ["", *summary(result["rows"])]
    return "\n".join(out) + "\n"


def summary(rows: list[dict]) -> list[str]:
    """What the table says, from its numbers: the saving, its cost, the gradients."""
    from shoulders.bench.report import fmt_mb

    best = max(rows, key=lambda r: r["memory_saving"])
    worst = max(rows, key=lambda r: r["time_ratio"])
    lines = [f"- Peak memory: checkpointing saved {min(r['memory_saving'] for r in rows):.0%} to "
             f"{best['memory_saving']:.0%} of the step's peak (most: {best['backbone']}, {best['input_tokens']} input "
             "tokens). What it frees is every layer's activations but one layer's (recomputed, with that layer's "
             "backward temporaries), so the share grows with depth; the LM head on the targets and the optimizer "
             "state are not touched."]
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["backbone"], []).append(r)
    longer = []
    for name, rs in by_name.items():
        if len(rs) > 1:
            a, b = min(rs, key=lambda r: r["input_tokens"]), max(rs, key=lambda r: r["input_tokens"])
            saved = [x["peak_bytes"]["without"] - x["peak_bytes"]["with"] for x in (a, b)]
            longer.append(f"{name} {fmt_mb(saved[0])} MB at {a['input_tokens']} tokens, {fmt_mb(saved[1])} MB at "
                          f"{b['input_tokens']} ({a['memory_saving']:.0%} -> {b['memory_saving']:.0%})")
    if longer:
        lines.append("- Longer inputs, megabytes saved (the activations are kept per position; the LM head on the "
                     "targets and the optimizer state do not grow with the input): " + "; ".join(longer) + ".")
    lines.append(f"- Time: a step with checkpointing took {min(r['time_ratio'] for r in rows):.2f}x to "
                 f"{worst['time_ratio']:.2f}x the step without ({worst['backbone']}, {worst['input_tokens']} input "
                 "tokens, the most): one more forward of the blocks during backward.")
    ok = all(r["grad_match"] for r in rows)
    lines.append(f"- Gradients: {'**matched in every row**' if ok else '**did not match in every row**'} "
                 f"(largest max |difference| {max(r['grad_max_abs_diff'] for r in rows):.1e}; tolerance 1e-5 of "
                 "the gradient's max |value| in float32, 1e-2 in bfloat16).")
    return lines
