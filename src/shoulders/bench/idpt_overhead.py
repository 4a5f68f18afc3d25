"""`shoulders bench idpt`: what ID-PT's prompt generator costs next to the backbone.

The paper reports ~1% extra inference time for ID-PT on a 7B backbone. The generator
(frozen encoder + cross-attention) has a fixed size, so its share falls as the backbone
grows; this bench shows that trend: inference time of `module.prefix(examples)` (encoder
+ cross-attention, no gradients) as a ratio of one backbone forward pass over the same
batch ([prefix ; input tokens], no gradients), from the toy world's ~1-3M-parameter
backbones up to a few hundred million parameters. Toy backbones are timed with their
shapes and random weights (speed does not depend on the weights) unless `--toy-backbone
PATH` points at trained ones.
"""
from __future__ import annotations

import torch
from pydantic import Field

from shoulders.bench.backbones import build_backbone, count_parameters
from shoulders.bench.timing import alternate, median, paired_ratio, release
from shoulders.bench.train import Workload, examples, idpt_module
from shoulders.utils.strict_model import StrictModel


class IdptWorkload(StrictModel):
    """The batch both the prompt generator and the backbone run on."""

    batch: int = Field(8, ge=1, description="rows per call")
    input_tokens: int = Field(128, ge=1, description="input tokens per row")
    prompt: int = Field(20, ge=1, description="generated prompt vectors")
    seed: int = Field(0, description="seeds the input words and token ids")


def bench_size(name: str, w: IdptWorkload, repeats: int, warmup: int, device, dtype, encoder=None,
               clock: str = "wall") -> tuple[dict, object]:
    lm = build_backbone(name, dtype=dtype, device=device)
    module = idpt_module(lm, w.prompt, encoder).eval()
    exs = examples(lm, Workload(batch=w.batch, input_tokens=w.input_tokens, target_tokens=0, seed=w.seed))
    g = torch.Generator().manual_seed(w.seed)
    ids = torch.randint(1, min(lm.vocab_size, 5000), (w.batch, w.input_tokens), generator=g).tolist()
    with torch.no_grad():
        prefix = module.prefix(lm, exs).to(lm.dtype)

    def generator():
        with torch.no_grad():
            return module.prefix(lm, exs)

    def backbone():
        with torch.no_grad():
            return lm(prefix, ids)

    times = alternate({"prefix": generator, "backbone": backbone}, device, repeats, warmup, clock)
    encoder_params = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    row = {"backbone": name, "backbone_params": count_parameters(lm)["total"], "encoder_params": encoder_params,
           "module_trainable": module.num_trainable(), "prefix_s": median(times["prefix"]),
           "backbone_s": median(times["backbone"]), "ratio": paired_ratio(times["prefix"], times["backbone"]),
           "times": times}
    shared = module.encoder
    return row, shared


def run_idpt_bench(sizes: list[str], w: IdptWorkload, repeats: int, warmup: int, device, dtype,
                   clock: str = "wall", progress=print) -> dict:
    result = {"workload": w.model_dump(), "repeats": repeats, "warmup": warmup, "clock": clock, "sizes": []}
    try:
        from shoulders.modules.registry import module_class

        module_class("idpt")
    except Exception as e:  # noqa: BLE001 - another engineer's module: report and stop
        result["skipped"] = f"{type(e).__name__}: {e}"
        return result
    encoder = None
    for name in sizes:
        progress(f"bench idpt: {name}")
        row, encoder = bench_size(name, w, repeats, warmup, device, dtype, encoder, clock)
        result["sizes"].append(row)
        release(device)  # the backbone just measured, before the next is built
    return result


def idpt_markdown(result: dict, header_lines: list[str]) -> str:
    from shoulders.bench.report import fmt_params, table

    if "skipped" in result:
        return "\n".join(header_lines + [f"Skipped: ID-PT could not be imported ({result['skipped']})."]) + "\n"
    w = result["workload"]
    out = header_lines + [
        f"Inference, no gradients, batch {w['batch']} x {w['input_tokens']} input tokens; ID-PT generates "
        f"{w['prompt']} prompt vectors with its default generator (frozen encoder + cross-attention). `prefix / "
        "forward` = time of `module.prefix(examples)` over the time of one backbone forward pass on [prefix ; "
        f"input] (median of per-round ratios; {result['repeats']} rounds after {result['warmup']} warm-up). The "
        "paper reports ~1% on a 7B backbone; the training-step overhead is in the Training section (`ours: ID-PT`).",
        ""]
    rows = [[s["backbone"], fmt_params(s["backbone_params"]), fmt_params(s["encoder_params"]),
             f"{s['backbone_params'] / s['encoder_params']:.1f}x", f"{s['prefix_s'] * 1e3:,.1f}",
             f"{s['backbone_s'] * 1e3:,.1f}", f"{s['ratio']:.1%}"] for s in result["sizes"]]
    out += table(["backbone", "params", "encoder params", "backbone / encoder", "prefix ms", "forward ms",
                  "prefix / forward"], rows)
    return "\n".join(out) + "\n"
