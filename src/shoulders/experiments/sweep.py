"""Dev-split sweeps for the multi-task experiment: how `METHODS` was chosen.

`shoulders experiment sweep --variant 'idpt:lr=3e-3' --variant 'idpt:prompt_length=32'`
trains each variant on the toyworld mixture with the demo's full budget and reports
its best dev average (the Trainer's model-selection score). The test split is never
evaluated here, so choosing hyper-parameters from this output cannot leak test data.

A variant is `method:key=value,key=value`; `lr` sets the learning rate, any other key a
field of the method's module config (e.g. `prompt_length`, `encoder_prompt_length`,
`fixed_prompt_length`, `num_virtual_tokens`). `--tasks a,b` trains and scores on that
sub-mixture only, and each result lists its per-task dev scores at the best step.

`--recursion` sweeps recursion instead: the single pass is trained once (as in the demo:
lr from the grid, best dev step), then each variant `neural:key=value,...` (or
`textual:...`) trains on top of it and reports dev EM (all, 1-hop, 2-hop). Keys are
`RecursionSettings` fields (`steps`, `neural_lr`, `pretrain_steps`, `cross_fit`, ...) or
fields of its `neural` config (`connect`, `pass1_loss_weight`, `connector.layers`, ...).
A `single:...` variant trains a single pass alone (`lr_grid`, `single_steps`,
`prompt_tokens`, ...) on `backbone=toy-small` (the default) or `backbone=toy-large`.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shoulders.utils.fs import atomic_write_json


def parse_variant(text: str) -> tuple[str, dict, dict]:
    """'idpt:lr=3e-3,prompt_length=32' -> ('idpt', {'lr': 0.003}, {'prompt_length': 32})."""
    from shoulders.experiments.multitask import METHODS

    method, _, rest = text.partition(":")
    if method not in METHODS:
        raise ValueError(f"variant {text!r}: unknown method {method!r}; expected one of {list(METHODS)}")
    top, module = {}, {}
    for key, parsed in _pairs(text, rest):
        (top if key == "lr" else module)[key] = parsed
    return method, top, module


def _pairs(text: str, rest: str):
    """(key, value) of each `key=value` in `rest`; values are JSON, numbers or strings."""
    for item in filter(None, _split_top(rest)):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"variant {text!r}: {item!r} is not key=value")
        yield key, json.loads(value) if value[:1] in "[{\"" else _number(value)


def _split_top(rest: str) -> list[str]:
    """Split on commas outside brackets, so a JSON list value (`x=[2,3]`) stays whole."""
    items, depth, cur = [], 0, ""
    for ch in rest:
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return items + [cur]


def _number(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def run_sweep(variants: list[str], *, seed: int = 0, world_seed: int = 0, out: Path, steps: int | None = None,
              progress: bool = True, task_names: list[str] | None = None) -> list[dict]:
    """Train each variant once (module seed `seed`) and return its best dev average.

    `task_names` trains and scores on a sub-mixture (a diagnosis: can a method learn
    these tasks at all when they do not share the budget with the rest?).
    """
    import copy

    import torch

    from shoulders.backbone import FrozenLM
    from shoulders.experiments.demo import THREADS
    from shoulders.experiments.multitask import FULL, METHODS, run_one
    from shoulders.prompts.encoders import DEFAULT_ENCODER, FrozenEncoder
    from shoulders.toyworld import ensure_backbones, load_world_data

    torch.set_num_threads(THREADS)
    budget = type(FULL).model_validate({**FULL.model_dump(), "steps": steps}) if steps else FULL
    small = str(ensure_backbones(world_seed, names=("toy-small",), threads=THREADS)["toy-small"])
    tasks = select_tasks(load_world_data(world_seed).tasks, task_names)
    lm = FrozenLM.from_pretrained(small, dtype="float32", device="auto")
    results = []
    for text in variants:
        method, top, module = parse_variant(text)
        spec = copy.deepcopy(METHODS[method])
        spec.update(top)
        spec["module"].update(module)
        encoder = None
        if method == "idpt":
            encoder = FrozenEncoder.from_pretrained(DEFAULT_ENCODER, device=lm.device)
            if not spec["module"].get("encoder_prompt_length", 0):
                encoder.enable_cache()
        start = time.perf_counter()
        run = run_one(method, spec, tasks, lm, backbone_path=small, seed=seed, budget=budget,
                      out=out / "runs" / f"{len(results):02d}-{method}", encoder=encoder,
                      encoder_path=DEFAULT_ENCODER if encoder is not None else None, progress=progress,
                      evaluate_test=False)
        best = max(run["dev_curve"], key=lambda p: p[1])
        results.append({"variant": text, "method": method, "spec": spec, "best_dev": best[1], "best_step": best[0],
                        "best_tasks": run["best_tasks"], "dev_curve": run["dev_curve"], "trainable_params": run["trainable_params"],
                        "wall_s": time.perf_counter() - start})
        print(f"{text:60s} best dev {best[1]:.1f} at step {best[0]}", flush=True)
        atomic_write_json(out / "sweep.json", {"seed": seed, "world_seed": world_seed, "budget": budget.model_dump(),
                                              "tasks": [t.name for t in tasks], "results": results})
    return results


def select_tasks(tasks: list, names: list[str] | None) -> list:
    """The tasks called `names` (all of them when None), refusing an unknown name."""
    if not names:
        return list(tasks)
    known = {t.name: t for t in tasks}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--tasks: unknown task(s) {unknown}; the mixture has {sorted(known)}")
    return [known[n] for n in names]


BACKBONES = ("toy-small", "toy-large")


def parse_recursion_variant(text: str) -> tuple[dict, dict]:
    """'neural:steps=400,connector.layers=2' -> ({'steps': 400}, {'connector': {'layers': 2}})."""
    from shoulders.experiments.recursion import RecursionSettings

    kind, _, rest = text.partition(":")
    if kind not in ("neural", "textual", "single"):
        raise ValueError(f"recursion variant {text!r}: expected 'neural:key=value,...', 'textual:key=value,...' "
                         "or 'single:key=value,...'")
    names = set(RecursionSettings.model_fields)
    top, neural = {}, {}
    for key, value in _pairs(text, rest):
        if key == "backbone" and kind == "single":
            if value not in BACKBONES:
                raise ValueError(f"recursion variant {text!r}: backbone={value!r}; expected one of {BACKBONES}")
            top[key] = value
        elif kind == "single" and key not in names:
            raise ValueError(f"recursion variant {text!r}: {key!r} is not a RecursionSettings field")
        elif key in names:
            top[key] = value
        else:
            head, _, sub = key.partition(".")
            (neural.setdefault(head, {}).__setitem__(sub, value) if sub else neural.__setitem__(head, value))
    return top, neural


def run_recursion_sweep(variants: list[str], *, seed: int = 0, world_seed: int = 0, out: Path,
                        progress: bool = True) -> list[dict]:
    """Recursion variants on top of one single-pass module (trained when a variant needs
    it), or single passes alone; dev EM only."""
    import copy

    import torch

    from shoulders.backbone import FrozenLM
    from shoulders.experiments.demo import THREADS
    from shoulders.experiments.recursion import RecursionSettings, _neural, _single_pass, _textual
    from shoulders.recursion.evaluate import score_neural, score_single, summarize
    from shoulders.toyworld import ensure_backbones, load_world_data

    torch.set_num_threads(THREADS)
    base = RecursionSettings.full()
    data = load_world_data(world_seed)
    cb, lms, rows, single = data.closedbook, {}, [], {}

    def lm(name: str) -> FrozenLM:
        if name not in lms:
            path = str(ensure_backbones(world_seed, names=(name,), threads=THREADS)[name])
            lms[name] = FrozenLM.from_pretrained(path, dtype="float32", device="cpu")
        return lms[name]

    def record(text: str, row: dict) -> None:
        rows.append(row)
        cands = (f"; pass-1 top candidate right: train {row['candidates_top_train']:.1f}, dev {row['candidates_top']:.1f}"
                 if "candidates_top" in row else "")
        print(f"{text:60s} dev EM {row['em']:.1f} (1-hop {row['em_1hop']:.1f}, 2-hop {row['em_2hop']:.1f}){cands}",
              flush=True)
        atomic_write_json(out / "recursion_sweep.json", {"seed": seed, "world_seed": world_seed, "results": rows})

    def single_pass(name: str, settings, run_dir: Path, label: str) -> tuple:
        start = time.perf_counter()
        module, module_dir, lr = _single_pass(lm(name), cb, settings, seed, run_dir, None, progress)
        scores = summarize(score_single(module, lm(name), cb.dev, settings.max_new_tokens)[0], 1.0)
        record(label, {"variant": label, "backbone": name, "lr": lr, **scores, "wall_s": time.perf_counter() - start})
        return module_dir, lr

    for text in variants:
        top, neural = parse_recursion_variant(text)
        merged = copy.deepcopy(base.neural)
        for k, v in neural.items():
            merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) else v
        name = top.pop("backbone", "toy-small")
        settings = type(base).model_validate({**base.model_dump(), **top, "neural": merged})
        run_dir = out / "runs" / f"{len(rows):02d}"
        if text.startswith("single"):
            single_pass(name, settings, run_dir, text)
            continue
        if "base" not in single:  # what every recursion variant starts from, as in the demo
            single["base"] = single_pass("toy-small", base, out / "single", "single_pass")
        (single_dir, lr), small, start = single["base"], lm("toy-small"), time.perf_counter()
        if text.startswith("textual"):
            scores = _textual(small, cb, cb.dev, settings, seed, single_dir, run_dir, progress, lr)
        else:
            module = _neural(small, cb, settings, seed, single_dir, run_dir, data.corpus, True, progress, {})
            scores = summarize(score_neural(module, small, cb.dev, settings.max_new_tokens)[0], 2.0)
        record(text, {"variant": text, "settings": {**top, "neural": merged}, **scores,
                      "wall_s": time.perf_counter() - start})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shoulders experiment sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, help="method:key=value,... (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="module seed")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="override the full budget's steps")
    ap.add_argument("--tasks", default=None, help="comma-separated task names: sweep on this sub-mixture only")
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--recursion", action="store_true", help="sweep neural-recursion variants (dev EM)")
    args = ap.parse_args(argv)
    for v in args.variant:  # fail on a typo before any training
        parse_recursion_variant(v) if args.recursion else parse_variant(v)
    if args.recursion:
        run_recursion_sweep(args.variant, seed=args.seed, world_seed=args.world_seed, out=Path(args.out))
        return 0
    run_sweep(args.variant, seed=args.seed, world_seed=args.world_seed, out=Path(args.out), steps=args.steps,
              task_names=args.tasks.split(",") if args.tasks else None)
    return 0
