"""Dev-material sweeps of the toy backbones' pre-training: how the embedded default's
corpus and sizes were chosen (docs/backbones.md has the measured tables).

`shoulders experiment backbone-sweep --seed 0 --variant 'small:' --variant
'large:hidden_size=256,lr=3e-3' --variant 'small:corpus.unseen_reading=0'` pre-trains each
variant (into its own cache, so nothing the demo uses is touched) and reports, with no
module training, what the frozen backbone can do:

- knowledge: few-shot closed-book EM on the closed-book *dev* split (1-hop, 2-hop);
- reading: the reading probe on its *dev* draw (held-out invented subjects), with 2 solved
  examples first (as the demo scores it) and with none (k=0);
- copying: the induction ratio (loss on a repeated random sequence's second copy over
  its first; 1 = no copying).

`--prompt-tuned` adds what the demo's recursion table measures on test, on *dev*: the
single-pass prompt tuning recipe (the demo's, its learning rate picked on dev from the same
grid) on the closed-book training split, scored on the dev split (1-hop, 2-hop), module seed
= the world seed. It takes a few minutes per variant.

`--copy-plateau` instead trains toy-small's shape on random token runs said twice, with the
row as context and with one short document as context, and prints the loss curves (how
long the model takes to start copying; docs/backbones.md).

`--step-speed` instead times one pre-training step (batch 8 x 256 tokens, one thread) of
toy-small's shape and four wider or deeper ones in float32 and in bf16 autocast, side by side
in one run, and prints the ratios (what `PretrainConfig.precision="auto"` gains on this CPU);
`shoulders bench precision` times the same step for the presets, next to the re-ranker's.

A variant is `small:` or `large:` (the preset to start from) then `key=value` pairs:
model fields (`hidden_size`, `num_layers`, `intermediate_size`, `lr`, ...), `corpus.X`,
`world.X` and `train.X` fields. Test questions are never scored here.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shoulders.toyworld.pretrain import cpu_has_bf16
from shoulders.train.loop import set_lr, warmup_then
from shoulders.utils.fs import atomic_write_json


def build_variant(text: str, quick: bool):
    """'large:hidden_size=256,corpus.copy_spans=40' -> (ToyworldConfig, ModelConfig)."""
    from shoulders.experiments.sweep import _pairs
    from shoulders.toyworld import ToyworldConfig

    base, _, rest = text.partition(":")
    cfg = ToyworldConfig.quick() if quick else ToyworldConfig.full()
    models = {m.name.removeprefix("toy-"): m for m in cfg.models}
    if base not in models:
        raise ValueError(f"variant {text!r}: start from one of {sorted(models)}")
    model, parts = models[base], {"corpus": {}, "world": {}, "train": {}}
    model_kw = {}
    for key, value in _pairs(text, rest):
        group, dot, field = key.partition(".")
        if dot:
            if group not in parts:
                raise ValueError(f"variant {text!r}: {key!r} must start with corpus., world. or train.")
            parts[group][field] = value
        elif key == "name":
            raise ValueError(f"variant {text!r}: the backbone's name comes from its preset ({base!r})")
        else:
            model_kw[key] = value
    model = _updated(model, {**model_kw, "name": f"toy-{base}"}, text)
    cfg = cfg.model_copy(update={"models": (model,),
                                 **{g: _updated(getattr(cfg, g), kw, text, f"{g}.") for g, kw in parts.items() if kw}})
    return cfg, model


def _updated(config, changes: dict, text: str, prefix: str = ""):
    """`config` with `changes` applied and validated: an unknown field or a bad value is a
    ValueError that names it (`prefix` + field, as the variant spells it)."""
    from pydantic import ValidationError

    from shoulders.errors import format_validation_error

    cls = type(config)
    try:
        return cls.model_validate({**config.model_dump(), **changes})
    except ValidationError as err:
        raise ValueError(f"variant {text!r}: {format_validation_error(err, prefix, cls)}") from None


def evaluate_backbone(path: Path, cfg, seed: int, n_probe: int = 200) -> dict:
    """Knowledge (closed-book dev), reading probe (dev draw) and induction of a backbone."""
    from shoulders.toyworld import build_closedbook, build_world, fewshot_eval
    from shoulders.toyworld.reading import assoc_recall_eval, induction_ratio, reading_probe_eval

    world = build_world(seed, cfg.world)
    cb = build_closedbook(world, cfg.closedbook)
    know = fewshot_eval(path, cb.dev, cb.train)
    read = reading_probe_eval(path, world, n=n_probe, split="dev")
    read0 = reading_probe_eval(path, world, n=n_probe, k=0, split="dev")  # no solved examples first
    stats = json.loads((path / "pretrain.json").read_text())
    return {"params": stats["params"], "final_loss": stats["final_loss"], "pretrain_s": stats["wall_time_s"],
            "tokens": stats["tokens_seen"], "precision": stats.get("precision"),
            "compiled": stats.get("compiled", False),
            "dev_fewshot_1hop": 100 * know.by_group.get("hops=1", float("nan")),
            "dev_fewshot_2hop": 100 * know.by_group.get("hops=2", float("nan")),
            "dev_fewshot_all": 100 * know.em, "dev_reading_em": read.em,
            "dev_reading_by_passages": read.by_passages, "dev_reading_em_k0": read0.em,
            "dev_reading_k0_by_passages": read0.by_passages, "induction_ratio": induction_ratio(path),
            "assoc_recall_em": assoc_recall_eval(path, world)}


def step_speed(shapes: tuple[tuple[int, int, int], ...] = ((128, 4, 512), (128, 8, 512), (192, 6, 768),
                                                           (256, 6, 1024), (256, 8, 1024)),
               steps: int = 6, vocab: int = 3072) -> list[dict]:
    """Median seconds per pre-training step, fp32 and bf16 autocast, for (hidden, layers, ffn)
    shapes (heads of 32 dimensions): the precision bench's pre-training rows
    (`shoulders.bench.precision.pretrain_rows`, the two alternating), the first step a warm-up."""
    from shoulders.bench.precision import pretrain_rows
    from shoulders.toyworld.pretrain import ModelConfig

    models = [ModelConfig(name=f"{h}x{n}x{f}", hidden_size=h, num_layers=n, num_heads=h // 32, intermediate_size=f)
              for h, n, f in shapes]
    rows = pretrain_rows(models, vocab, repeats=steps - 1, warmup=1, progress=lambda _: None)
    return [{"hidden": r["hidden"], "layers": r["layers"], "cpu_has_bf16": cpu_has_bf16(), "params": r["params"],
             "fp32_s": r["step_s"]["fp32"], "bf16_s": r["step_s"]["bf16"], "speedup": r["speedup"]} for r in rows]


def copy_plateau(steps: int = 800, every: int = 100, lr: float = 1e-3, seed: int = 0) -> list[dict]:
    """Toy-small's shape trained from scratch on random copy rows only (`pretrain.copy_rows`),
    with and without document masking: the training loss every `every` steps. ln(vocab)/2
    below the start means the repeats are copied. Shows how long the induction plateau is
    when the context is the whole 256-token row versus one short document."""
    import torch
    from transformers import LlamaForCausalLM

    from shoulders.toyworld import TOY_SMALL
    from shoulders.toyworld.pretrain import copy_rows, train_step
    from shoulders.toyworld.tokenizer import train_tokenizer

    tok = train_tokenizer([f"w{i} x{i * 7} y{i * 13}" for i in range(4000)])  # any vocabulary of ~3k tokens
    rows = []
    for masked in (False, True):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(TOY_SMALL.hf_config(tok))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        data = copy_rows(tok, steps * 8, 256, torch.Generator().manual_seed(seed))
        warmup = warmup_then("constant", 50, steps)
        for step in range(steps):
            set_lr(opt, lr * warmup(step))
            loss, _ = train_step(model, opt, data[step * 8:(step + 1) * 8], tok, doc_mask=masked,
                                 bf16=cpu_has_bf16(), grad_clip=1.0)
            if (step + 1) % every == 0:
                rows.append({"doc_mask": masked, "step": step + 1, "loss": round(loss, 3)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def prompt_tuned_dev(path: Path, cfg, seed: int, run_dir: Path, quick: bool = False) -> dict:
    """The demo's single pass (prompt tuning, lr from its grid by dev EM) trained on the
    closed-book train split of `cfg`'s world and scored on its dev split."""
    from shoulders.backbone import FrozenLM
    from shoulders.experiments.recursion import RecursionSettings, _single_pass
    from shoulders.recursion.evaluate import score_single, summarize
    from shoulders.toyworld import build_closedbook, build_world

    settings = RecursionSettings.quick() if quick else RecursionSettings.full()
    closedbook = build_closedbook(build_world(seed, cfg.world), cfg.closedbook)
    lm = FrozenLM.from_pretrained(str(path), dtype="float32", device="cpu")
    module, _, lr = _single_pass(lm, closedbook, settings, seed, run_dir, None, progress=False)
    scored = summarize(score_single(module, lm, closedbook.dev, settings.max_new_tokens)[0], 1.0)
    return {"dev_prompt_tuned_em": scored["em"], "dev_prompt_tuned_1hop": scored["em_1hop"],
            "dev_prompt_tuned_2hop": scored["em_2hop"], "dev_prompt_tuned_lr": lr}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shoulders experiment backbone-sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], help="preset:key=value,... (see above)")
    ap.add_argument("--step-speed", action="store_true", help="time fp32 vs bf16 pre-training steps instead")
    ap.add_argument("--copy-plateau", action="store_true",
                    help="train on random copy rows with and without document masking instead (loss curve)")
    ap.add_argument("--prompt-tuned", action="store_true",
                    help="also train the demo's single-pass prompt tuning on each variant and score it on dev")
    ap.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    ap.add_argument("--quick", action="store_true", help="the quick world and its shorter pre-training")
    ap.add_argument("--cache", default="runs/backbone_sweep", help="backbone cache (default: runs/backbone_sweep)")
    ap.add_argument("--out", default=None, help="JSON of all rows (default: <cache>/results-seed<S>.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = ap.parse_args(argv)

    import torch

    from shoulders.toyworld import ensure_backbones

    torch.set_num_threads(args.threads)
    if args.step_speed:
        for row in step_speed():
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        return 0
    if args.copy_plateau:
        copy_plateau()
        return 0
    if not args.variant:
        ap.error("give at least one --variant (or --step-speed or --copy-plateau)")
    out = Path(args.out or Path(args.cache) / f"results-seed{args.seed}{'-quick' if args.quick else ''}.json")
    try:  # every variant checked before the first one pre-trains: a typo fails now, not hours later
        variants = [(text, *build_variant(text, args.quick)) for text in args.variant]
    except ValueError as err:
        ap.error(str(err))
    rows = json.loads(out.read_text()) if out.exists() else {}
    for text, cfg, model in variants:
        start = time.perf_counter()
        path = ensure_backbones(args.seed, cache_dir=args.cache, names=(model.name,), config=cfg,
                                threads=args.threads)[model.name]
        row = evaluate_backbone(Path(path), cfg, args.seed)
        if args.prompt_tuned:
            run_dir = Path(args.cache) / "prompt_tuned" / f"seed{args.seed}" / Path(path).parent.name / model.name
            row.update(prompt_tuned_dev(Path(path), cfg, args.seed, run_dir, args.quick))
        row["wall_s"] = round(time.perf_counter() - start, 1)
        rows[text] = row
        atomic_write_json(out, rows)
        print(json.dumps({text: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}}),
              flush=True)
    return 0

