"""`shoulders bench train`: one training step of each method on the same frozen backbone.

Contenders, all on the same randomly initialised model and the same token ids:
- `peft`: PEFT prompt tuning (`get_peft_model` + `PromptTuningConfig`), labels -100 on
  non-targets and the model's own loss: the reference point of every ratio.
- `pt`: our `PromptTuning.loss` (text in, so our step includes tokenisation).
- `idpt`: our input-dependent prompts (`shoulders.prompts.idpt`), when importable.
- `ft`: full fine-tuning of a copy of the backbone (HF loss, AdamW on every weight).
A step is forward + backward + AdamW step + zero_grad(set_to_none).

FLOPs of our step, the work a frozen backbone must do (activation gradients only):
  forward  = 2*T*N_mm + 4*B*L*S^2*d_attn + 2*n_tgt*D*V
  backward = 2*T*N_mm + 8*B*L*S^2*d_attn + 2*n_tgt*D*V
where T = B*S positions, S = prompt + input + target, N_mm = weights of the blocks'
matmuls, L layers, d_attn = heads * head_dim, n_tgt = target tokens (the LM head runs on
those only). No weight gradients, so the linear layers' backward is one matmul (dX), not
two; both operands of the attention matmuls are activations, so those count twice.
Causal attention is counted in full (the usual convention).
"""
from __future__ import annotations

import copy
import random

import torch
from pydantic import Field

from shoulders.bench.backbones import build_backbone, count_parameters
from shoulders.bench.timing import alternate, matmul_flops, median, paired_ratio, peak_memory, release
from shoulders.train.loop import update
from shoulders.utils.strict_model import StrictModel


class Workload(StrictModel):
    """One training step's batch, the same for every contender."""

    batch: int = Field(8, ge=1, description="rows per step")
    input_tokens: int = Field(128, ge=1, description="input tokens per row (pseudo-words of one token each)")
    target_tokens: int = Field(8, ge=0, description="target tokens per row (the loss is on these)")
    prompt: int = Field(20, ge=1, description="soft-prompt vectors (PEFT, ours, and ID-PT's generated prompt)")
    seed: int = Field(0, description="seeds the pseudo-words of the inputs and targets")


def examples(lm, w: Workload):
    """`batch` examples of exactly `input_tokens` + `target_tokens` word tokens."""
    from shoulders.data.examples import Example

    rng = random.Random(w.seed)
    top = min(lm.vocab_size, 5000) - 1

    def words(n):
        return " ".join(f"w{rng.randint(1, top)}" for _ in range(n))

    return [Example(input=words(w.input_tokens), target=words(w.target_tokens), task="bench") for _ in range(w.batch)]


def step_flops(lm, w: Workload) -> float:
    """FLOPs of forward + activation-gradient backward of our prompt-tuning step."""
    cfg = lm.config
    layers, heads = cfg.num_hidden_layers, cfg.num_attention_heads
    d_attn = heads * (getattr(cfg, "head_dim", None) or lm.hidden_size // heads)
    s = w.prompt + w.input_tokens + w.target_tokens
    t = w.batch * s
    head = 2 * w.batch * w.target_tokens * lm.hidden_size * lm.vocab_size
    n_mm = count_parameters(lm)["matmul"]
    fwd = 2 * t * n_mm + 4 * w.batch * layers * s * s * d_attn + head
    bwd = 2 * t * n_mm + 8 * w.batch * layers * s * s * d_attn + head
    return float(fwd + bwd)


def _step(loss_fn, opt):
    def step():
        loss_fn().backward()
        update(opt)
    return step


def build_methods(lm, w: Workload, methods: list[str], ft_max_params: float = 0) -> tuple[dict, dict, dict]:
    """({name: (step, optimizer, trainable params, frozen params of its own)}, notes) for `methods`."""
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    exs = examples(lm, w)
    pt = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=w.prompt, init="random"), lm)
    ids = [a + b for a, b in zip(pt.encode_inputs(lm, exs), pt.encode_targets(lm, [e.target for e in exs]))]
    ids = torch.tensor(ids, device=lm.device)
    if ids.shape != (w.batch, w.input_tokens + w.target_tokens):
        raise RuntimeError(f"workload tokenised to {tuple(ids.shape)}")
    labels = ids.clone()
    labels[:, : w.input_tokens] = -100
    mask = torch.ones_like(ids)
    out, notes = {}, {}
    for name in methods:
        extra = 0
        if name == "peft":
            from peft import PromptTuningConfig as PeftConfig
            from peft import get_peft_model

            model = get_peft_model(lm.model, PeftConfig(task_type="CAUSAL_LM", num_virtual_tokens=w.prompt))
            params = [p for p in model.parameters() if p.requires_grad]
            loss = lambda m=model: m(input_ids=ids, attention_mask=mask, labels=labels).loss  # noqa: E731
        elif name == "pt":
            params = list(pt.trainable_parameters())
            loss = lambda: pt.loss(lm, exs)  # noqa: E731
        elif name == "idpt":
            module = _build_idpt(lm, w, notes)
            if module is None:
                continue
            params = list(module.trainable_parameters())
            extra = sum(p.numel() for p in module.parameters() if not p.requires_grad)
            loss = lambda m=module: m.loss(lm, exs)  # noqa: E731
        elif name == "ft":
            if ft_max_params and lm.num_parameters > ft_max_params:
                notes["ft"] = (f"full fine-tuning skipped above {ft_max_params / 1e6:.0f}M parameters "
                               "(--ft-max-params 0 runs it everywhere)")
                continue
            model = copy.deepcopy(lm.model).requires_grad_(True)
            params = list(model.parameters())
            loss = lambda m=model: m(input_ids=ids, attention_mask=mask, labels=labels).loss  # noqa: E731
        else:
            raise ValueError(f"unknown method {name!r}: expected peft, pt, idpt or ft")
        opt = torch.optim.AdamW(params, lr=1e-3)
        out[name] = (_step(loss, opt), opt, sum(p.numel() for p in params), extra)
    return out, notes


def idpt_module(lm, prompt: int, encoder=None):
    """Our ID-PT module with `prompt` generated vectors and otherwise default settings."""
    from shoulders.modules.registry import module_class

    cls = module_class("idpt")
    fields = cls.config_class.model_fields
    key = next((k for k in ("prompt_length", "num_virtual_tokens") if k in fields), None)
    config = cls.config_class(**({key: prompt} if key else {}))
    return cls.build(config, lm, encoder=encoder) if encoder is not None else cls.build(config, lm)


def _build_idpt(lm, w: Workload, notes: dict):
    """Another engineer's module: when it cannot be built, say why and carry on."""
    try:
        return idpt_module(lm, w.prompt).train()
    except Exception as e:  # noqa: BLE001
        notes["idpt"] = f"ID-PT skipped: {type(e).__name__}: {e}"
        return None


def optimizer_state_bytes(opt) -> int:
    return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))


def bench_size(name: str, w: Workload, methods: list[str], repeats: int, warmup: int, device, dtype,
               ft_max_params: float = 0, clock: str = "wall") -> dict:
    """Every method on one backbone: medians, paired ratios, peak memory, FLOP/s."""
    lm = build_backbone(name, dtype=dtype, device=device)
    built, notes = build_methods(lm, w, methods, ft_max_params)
    times = alternate({m: b[0] for m, b in built.items()}, device, repeats, warmup, clock)
    rows = {}
    for m, (step, opt, trainable, extra) in built.items():
        # One more step, profiled: its optimizer state already exists, so add it.
        peak = peak_memory(step, device) + optimizer_state_bytes(opt)
        rows[m] = {"step_s": median(times[m]), "times": times[m], "trainable": trainable, "peak_bytes": peak}
        if extra:
            rows[m]["frozen_extra_params"] = extra
    for m, r in rows.items():
        if "peft" in rows:
            r["time_x_peft"] = paired_ratio(times[m], times["peft"])
            r["mem_x_peft"] = r["peak_bytes"] / rows["peft"]["peak_bytes"]
        if "pt" in rows:
            r["time_x_pt"] = paired_ratio(times[m], times["pt"])
    params = dict(count_parameters(lm), head_dv=lm.hidden_size * lm.vocab_size)
    out = {"backbone": name, "params": params, "methods": rows, "notes": notes,
           "pt_step_flops": step_flops(lm, w)}
    if "pt" in rows:
        out["pt_flops_per_s"] = out["pt_step_flops"] / rows["pt"]["step_s"]
    return out


def run_train_bench(sizes: list[str], methods: list[str], w: Workload, repeats: int, warmup: int,
                    device: torch.device, dtype: torch.dtype, ft_max_params: float = 0, matmul_n: int = 0,
                    clock: str = "wall", progress=print) -> dict:
    """The matmul yardstick is measured before the first size and after each one (its
    median is the reference; the spread shows how much the machine's load drifted)."""
    n = matmul_n or (8192 if device.type == "cuda" else 4096)
    result = {"workload": w.model_dump(), "methods": methods, "repeats": repeats, "warmup": warmup,
              "ft_max_params": ft_max_params, "sizes": [], "matmul_n": n, "clock": clock,
              "matmul_flops_per_s": [matmul_flops(device, dtype, n, clock=clock)]}
    for name in sizes:
        progress(f"bench train: {name}")
        result["sizes"].append(bench_size(name, w, methods, repeats, warmup, device, dtype, ft_max_params, clock))
        release(device)  # the backbone just measured, before the next is built
        result["matmul_flops_per_s"].append(matmul_flops(device, dtype, n, clock=clock))
    result["matmul_flops_per_s_median"] = median(result["matmul_flops_per_s"])
    return result
