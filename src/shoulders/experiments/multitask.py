"""Multi-task comparison at toy scale: the paper's Table 1 and Figure 3.

Three methods train on the *same* multi-task mixture, with the same step budget, batch
size, warm-up/decay schedule and dev-evaluation schedule, through the same `Trainer`:

- prompt_tuning: one shared soft prompt for the whole mixture (frozen LM);
- idpt: one input-dependent prompt generator for the whole mixture (frozen LM + frozen
  encoder);
- finetune: the whole LM trained (the T0++ role; the reference, not a frozen method).

Each method keeps its own learning rate and sizes (tuned on dev only; see `METHODS`).
Model selection uses dev only (the Trainer keeps the best dev checkpoint); the reported
scores are on each task's *test* split, in percent, mean and std over seeds (a method
whose `METHODS` entry has `seeds: N` runs on the first N module seeds only: the
fine-tuned reference on one, shown without a std).
"""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import torch
from pydantic import ConfigDict, Field

from shoulders.data.examples import Example, Task
from shoulders.utils.fs import atomic_write_text
from shoulders.utils.strict_model import StrictModel

ORDER = ("prompt_tuning", "idpt", "finetune")
LABELS = {"prompt_tuning": "Prompt tuning (frozen)", "idpt": "ID-PT (frozen)", "finetune": "Fine-tuned (reference)"}


class Budget(StrictModel):
    """What every method gets, identically (frozen: one budget is shared by every run)."""

    model_config = ConfigDict(frozen=True)

    steps: int = Field(480, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="examples per step, drawn from the mixture")
    eval_every: int = Field(40, ge=1, description="steps between dev evaluations (the dev curve)")
    eval_max_examples: int | None = Field(50, ge=1, description="dev examples per task per evaluation; None = "
                                          "every dev example")
    warmup_steps: int = Field(10, ge=0, description="learning-rate warm-up steps (then linear decay)")
    max_new_tokens: int = Field(32, ge=1, description="generation budget (structure-to-text and summaries are the "
                                "longest)")


FULL = Budget()
QUICK = Budget(steps=60, eval_every=30, eval_max_examples=12)  # a smoke run: the demo's --quick budget

# Per-method hyper-parameters, tuned on dev splits only: docs/idpt.md, "How the demo's multitask settings were chosen".
# `seeds` (optional): run on the first N of the experiment's module seeds only.
METHODS: dict[str, dict] = {
    "prompt_tuning": {"lr": 0.01, "module": {"num_virtual_tokens": 16, "init": "vocab"}},
    "idpt": {"lr": 1e-3, "module": {"prompt_length": 16, "encoder_prompt_length": 0, "max_encoder_tokens": 64,
                                    "layers": 2, "heads": 4, "hidden_size": 128, "shared_prompt": True,
                                    "shared_lr": 0.01}},
    # The reference ceiling, far above both frozen methods: trained on the first module seed
    # only, which keeps the full demo inside its 30-minute budget (docs/demo.md).
    "finetune": {"lr": 1e-3, "module": {}, "seeds": 1},
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _config(method: str, spec: dict, backbone_path: str, device: str, seed: int, budget: Budget, out: Path,
            encoder_path: str | None):
    from shoulders.modules.registry import module_class
    from shoulders.train import load_config

    module = dict(spec["module"])
    fields = module_class(method).config_class.model_fields
    if "seed" in fields:
        module["seed"] = seed
    if method == "idpt" and encoder_path:
        module["encoder"] = encoder_path
    return load_config(data={
        "method": method, "backbone": {"name_or_path": backbone_path, "device": device, "dtype": "float32"},
        "module": module, "output_dir": str(out), "resume": False,
        "optim": {"lr": spec["lr"], "warmup_steps": budget.warmup_steps, "schedule": "linear"},
        "train": {"steps": budget.steps, "batch_size": budget.batch_size, "seed": seed, "eval_every": budget.eval_every,
                  "eval_max_examples": budget.eval_max_examples, "max_new_tokens": budget.max_new_tokens,
                  "log_every": max(1, budget.steps // 20)},
    })


def step_ms(module, lm, batch: list[Example], repeats: int = 3) -> float:
    """Median wall time of one training step's forward + backward on `batch`."""
    module.train()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        module(lm, batch).backward()
        times.append(1000 * (time.perf_counter() - start))
    module.zero_grad(set_to_none=True)
    return statistics.median(times)


def run_one(method: str, spec: dict, tasks: list[Task], lm, *, backbone_path: str, seed: int, budget: Budget,
            out: Path, encoder=None, encoder_path: str | None = None, progress: bool = True,
            evaluate_test: bool = True) -> dict:
    """Train one method for one seed, select on dev, score on test. Returns scores and costs.

    `evaluate_test=False` (hyper-parameter sweeps) never scores the test split (ID-PT still
    encodes its inputs, unlabelled, so that sweeps read the same encoder states as the demo).
    """
    from safetensors.torch import load_file

    from shoulders.modules.registry import module_class
    from shoulders.train import Trainer, evaluate

    shutil.rmtree(out, ignore_errors=True)
    cfg = _config(method, spec, backbone_path, "cpu" if lm.device.type == "cpu" else "auto", seed, budget, out,
                  encoder_path)
    torch.manual_seed(seed)
    extra = {"encoder": encoder} if method == "idpt" and encoder is not None else {}
    module = module_class(method).build(cfg.module_config(), lm, **extra)
    start = time.perf_counter()
    if hasattr(module, "precompute_encoder"):  # every split's inputs, once per encoder (a worker's next runs reuse them)
        module.precompute_encoder([ex for t in tasks for split in ("train", "dev", "test") for ex in t.split(split)])
    encode_s = time.perf_counter() - start  # 0 when this worker's encoder already holds the set
    start = time.perf_counter()
    result = Trainer(cfg, backbone=lm, tasks=tasks, module=module, progress=progress).fit()
    fit_s = time.perf_counter() - start
    if result.best_dir is not None:  # model selection on dev
        module.load_saved_state(load_file(str(result.best_dir / "weights.safetensors")))
    test = evaluate(module, lm, tasks, split="test", max_new_tokens=budget.max_new_tokens) if evaluate_test else None
    batch = [t.train[i % len(t.train)] for i, t in zip(range(budget.batch_size), tasks * budget.batch_size)]
    evals = result.history["eval"]
    return {
        "test": test,
        "dev_curve": [[e["step"], e["average"]] for e in evals],
        "best_tasks": max(evals, key=lambda e: e["average"])["tasks"] if evals else {},
        "trainable_params": module.num_trainable(),
        "fit_s": fit_s,
        "encode_s": encode_s,
        "step_ms": step_ms(module, lm, batch),
        "module": module,
    }


def aggregate(runs: list[dict]) -> dict:
    """Mean and std over seeds of the test scores; the mean dev curve."""
    avg, avg_std = _mean_std([r["test"]["average"] for r in runs])
    clusters = {c: _mean_std([r["test"]["clusters"][c] for r in runs]) for c in runs[0]["test"]["clusters"]}
    tasks = {t: _mean_std([r["test"]["tasks"][t] for r in runs]) for t in runs[0]["test"]["tasks"]}
    steps = [s for s, _ in runs[0]["dev_curve"]]
    curve = [[s, statistics.fmean(r["dev_curve"][i][1] for r in runs)] for i, s in enumerate(steps)]
    return {
        "average": avg, "average_std": avg_std,
        "clusters": {c: m for c, (m, _) in clusters.items()}, "clusters_std": {c: s for c, (_, s) in clusters.items()},
        "tasks": {t: m for t, (m, _) in tasks.items()}, "tasks_std": {t: s for t, (_, s) in tasks.items()},
        "per_seed_average": [r["test"]["average"] for r in runs],
        "seeds": len(runs),
        "trainable_params": runs[0]["trainable_params"],
        "dev_curve": curve,
        "step_ms": statistics.fmean(r["step_ms"] for r in runs),
        "fit_s": statistics.fmean(r["fit_s"] for r in runs),
        "encode_s": sum(r.get("encode_s", 0.0) for r in runs),  # ID-PT's encoder states, all seeds together
    }


@torch.no_grad()
def idpt_overhead(module, lm, examples: list[Example], repeats: int = 5) -> dict:
    """Inference cost of generating p(x) next to the frozen LM's forward over [p(x) ; x]."""
    module.eval()
    ids = module.encode_inputs(lm, examples)
    t_prefix, t_lm = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        prefix = module.prefix(lm, examples)
        t_prefix.append(time.perf_counter() - start)
        start = time.perf_counter()
        lm(prefix, ids)
        t_lm.append(time.perf_counter() - start)
    p, b = 1000 * statistics.median(t_prefix), 1000 * statistics.median(t_lm)
    return {"backbone_forward_ms": b, "idpt_prefix_ms": p, "ratio": p / b, "batch_size": len(examples)}


def plot_dev_curves(section: dict, path: Path) -> None:
    """Dev average against training steps for each method (the shape of the paper's Figure 3)."""
    import matplotlib.pyplot as plt

    from shoulders.train.plots import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for method in ORDER:
        if method in section and section[method]["dev_curve"]:
            steps, scores = zip(*section[method]["dev_curve"])
            one = len(section[method].get("per_seed_average", ())) == 1
            ax.plot(steps, scores, "o-", label=LABELS[method] + (" (one seed)" if one else ""))
    ax.set_xlabel("training step")
    ax.set_ylabel("dev average (%)")
    ax.set_title("Multi-task mixture: dev score during training (mean over module seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _paper_note(cluster: str) -> str:
    c = cluster.lower()
    if "sentiment" in c or "paraphrase" in c:
        return "ID-PT better"
    if "structure" in c or "summar" in c:
        return "T0++ better"
    return ""


def table_markdown(section: dict) -> str:
    """Table 1's shape: one row per cluster plus the average, one column per method."""
    methods = [m for m in ORDER if m in section]
    head = "| Cluster | " + " | ".join(LABELS[m] for m in methods) + " | Paper (ID-PT on frozen J1-Large 7B vs T0++ 11B) |"
    lines = [head, "|" + "---|" * (len(methods) + 2)]
    def single(m: str) -> bool:  # one seed has no std to show
        return len(section[m]["per_seed_average"]) == 1

    def cell(m: str, mean: float, std: float) -> str:
        return f"{mean:.1f}" if single(m) else f"{mean:.1f} ± {std:.1f}"

    for c in section[methods[0]]["clusters"]:
        cells = [cell(m, section[m]['clusters'][c], section[m]['clusters_std'][c]) for m in methods]
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {_paper_note(c)} |")
    cells = [f"**{cell(m, section[m]['average'], section[m]['average_std'])}**" for m in methods]
    lines.append("| **Average** | " + " | ".join(cells) + " | matched on average |")
    one = [LABELS[m] for m in methods if single(m)]
    params = ", ".join(f"{LABELS[m]} {section[m]['trainable_params']:,}" for m in methods)
    lines.append(f"\nTest scores (%), mean ± std over seeds; trainable parameters: {params}."
                 + (f" {', '.join(one)}: one seed (no std)." if one else ""))
    if "idpt_overhead" in section:
        o = section["idpt_overhead"]
        lines.append(f"Generating p(x) costs {o['idpt_prefix_ms']:.1f} ms per batch of {o['batch_size']} next to "
                     f"{o['backbone_forward_ms']:.1f} ms for the frozen LM's forward (ratio {o['ratio']:.2f}; "
                     "about 0.01 in the paper, where the LM is 7B).")
    return "\n".join(lines)


def _specs(methods: dict[str, dict] | None) -> dict[str, dict]:
    specs = {m: s for m, s in {**METHODS, **(methods or {})}.items() if s is not None}
    for m, s in specs.items():
        n = s.get("seeds")
        if n is not None and (type(n) is not int or n < 1):
            raise ValueError(f"methods[{m!r}]['seeds']={n!r}: expected a positive integer (the first N module seeds)")
    return specs


def method_seeds(spec: dict, seeds: list[int]) -> list[int]:
    """The module seeds a method runs on: the first `spec["seeds"]` of `seeds`, else all."""
    return list(seeds)[:spec.get("seeds", len(seeds))]


def multitask_parts(seeds: list[int], methods: dict[str, dict] | None = None) -> list[tuple[str, int]]:
    """The (method, seed) runs a multitask comparison is made of, in the order they are
    reported. Each is self-contained (its own seed; ID-PT's encoder states precomputed for the
    whole task set in a canonical order, `FrozenEncoder.precompute`), so they can run in any
    order or process and give the same numbers."""
    specs = _specs(methods)
    return [(m, seed) for i, seed in enumerate(seeds) for m in ORDER
            if m in specs and i < len(method_seeds(specs[m], seeds))]


def run_multitask_part(tasks: list[Task], backbone_path: str, method: str, seed: int, *, quick: bool, out_dir: Path,
                       encoder_path: str | None = None, progress: bool = True, methods: dict[str, dict] | None = None,
                       budget: Budget | None = None, measure_overhead: bool = False, lm=None,
                       encoder=None) -> dict:
    """One (method, seed) run of `run_multitask`: trained, selected on dev, scored on test.
    Returns plain JSON (the trained module is dropped); `measure_overhead` adds the ID-PT
    inference cost (`idpt_overhead`), which the comparison reports for its last seed.
    `lm` / `encoder`: already loaded frozen backbone / ID-PT encoder to reuse (else loaded)."""
    from shoulders.backbone import FrozenLM
    from shoulders.prompts.encoders import DEFAULT_ENCODER, FrozenEncoder
    from shoulders.prompts.idpt.config import IDPTConfig

    budget = budget or (QUICK if quick else FULL)
    spec = _specs(methods)[method]
    if lm is None:
        lm = FrozenLM.from_pretrained(backbone_path, dtype="float32", device="auto")
    if method != "idpt":
        encoder = None
    else:
        encoder_path = encoder_path or spec["module"].get("encoder", DEFAULT_ENCODER)
        if encoder is None:
            encoder = FrozenEncoder.from_pretrained(encoder_path, device=lm.device)
        if IDPTConfig.model_validate(spec["module"]).encoder_prompt_length != 0:
            encoder.disable_cache()  # a learned prompt before the encoder: its states change every step
        elif not encoder.caching:  # nothing learned before it: every input is encoded once (run_one)
            encoder.enable_cache()
    run = run_one(method, spec, tasks, lm, backbone_path=backbone_path, seed=seed, budget=budget,
                  out=Path(out_dir) / "runs" / f"{method}-seed{seed}", encoder=encoder, encoder_path=encoder_path,
                  progress=progress)
    module = run.pop("module")  # a fine-tuned copy is a whole LM: never kept
    if measure_overhead and method == "idpt":
        probe = [t.test[i % len(t.test)] for i, t in zip(range(32), tasks * 32)]
        with encoder.cache_paused():  # time the real encoder pass, as at inference on new inputs
            run["idpt_overhead"] = idpt_overhead(module, lm, probe)
    return run


def assemble_multitask(runs: dict[tuple[str, int], dict], task_names: list[str], backbone_path: str, *,
                       seeds: list[int], quick: bool, out_dir: Path, encoder_path: str | None = None,
                       methods: dict[str, dict] | None = None, budget: Budget | None = None) -> dict:
    """The demo's `multitask` section from the runs of `multitask_parts` (keyed by
    (method, seed)): means and stds over seeds, the dev-curve figure
    (`multitask_dev_curve.png`) and the table (`multitask_table.md`) under `out_dir`."""
    from shoulders.prompts.encoders import DEFAULT_ENCODER

    out_dir = Path(out_dir)
    budget = budget or (QUICK if quick else FULL)
    specs = _specs(methods)
    missing = [(m, s) for m in ORDER if m in specs for s in method_seeds(specs[m], seeds) if (m, s) not in runs]
    if missing:
        raise ValueError(f"assemble_multitask: no run for (method, seed) {missing}")
    section: dict = {m: aggregate([runs[(m, s)] for s in method_seeds(specs[m], seeds)]) for m in ORDER if m in specs}
    last = runs.get(("idpt", seeds[-1]), {})
    if "idpt_overhead" in last:
        section["idpt_overhead"] = last["idpt_overhead"]
    plot_dev_curves(section, out_dir / "multitask_dev_curve.png")
    section["table_markdown"] = table_markdown(section)
    atomic_write_text(out_dir / "multitask_table.md", section["table_markdown"] + "\n")
    if "idpt" in specs:
        encoder_path = encoder_path or specs["idpt"]["module"].get("encoder", DEFAULT_ENCODER)
    section["setup"] = {"seeds": list(seeds), "quick": quick, "backbone": str(backbone_path), "encoder": encoder_path,
                        "budget": budget.model_dump(), "methods": specs, "tasks": list(task_names)}
    section["figure"] = str(out_dir / "multitask_dev_curve.png")
    return section


def run_multitask(tasks: list[Task], backbone_path: str, *, seeds: list[int], quick: bool, out_dir: Path,
                  encoder_path: str | None = None, progress: bool = True, methods: dict[str, dict] | None = None,
                  budget: Budget | None = None) -> dict:
    """Train and test the three methods per seed; returns the demo's `multitask` section.

    `methods` overrides entries of `METHODS` (and may leave methods out); `budget`
    overrides the FULL / QUICK budget. Runs every `multitask_parts` run in this process,
    then `assemble_multitask` (the demo's workers run the parts apart, with the same numbers).
    """
    from shoulders.backbone import FrozenLM
    from shoulders.prompts.encoders import DEFAULT_ENCODER, FrozenEncoder

    lm = FrozenLM.from_pretrained(backbone_path, dtype="float32", device="auto")
    encoder = None
    if "idpt" in _specs(methods):  # loaded once, shared by the seeds
        encoder_path = encoder_path or _specs(methods)["idpt"]["module"].get("encoder", DEFAULT_ENCODER)
        encoder = FrozenEncoder.from_pretrained(encoder_path, device=lm.device)
    runs = {(m, s): run_multitask_part(tasks, backbone_path, m, s, quick=quick, out_dir=out_dir,
                                       encoder_path=encoder_path, progress=progress, methods=methods, budget=budget,
                                       measure_overhead=s == seeds[-1], lm=lm, encoder=encoder)
            for m, s in multitask_parts(seeds, methods)}
    return assemble_multitask(runs, [t.name for t in tasks], backbone_path, seeds=seeds, quick=quick, out_dir=out_dir,
                              encoder_path=encoder_path, methods=methods, budget=budget)


__all__ = ["Budget", "FULL", "QUICK", "METHODS", "run_multitask", "multitask_parts", "run_multitask_part",
           "assemble_multitask", "run_one", "aggregate", "table_markdown", "idpt_overhead"]
