"""`shoulders bench generate`: generation from a soft prefix, ours against plain transformers.

Both sides get the same backbone, the same soft prefix (a [P, D] prompt, as prompt
tuning would learn) before the same input tokens, and generate exactly the same number
of new tokens (no EOS in the vocabulary's config, and `min_new_tokens` on the HF side).
Ours: `FrozenLM.generate(prefix, ids, GenerationConfig)`. Transformers: `model.generate`
from `inputs_embeds` = [prefix ; embed(ids)], which is how PEFT generates from a prompt;
building those embeddings is inside its timer, as building the layout is inside ours.
tokens/s = batch * new tokens / wall time of the whole call (prefill included).
Greedy outputs are compared token by token: the same model must give the same text.
"""
from __future__ import annotations

import torch
from pydantic import Field

from shoulders.bench.backbones import build_backbone, count_parameters
from shoulders.bench.timing import alternate, median, paired_ratio, release
from shoulders.prompts.prompt_tuning.model import embedding_std
from shoulders.utils.strict_model import StrictModel


class GenWorkload(StrictModel):
    """What every contender generates, identically."""

    batch: int = Field(8, ge=1, description="rows per generate call")
    input_tokens: int = Field(64, ge=1, description="random token ids per row, after the soft prefix")
    prompt: int = Field(20, ge=1, description="soft-prefix vectors before the input tokens")
    new_tokens: int = Field(32, ge=1, description="tokens generated per row, exactly (no early EOS)")
    temperature: float = Field(0.8, gt=0, description="sampling temperature (sampled mode)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass (sampled mode)")
    seed: int = Field(0, description="seeds the prefix, the token ids and sampling")


@torch.no_grad()
def hf_generate(lm, embeds: list[torch.Tensor], new_tokens: int, **sampling) -> list[list[int]]:
    """transformers `generate` on rows of [L_i, D] input embeddings, left padded into one
    batch: the new token ids of every row, exactly `new_tokens` each (`sampling`: do_sample,
    temperature, top_p, top_k). The one HF call both the generate and the serve benches time."""
    width = max(e.shape[0] for e in embeds)
    batch = torch.zeros(len(embeds), width, lm.hidden_size, dtype=lm.dtype, device=lm.device)
    mask = torch.zeros(len(embeds), width, dtype=torch.long, device=lm.device)
    for i, e in enumerate(embeds):
        batch[i, width - e.shape[0]:] = e.to(lm.device, lm.dtype)
        mask[i, width - e.shape[0]:] = 1
    # eos_token_id=None: no EOS stops a row (ours and the server's ignore_eos); with one set,
    # min_new_tokens would also forbid EOS tokens, which ignore_eos does not
    sampling.setdefault("do_sample", False)
    out = lm.model.generate(inputs_embeds=batch, attention_mask=mask, max_new_tokens=new_tokens,
                            min_new_tokens=new_tokens, pad_token_id=0, eos_token_id=None, **sampling)
    return out.tolist()


def contenders(lm, w: GenWorkload) -> dict:
    """{name: fn} for ours/hf x greedy/sampled; each fn returns the new token ids per row."""
    from shoulders.backbone import GenerationConfig

    g = torch.Generator().manual_seed(w.seed)
    std = embedding_std(lm.input_embeddings.weight.detach())
    prefix = (torch.randn(w.prompt, lm.hidden_size, generator=g) * std).to(lm.device, lm.dtype)
    ids = torch.randint(1, min(lm.vocab_size, 5000), (w.batch, w.input_tokens), generator=g).tolist()
    greedy = GenerationConfig(max_new_tokens=w.new_tokens)
    sampled = GenerationConfig(max_new_tokens=w.new_tokens, do_sample=True, temperature=w.temperature,
                               top_p=w.top_p, seed=w.seed)

    def ours(cfg):
        return lambda: [r[0].token_ids for r in lm.generate(prefix, ids, cfg)]

    def hf(sample: bool):
        kwargs = dict(do_sample=sample)
        if sample:  # top_k=0: no top-k filter, as in ours (HF's default would be 50)
            kwargs.update(temperature=w.temperature, top_p=w.top_p, top_k=0)

        def run():
            if sample:
                torch.manual_seed(w.seed)
            emb = torch.cat([prefix.expand(w.batch, -1, -1), lm.embed(torch.tensor(ids, device=lm.device))], dim=1)
            return hf_generate(lm, list(emb), w.new_tokens, **kwargs)
        return run

    fns = {"ours greedy": ours(greedy), "hf greedy": hf(False), "ours sampled": ours(sampled),
           "hf sampled": hf(True)}
    return fns


def bench_size(name: str, w: GenWorkload, repeats: int, warmup: int, device, dtype, clock: str = "wall") -> dict:
    lm = build_backbone(name, dtype=dtype, device=device)
    fns = contenders(lm, w)
    a, b = fns["ours greedy"](), fns["hf greedy"]()
    lengths = {len(t) for t in a} | {len(t) for t in b}
    if lengths != {w.new_tokens}:
        raise RuntimeError(f"{name}: generated lengths {sorted(lengths)}, expected {w.new_tokens} everywhere")
    same = sum(x == y for x, y in zip(a, b)) / len(a)
    times = alternate(fns, device, repeats, warmup, clock)
    tokens = w.batch * w.new_tokens
    rows = {}
    for mode in ("greedy", "sampled"):
        ours, hf = times[f"ours {mode}"], times[f"hf {mode}"]
        rows[mode] = {"ours_tok_s": tokens / median(ours), "hf_tok_s": tokens / median(hf),
                      "ours_x_hf": paired_ratio(hf, ours), "ours_times": ours, "hf_times": hf}
    total = count_parameters(lm)["total"]
    return {"backbone": name, "total_params": total, "modes": rows, "greedy_rows_identical": same}


def run_generate_bench(sizes: list[str], w: GenWorkload, repeats: int, warmup: int, device, dtype,
                       clock: str = "wall", progress=print) -> dict:
    result = {"workload": w.model_dump(), "repeats": repeats, "warmup": warmup, "clock": clock, "sizes": []}
    for name in sizes:
        progress(f"bench generate: {name}")
        result["sizes"].append(bench_size(name, w, repeats, warmup, device, dtype, clock))
        release(device)  # the backbone just measured, before the next is built
    return result


def generate_markdown(result: dict, header_lines: list[str]) -> str:
    from shoulders.bench.report import fmt_params, fmt_ratio, table

    w = result["workload"]
    out = header_lines + [
        f"Workload: batch {w['batch']}, {w['prompt']} soft-prefix vectors + {w['input_tokens']} input tokens, "
        f"exactly {w['new_tokens']} new tokens per row (no early EOS on either side); sampled = temperature "
        f"{w['temperature']}, top-p {w['top_p']}. tokens/s = batch x new tokens / wall time of one call, prefill "
        f"included. Median of {result['repeats']} rounds after {result['warmup']} warm-up round(s), the four "
        "contenders in rotating order; `ours / HF` is the median of per-round speed ratios.", ""]
    rows = []
    for s in result["sizes"]:
        for mode, r in s["modes"].items():
            rows.append([s["backbone"], fmt_params(s["total_params"]), mode, f"{r['ours_tok_s']:,.1f}",
                         f"{r['hf_tok_s']:,.1f}", fmt_ratio(r["ours_x_hf"]),
                         f"{s['greedy_rows_identical']:.0%}" if mode == "greedy" else ""])
    out += table(["backbone", "params", "mode", "ours tok/s", "HF generate tok/s", "ours / HF",
                  "greedy rows identical"], rows)
    if result["sizes"]:
        worst = min((r["ours_x_hf"], s["backbone"], m) for s in result["sizes"] for m, r in s["modes"].items())
        out += ["", "### Target", "",
                f"- Soft-prefix generation >= 0.95x the tokens/s of transformers `generate`: "
                f"**{'met' if worst[0] >= 0.95 else 'missed'}** (worst {worst[0]:.2f}x, {worst[1]} {worst[2]})."]
    return "\n".join(out) + "\n"
