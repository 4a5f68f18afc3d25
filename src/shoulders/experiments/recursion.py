"""The recursion experiment: does a second pass through the same frozen small LM close
the gap to a larger one on closed-book QA (1-hop and 2-hop questions)?

Variants, all trained through the common Trainer on the same questions and measured on
the test split (EM %, mean and std over seeds):

- single_pass: prompt tuning on the small LM. Tuned on dev, never handicapped: the
  learning rate from `lr_grid` (first seed, or every seed with `lr_per_seed`) and the step count (best dev checkpoint
  over `single_steps`, evaluated every `eval_every`);
- single_pass_large: the same recipe, tuned the same way, on the large LM (the gap);
- textual: stage 1 *is* the single-pass module; stage 2 trains prompt2 (started as a
  copy of prompt1) on candidates sampled from pass 1 on the training questions;
- neural / neural_no_lm_pretrain: prompt1 and prompt2 start from the single-pass
  prompt; the Connector is (or, in the ablation, which runs only with
  `settings.ablation`, is not) pre-trained on the corpus first; then end to end with
  pass 1's own answer loss beside pass 2's (so pass 1 can still answer alone);
- gated: that neural module, recursing only below a pass-1 confidence threshold that
  is chosen on dev (the cheapest within `gate_tolerance` EM points of the best).

FLOPs per question ~ 2 x N_params x tokens summed over passes (see
`shoulders.recursion.evaluate`); forward passes: 1 per pass, textual pass 1's n samples
sharing one prefill count as one. gap_closed = (neural - single) / (large - single).
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator

from shoulders.backbone import FrozenLM
from shoulders.data.examples import Task
from shoulders.modules import load_module
from shoulders.recursion import NeuralRecursion, NeuralRecursionConfig, TextualRecursion, TextualRecursionConfig
from shoulders.recursion.candidates import DEFAULT_CANDIDATE, DEFAULT_SEPARATOR
from shoulders.recursion.evaluate import candidate_accuracy, score_gated, score_neural, score_single, score_textual, summarize
from shoulders.recursion.gated import choose_threshold, gate_sweep, plot_gate_sweep
from shoulders.recursion.pretrain import pretrain_connector
from shoulders.recursion.textual import DEFAULT_PASS2, check_candidate_template, check_pass2_template
from shoulders.train import Trainer, load_config
from shoulders.utils.fs import atomic_write_json, atomic_write_text
from shoulders.utils.strict_model import StrictModel

CANDIDATE_KEYS = ("candidates_top_train", "candidates_any_train", "candidates_top", "candidates_any")  # textual
VARIANTS = ("single_pass", "textual", "neural", "neural_no_lm_pretrain", "gated", "single_pass_large")


class RecursionSettings(StrictModel):
    """Every knob of the experiment; `full()` and `quick()` are the demo's two sizes. Steps,
    learning rates and variants were chosen on the closed-book dev split: docs/recursion.md,
    "How the demo's recursion settings were chosen"."""

    template: str = Field("Q: {input} A:", description="how a question is shown to the LM")
    prompt_tokens: int = Field(8, ge=1, description="prompt1 (= the single-pass prompt) and prompt2 length")
    single_steps: int = Field(400, ge=1, description="single-pass steps (best checkpoint on dev kept, so the step "
                              "count is tuned too)")
    steps: int = Field(400, ge=1, description="training steps of the recursion variants (textual stage 2, neural)")
    batch_size: int = Field(16, ge=1, description="training examples per step, every variant")
    lr_per_seed: bool = Field(False, description="try lr_grid on dev for every module seed (False: on the first "
                              "seed only, its choice reused); measured on worlds 0 and 2, it left the test gap "
                              "where it was for ~3 more core-minutes: docs/recursion.md")
    lr_grid: tuple[float, ...] = Field((0.3, 1.0), min_length=1, description="single-pass learning rates tried on "
                                       "dev, per backbone (on the first seed, or every seed with lr_per_seed)")
    pass2_lr: float = Field(0.1, gt=0, description="textual stage 2 (prompt2, started as a copy of prompt1)")
    neural_lr: float = Field(0.03, gt=0, description="neural recursion (prompts and Connector)")
    neural: dict = Field(default_factory=lambda: {
        "connector": {"kind": "mlp", "layers": 1}, "connect": "tokens", "repeat_question": True,
        "pass1_loss_weight": 1.0, "pass2_copies_pass1": True},
        description="NeuralRecursionConfig fields of the neural variants")
    pretrain_steps: int = Field(100, ge=0, description="Connector LM pre-training on the corpus; 0 = none")
    pretrain_batch: int = Field(16, ge=1, description="Connector pre-training batch size")
    pretrain_lr: float = Field(1e-3, gt=0, description="Connector pre-training learning rate")
    candidates: int = Field(8, ge=1, description="textual recursion's n (pass-1 samples per question)")
    cross_fit: int = Field(0, ge=0, description="textual pass 2 trains on candidates from pass-1 prompts fitted "
                           "without those questions (this many folds of the training set; 0 = prompt1's own "
                           "samples on its own training questions)")
    include_greedy: bool = Field(True, description="textual: pass 1's greedy answer is one more candidate vote")
    candidate_order: Literal["descending", "ascending"] = Field("descending", description="textual: the candidates "
                                                                "most frequent first | last, nearest the question")
    pass2_template: str = Field(DEFAULT_PASS2, description="textual pass 2's input "
                                "(TextualRecursionConfig.pass2_template)")
    candidate_template: str = Field(DEFAULT_CANDIDATE, description="textual: how each candidate is written "
                                    "({answer}, {count}, {question})")
    candidate_separator: str = Field(DEFAULT_SEPARATOR, description="textual: between the written candidates")
    textual_answer: Literal["generate", "choose"] = Field("generate", description="textual pass 2 generates its "
                                                          "answer | chooses the candidate it scores most likely "
                                                          "(TextualRecursionConfig.answer)")
    temperature: float = Field(0.5, gt=0, description="textual pass 1's sampling temperature (n, temperature and "
                               "include_greedy chosen on dev: docs/recursion.md)")
    top_p: float = Field(0.95, gt=0, le=1, description="textual pass 1's nucleus sampling (1 = off)")
    eval_every: int = Field(100, ge=1, description="steps between dev evaluations during training (the best on "
                            "dev is kept)")
    max_new_tokens: int = Field(12, ge=1, description="tokens generated per answer (each pass)")
    max_test: int | None = Field(None, ge=1, description="evaluate on at most this many test questions; None = "
                                 "all")
    gate_tolerance: float = Field(1.0, ge=0, description="gated: cheapest threshold within this many dev EM "
                                  "points of the best")
    ablation: bool = Field(False, description="also train neural_no_lm_pretrain (neural recursion without the "
                           "Connector's LM pre-training): about a fifth more of the experiment's time")

    # checked here too, so a bad template stops the run before the single pass trains, not after
    @field_validator("pass2_template")
    @classmethod
    def _pass2_template(cls, v: str) -> str:
        return check_pass2_template(v)

    @field_validator("candidate_template")
    @classmethod
    def _candidate_template(cls, v: str) -> str:
        return check_candidate_template(v)

    @classmethod
    def full(cls) -> "RecursionSettings":
        return cls()

    @classmethod
    def quick(cls) -> "RecursionSettings":
        return cls(single_steps=100, steps=50, lr_grid=(0.3,), pretrain_steps=30, eval_every=50)


# -------------------------------------------------------------------- training
class _Clock:
    """Wall and CPU seconds spent per variant."""

    def __init__(self):
        self.spent: dict[str, dict[str, float]] = {}

    def __call__(self, name: str):
        clock = self

        class _Span:
            def __enter__(self):
                self.t = (time.perf_counter(), time.process_time())

            def __exit__(self, *exc):
                d = clock.spent.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
                d["wall_s"] += time.perf_counter() - self.t[0]
                d["cpu_s"] += time.process_time() - self.t[1]

        return _Span()


def _train(lm: FrozenLM, method: str, module_cfg: dict, lr: float, seed: int, run_dir: Path, task: Task,
           settings: RecursionSettings, module=None, progress: bool = False, steps: int | None = None):
    cfg = load_config(data={
        "method": method, "backbone": {"name_or_path": lm.name_or_path, "device": "cpu"}, "module": module_cfg,
        "optim": {"lr": lr, "warmup_steps": 10},
        "train": {"steps": steps or settings.steps, "batch_size": settings.batch_size, "seed": seed,
                  "eval_every": settings.eval_every, "eval_max_examples": None, "eval_batch_size": 64,
                  "max_new_tokens": settings.max_new_tokens, "log_every": 10},
        "output_dir": str(run_dir), "resume": False})
    result = Trainer(cfg, backbone=lm, tasks=[task], module=module, progress=progress).fit()
    return result, load_module(result.best_dir or result.final_dir, lm)


def _single_pass(lm, task, settings, seed, run_dir, lr: float | None, progress):
    """Prompt tuning; with lr=None, try `lr_grid` and keep the best on dev. Returns (module, dir, lr)."""
    module_cfg = {"num_virtual_tokens": settings.prompt_tokens, "seed": seed, "text": {"template": settings.template}}
    best = None
    for cand in ([lr] if lr is not None else settings.lr_grid):
        result, module = _train(lm, "prompt_tuning", module_cfg, cand, seed, run_dir / f"lr{cand:g}", task, settings,
                                progress=progress, steps=settings.single_steps)
        if best is None or (result.best_score or 0.0) > best[0]:
            best = (result.best_score or 0.0, module, result.best_dir or result.final_dir, cand)
    return best[1], best[2], best[3]


def _mean_std(rows: list[dict]) -> dict:
    out = {}
    extra = [k for k in CANDIDATE_KEYS if rows and all(k in r for r in rows)]
    for key in ("em", "em_1hop", "em_2hop", "forward_passes", "flops_per_question", *extra):
        xs = [r[key] for r in rows if not math.isnan(r[key])]
        out[key] = statistics.fmean(xs) if xs else float("nan")
        if key.startswith("em"):
            out[f"{key}_std"] = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return out


def _textual(small, task, test, settings, seed, single_dir, run, progress, lr: float | None = None) -> dict:
    """Stage 2 of textual recursion on top of the single-pass module (its stage 1); with
    `settings.cross_fit` = K > 1, pass 2's training candidates of each fold come from a
    single pass trained (at `lr`, the single pass's) on the other K - 1 folds."""
    cfg = {"stage": "pass2", "init_from": str(single_dir), "pass2_copies_pass1": True,
           "text": {"template": settings.template}, "pass1": {"num_virtual_tokens": settings.prompt_tokens},
           "pass2": {"num_virtual_tokens": settings.prompt_tokens},
           "sampling": {"n": settings.candidates, "temperature": settings.temperature, "top_p": settings.top_p,
                        "seed": seed, "max_new_tokens": settings.max_new_tokens,
                        "include_greedy": settings.include_greedy},
           "candidate_order": settings.candidate_order, "pass2_template": settings.pass2_template,
           "candidate_template": settings.candidate_template, "candidate_separator": settings.candidate_separator,
           "answer": settings.textual_answer}
    module = TextualRecursion.build(TextualRecursionConfig(**cfg), small)
    if settings.cross_fit > 1:
        k = settings.cross_fit
        for fold in range(k):
            rest = Task(f"{task.name}-without-fold{fold}", [ex for i, ex in enumerate(task.train) if i % k != fold],
                        task.dev, [], task.metric, task.cluster)
            fitted, _, _ = _single_pass(small, rest, settings, seed, run / f"fold{fold}", lr, progress)
            module.prepare_candidates(small, task.train[fold::k], prompt1=fitted.prompt.detach())
    module.prepare_candidates(small, task.train)  # pass 2's training data: pass 1 sampled on the training questions
    _, module = _train(small, "textual_recursion", cfg, settings.pass2_lr, seed, run, task, settings, module, progress)
    scored = score_textual(module, small, test, settings.max_new_tokens)
    shown = module.config.sampling.max_shown
    train = candidate_accuracy(module.training_candidates(small, task.train), task.train, shown)
    held = candidate_accuracy(scored.candidates, test, shown)
    # pass 1's candidates on the questions pass 2 trained on, and on the ones it is scored on
    return {**summarize(scored, 2.0), "candidates_top_train": train["top"], "candidates_any_train": train["any"],
            "candidates_top": held["top"], "candidates_any": held["any"]}


def _neural(small, task, settings, seed, single_dir, run, corpus_texts, pretrain: bool, progress, notes):
    cfg = {**settings.neural, "connector": {**settings.neural.get("connector", {}), "seed": seed},
           "init_from": str(single_dir), "text": {"template": settings.template},
           "pass1": {"num_virtual_tokens": settings.prompt_tokens},
           "pass2": {"num_virtual_tokens": settings.prompt_tokens, "seed": seed + 1}}
    module = NeuralRecursion.build(NeuralRecursionConfig(**cfg), small)
    if pretrain and settings.pretrain_steps:
        torch.manual_seed(seed)
        stats = pretrain_connector(module, small, corpus_texts, steps=settings.pretrain_steps, seed=seed,
                                   batch_size=settings.pretrain_batch, lr=settings.pretrain_lr, progress=progress)
        losses = stats["losses"]
        notes.setdefault("connector_pretrain_loss_first_last10", []).append(
            [round(statistics.fmean(losses[:10]), 3), round(statistics.fmean(losses[-10:]), 3)])
    _, module = _train(small, "neural_recursion", cfg, settings.neural_lr, seed, run, task, settings, module, progress)
    return module


def _gap(result: dict, variant: str) -> float | None:
    """Share of the small-to-large gap a variant closes; None when the large LM is no better."""
    gap = result["single_pass_large"]["em"] - result["single_pass"]["em"]
    return (result[variant]["em"] - result["single_pass"]["em"]) / gap if gap > 1e-9 else None


PARTS = {"small": tuple(v for v in VARIANTS if v != "single_pass_large"), "large": ("single_pass_large",)}


def run_recursion(closedbook: Task, corpus_texts: list[str], small_path: str, large_path: str, *, seeds: list[int],
                  quick: bool, out_dir: Path, progress: bool = True, settings: RecursionSettings | None = None) -> dict:
    """Train and measure every variant on each seed; write the gated sweep PNG
    (recursion_gated.png), a markdown fragment (recursion.md) and recursion.json into
    out_dir; return the `recursion` section of results.json. The two parts are
    independent (every training seeds itself), so the demo runs them in two processes,
    the small LM's part while the large LM is still pre-training."""
    kw = dict(seeds=seeds, quick=quick, out_dir=out_dir, progress=progress, settings=settings)
    parts = {"small": run_recursion_part("small", closedbook, corpus_texts, small_path, **kw),
             "large": run_recursion_part("large", closedbook, corpus_texts, large_path, **kw)}
    return assemble_recursion(parts, seeds=seeds, quick=quick, out_dir=out_dir, settings=settings)


def run_recursion_part(part: str, closedbook: Task, corpus_texts: list[str], backbone_path: str, *, seeds: list[int],
                       quick: bool, out_dir: Path, progress: bool = True,
                       settings: RecursionSettings | None = None) -> dict:
    """One backbone's share of the experiment (`PARTS`): "small" trains every variant on
    the small LM, "large" the large LM's single pass. Returns plain JSON: per-seed rows,
    the learning rates chosen, time, and the gate sweeps ("small")."""
    if part not in PARTS:
        raise ValueError(f"recursion part {part!r}: expected one of {sorted(PARTS)}")
    torch.set_num_threads(1)
    settings = settings or (RecursionSettings.quick() if quick else RecursionSettings.full())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm = FrozenLM.from_pretrained(backbone_path, dtype="float32", device="cpu")
    test = closedbook.test[: settings.max_test] if settings.max_test else closedbook.test
    mnt = settings.max_new_tokens
    rows: dict[str, list[dict]] = {v: [] for v in PARTS[part]}
    clock, lrs, curves, notes = _Clock(), {}, {}, {}

    def fixed(name: str) -> float | None:  # None: try the grid for this seed
        return None if settings.lr_per_seed or name not in lrs else lrs[name][0]

    for seed in seeds:
        run = out_dir / "runs" / f"seed{seed}"
        if part == "large":
            with clock("single_pass_large"):
                big, _, lr = _single_pass(lm, closedbook, settings, seed, run / "large", fixed("large"), progress)
                lrs.setdefault("large", []).append(lr)
                rows["single_pass_large"].append(summarize(score_single(big, lm, test, mnt)[0], 1.0))
            continue
        small = lm
        with clock("single_pass"):
            single, single_dir, lr = _single_pass(small, closedbook, settings, seed, run / "single", fixed("small"),
                                                  progress)
            lrs.setdefault("small", []).append(lr)
            rows["single_pass"].append(summarize(score_single(single, small, test, mnt)[0], 1.0))
        with clock("textual"):
            rows["textual"].append(_textual(small, closedbook, test, settings, seed, single_dir, run / "textual",
                                            progress, lr))
        if settings.ablation:
            with clock("neural_no_lm_pretrain"):
                module = _neural(small, closedbook, settings, seed, single_dir, run / "neural_no_lm_pretrain",
                                 corpus_texts, False, progress, notes)
                rows["neural_no_lm_pretrain"].append(summarize(score_neural(module, small, test, mnt)[0], 2.0))
        with clock("neural"):
            module = _neural(small, closedbook, settings, seed, single_dir, run / "neural", corpus_texts, True,
                             progress, notes)
            scored, first = score_neural(module, small, test, mnt)
            rows["neural"].append(summarize(scored, 2.0))
        with clock("gated"):  # the threshold is chosen on dev, then applied to test
            dev, dev_first = score_neural(module, small, closedbook.dev, mnt)
            dev_sweep = gate_sweep(dev_first.confidence, dev_first.correct, dev.correct)
            threshold = choose_threshold(dev_sweep, settings.gate_tolerance)["threshold"]
            curves[f"seed {seed}"] = gate_sweep(first.confidence, first.correct, scored.correct)
            gated, passes = score_gated(scored, first, threshold)
            rows["gated"].append({**summarize(gated, passes), "threshold": threshold})
    return json.loads(json.dumps({"part": part, "rows": rows, "lrs": lrs, "time": clock.spent, "curves": curves,
                                  "notes": notes}, default=str))


def assemble_recursion(parts: dict[str, dict], *, seeds: list[int], quick: bool, out_dir: Path,
                       settings: RecursionSettings | None = None) -> dict:
    """The `recursion` section from its two parts: means over seeds, the gap closed, the
    figure, recursion.md and recursion.json."""
    settings = settings or (RecursionSettings.quick() if quick else RecursionSettings.full())
    out_dir = Path(out_dir)
    rows = {v: parts[p]["rows"][v] for p in PARTS for v in PARTS[p]}
    spent = {**parts["small"]["time"], **parts["large"]["time"]}
    lrs = {**parts["small"]["lrs"], **parts["large"]["lrs"]}
    curves = parts["small"]["curves"]
    rows = {v: r for v, r in rows.items() if r}  # the ablation only when asked for
    result = {v: _mean_std(rows[v]) for v in VARIANTS if v in rows}
    result["gated"]["thresholds"] = [r["threshold"] for r in rows["gated"]]
    result["gap_closed"] = _gap(result, "neural")
    result.update(gap_closed_textual=_gap(result, "textual"), seeds=list(seeds), per_seed=rows,
                  time={v: spent[v] for v in VARIANTS if v in spent},
                  settings={**settings.model_dump(), "single_pass_lr": {k: lrs[k] for k in ("small", "large")}},
                  notes=parts["small"]["notes"])
    figure = out_dir / "recursion_gated.png"
    plot_gate_sweep(curves, figure, references={
        "single pass (small)": (1.0, result["single_pass"]["em"]), "neural recursion": (2.0, result["neural"]["em"]),
        "textual recursion": (2.0, result["textual"]["em"]),
        "single pass (large)": (1.0, result["single_pass_large"]["em"])},
        chosen={"forward_passes": result["gated"]["forward_passes"], "em": result["gated"]["em"]},
        title="Gated neural recursion, test split: threshold swept per seed; markers = means over seeds")
    result["figure"], result["markdown"] = str(figure), str(out_dir / "recursion.md")
    atomic_write_text(out_dir / "recursion.md", markdown(result, figure.name))
    atomic_write_json(out_dir / "recursion.json", result)
    return result


def markdown(result: dict, figure: str) -> str:
    names = {"single_pass": "single pass, small", "textual": "textual recursion, small x2",
             "neural": "neural recursion, small x2", "neural_no_lm_pretrain": "neural, no Connector LM pre-training",
             "gated": "gated neural recursion", "single_pass_large": "single pass, large"}
    lines = ["### Recursion: the same frozen LM applied twice", "",
             f"Closed-book QA, test EM (%), mean ± std over seeds {result['seeds']}.", "",
             "| variant | EM | 1-hop | 2-hop | forward passes | MFLOPs / question |", "|---|---|---|---|---|---|"]
    for key, label in names.items():
        if key not in result:
            continue
        r = result[key]
        lines.append(f"| {label} | {r['em']:.1f} ± {r['em_std']:.1f} | {r['em_1hop']:.1f} | {r['em_2hop']:.1f} | "
                     f"{r['forward_passes']:.2f} | {r['flops_per_question'] / 1e6:.1f} |")
    gap = result["gap_closed"]
    lines += ["", "Two passes of the small LM close "
              + (f"**{100 * gap:.0f}%** of the gap to the large LM (neural recursion)" if gap is not None
                 else "an undefined share of the gap (here the large LM does not beat the small one, "
                 "so there is no gap to close)")
              + "; gap closed = (neural − single) / (large − single). "
              "FLOPs ≈ 2 × parameters × tokens per pass.",
              "", f"![gated recursion]({figure})", ""]
    return "\n".join(lines)
