"""Train any module on a frozen backbone: one loop for every module type.

accelerate underneath (device placement, data parallelism, gradient sync of the module
only), with the frozen backbone optionally sharded across the processes (`backbone.fsdp`,
train/fsdp.py), or no backbone for a module that reads none (the re-ranker); `fit` runs
first the training stages the module's config names (`module.stages()`: the Connector's
pre-training; not again on resume), then a seeded multi-task mixture; AdamW with warm-up and
decay (the step and the schedules: train/loop.py); periodic dev evaluation with
best-module saving; exact resume from the newest checkpoint.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from shoulders.backbone.frozen import FrozenLM
from shoulders.data.examples import Example, Task
from shoulders.data.mixture import MixtureSampler
from shoulders.data.tasks import load_task
from shoulders.modules.io import save_module
from shoulders.modules.registry import module_class
from shoulders.modules.stages import mark_done, run_stages
from shoulders.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from shoulders.train.config import ConfigError, TrainConfig
from shoulders.train.evaluate import evaluate
from shoulders.train.loop import lr_scheduler, steps, update
from shoulders.train.loop import warmup_then as lr_lambda  # noqa: F401  (its name before train/loop.py)
from shoulders.utils.fs import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    best_dir: Path | None
    final_dir: Path | None  # None with train.save_final off
    best_score: float | None
    history: dict = field(default_factory=dict)


class Trainer:
    """Holds the run's pieces; `fit()` trains. Tasks may be passed in memory (the demo does)."""

    def __init__(self, config: TrainConfig, *, backbone: FrozenLM | None = None, tasks: Sequence[Task] | None = None,
                 module=None, progress: bool = True, accelerator=None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        self.config = config
        bc = config.backbone
        run_device = bc.device if bc else (config.device or "auto")
        self.acc = accelerator or Accelerator(cpu=run_device == "cpu")
        if self.acc.distributed_type == DistributedType.FSDP:
            raise ConfigError("an accelerate FSDP config shards the trained module, not the backbone: use a "
                              "multi-GPU (DDP) accelerate config and set backbone.fsdp: true")
        self.progress = progress and self.acc.is_main_process
        torch.manual_seed(config.train.seed)
        cls = type(module) if module is not None else module_class(config.method)
        shard = False
        if cls.capabilities.backbone_free:  # e.g. the re-ranker: its own encoder, no frozen LM to load
            if bc is not None or backbone is not None:
                log.warning("%s reads no backbone: the backbone given is not loaded or used", config.method)
            backbone, device = None, self.acc.device if run_device == "auto" else run_device
        else:
            device = self.acc.device if bc.device == "auto" else bc.device
            shard = bc.fsdp and torch.distributed.is_available() and torch.distributed.is_initialized()
            if bc.fsdp and not shard:
                log.warning("backbone.fsdp: a single process, nothing to shard: the whole backbone is loaded")
        if shard:
            from shoulders.train import fsdp

            if backbone is not None:
                backbone = fsdp.shard_backbone(backbone, device, trust_remote_code=bc.trust_remote_code)
            else:
                backbone = fsdp.load_sharded(bc.name_or_path, device=device, dtype=bc.dtype,
                                             trust_remote_code=bc.trust_remote_code)
        elif backbone is None and not cls.capabilities.backbone_free:
            backbone = FrozenLM.from_pretrained(
                bc.name_or_path, dtype=bc.dtype, device=None if bc.device_map else device,
                device_map=bc.device_map, trust_remote_code=bc.trust_remote_code,
            )
        self.backbone = backbone
        self.sharded = bool(shard)  # every process then runs every forward (each one gathers weights)
        if backbone is not None and bc.gradient_checkpointing:
            from shoulders.backbone.checkpointing import enable_gradient_checkpointing

            enable_gradient_checkpointing(backbone)
        self.tasks = list(tasks) if tasks is not None else [load_task(t) for t in config.tasks]
        if not self.tasks:
            raise ConfigError("no tasks: list at least one under `tasks:` with a `train` file")
        missing = [t.name for t in self.tasks if not t.train]
        if missing:
            raise ConfigError(f"tasks without training examples (no `train` file): {missing}")
        self.module = module or cls.build(config.module_config(), backbone)
        self.module.to(backbone.device if backbone is not None else device)
        self.stage_stats: dict = {}  # the stages `fit` runs first (Connector pre-training), by name
        self.shards = None
        if self.sharded:
            from shoulders.train.fsdp import shard_sizes

            sizes, total = shard_sizes(backbone)
            self.shards = {"processes": len(sizes), "backbone_parameters": total, "local_parameters": sizes}
            log.info("backbone sharded over %d processes: local shards hold %s of %d parameters", len(sizes),
                     ", ".join(f"{n} ({n / total:.1%})" for n in sizes), total)
        self.out = Path(config.output_dir)
        if (self.out / "module.json").is_file():  # checkpoints/, best/, final/ would land inside a saved module
            raise ConfigError(f"{self.out}: output_dir is a saved module directory (it holds module.json); give the "
                              "run a directory of its own")
        self._check_setup()

    def _check_setup(self) -> None:
        """Run one training example through the module (no grad, eval mode) before step 0,
        so a prefix that overflows the context window or a broken example fails now, with
        its message, not after an hour of training. It leaves torch's RNG as it found it (a
        re-ranker's loss samples negatives), so checking changes nothing training then draws."""
        example = self.tasks[0].train[0]
        was_training = self.module.training
        self.module.eval()
        dev = torch.device(self.acc.device)
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            self.module.loss(self.backbone, [example])
        self.module.train(was_training)

    # ------------------------------------------------------------------ pieces
    def _batch(self, sampler: MixtureSampler, by_name: dict[str, Task]) -> list[Example]:
        picks = sampler.next_batch(self.config.train.batch_size)
        mine = picks[self.acc.process_index :: self.acc.num_processes]
        return [by_name[name].train[i] for name, i in mine]

    def _evaluate(self) -> dict:
        t = self.config.train
        return evaluate(self.acc.unwrap_model(self.model), self.backbone, self.tasks, split="dev",
                        max_examples=t.eval_max_examples, batch_size=t.eval_batch_size,
                        max_new_tokens=t.max_new_tokens)

    def _write_outputs(self, history: dict) -> None:
        atomic_write_json(self.out / "history.json", history)
        from shoulders.train.plots import plot_history

        on = f" on {self.backbone.name_or_path}" if self.backbone is not None else ""
        plot_history(history, self.out / "training_curve.png", title=f"{self.config.method}{on}")

    # -------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        cfg, t = self.config, self.config.train
        ckpt_root = self.out / "checkpoints"
        existing = list_checkpoints(ckpt_root) if cfg.resume else []
        if existing:  # a checkpoint's weights are its stages' result; its history keeps their stats
            mark_done(self.module)
        # Stages the module's config names (Connector pre-training) first, before the optimizer,
        # accelerate and the sampler: training starts from what they learned.
        self.stage_stats = run_stages(self.module, self.backbone, progress=self.progress)
        groups = [g for g in self.module.param_groups(cfg.optim.lr) if g["params"]]
        if not groups:
            raise ValueError(f"{cfg.method}: the module has no trainable parameters")
        params = [p for g in groups for p in g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                                      weight_decay=cfg.optim.weight_decay)
        scheduler = lr_scheduler(optimizer, cfg.optim.schedule, cfg.optim.warmup_steps, t.steps)
        self.model, optimizer = self.acc.prepare(self.module, optimizer)
        sampler = MixtureSampler({x.name: len(x.train) for x in self.tasks}, kind=cfg.mixture.kind,
                                 cap=cfg.mixture.cap, temperature=cfg.mixture.temperature, seed=t.seed,
                                 shuffle=cfg.mixture.shuffle)
        by_name = {x.name: x for x in self.tasks}
        history: dict = {"train": [], "eval": [], "config": cfg.model_dump(mode="json")}
        if self.stage_stats:
            history["stages"] = self.stage_stats
        best_score, start = None, 0
        if existing:
            try:
                state = load_checkpoint(existing[-1], self.acc.unwrap_model(self.model), optimizer, scheduler,
                                        backbone=self.backbone)
                sampler.load_state_dict(state["sampler"])
            except ValueError as e:  # ShouldersError too: a checkpoint this config cannot continue
                raise ConfigError(
                    f"{existing[-1]}: cannot resume from this checkpoint: {e}; use a new output_dir "
                    "or set resume: false to start over"
                ) from None
            history, best_score, start = state["history"], state["best_score"], state["step"]
            if start >= t.steps:  # a re-run of a finished run: say so, or it looks like training did nothing
                log.warning("%s: this run already reached step %d of train.steps=%d: nothing to train (raise "
                            "train.steps to go on; resume: false or another output_dir starts over)",
                            existing[-1], start, t.steps)
            else:
                log.info("resumed from %s (step %d of %d)", existing[-1], start, t.steps)
        history.pop("fsdp", None)  # this run's split, not the one a resumed checkpoint recorded
        if self.shards:
            history["fsdp"] = self.shards
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "train_config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

        def checkpoint(step: int) -> None:
            if self.acc.is_main_process:
                save_checkpoint(ckpt_root, step, self.acc.unwrap_model(self.model), self.backbone, optimizer, scheduler,
                                {"sampler": sampler.state_dict(), "history": history, "best_score": best_score},
                                keep=t.keep_checkpoints)
            self.acc.wait_for_everyone()

        self.model.train()
        bar = steps(t.steps, f"train {cfg.method}", self.progress, start=start, leave=True)
        started = time.perf_counter()
        for step in bar:
            total = 0.0
            for _ in range(t.grad_accum):
                loss = self.model(self.backbone, self._batch(sampler, by_name)) / t.grad_accum
                self.acc.backward(loss)
                total += loss.item()
            update(optimizer, scheduler, params=params, max_grad_norm=cfg.optim.max_grad_norm,
                   clip=self.acc.clip_grad_norm_)
            done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                if self.acc.num_processes > 1:  # the loss DDP optimises: the mean of the processes' losses
                    total = self.acc.reduce(torch.tensor(total, device=self.acc.device), "mean").item()
                history["train"].append({"step": done, "loss": total, "lr": scheduler.get_last_lr()[0],
                                         "elapsed_s": time.perf_counter() - started})
                bar.set_postfix(loss=f"{total:.3f}")
            evaluating = (t.eval_every and done % t.eval_every == 0) or done == t.steps
            if evaluating and any(x.dev for x in self.tasks):
                if self.acc.is_main_process or self.sharded:
                    result = self._evaluate()
                if self.acc.is_main_process:
                    history["eval"].append({"step": done, **result})
                    bar.set_postfix(loss=f"{total:.3f}", dev=f"{result['average']:.1f}")
                    if best_score is None or result["average"] > best_score:
                        best_score = result["average"]
                        save_module(self.acc.unwrap_model(self.model), self.out / "best", self.backbone,
                                    extra={"step": done, "dev": result})
                    self._write_outputs(history)
                self.model.train()
            wanted = evaluating or (t.checkpoint_every and done % t.checkpoint_every == 0)
            if wanted and (t.save_final or done < t.steps):  # save_final off: nothing of the end on disk
                checkpoint(done)
        bar.close()
        final = self.out / "final" if t.save_final else None
        if self.acc.is_main_process:
            if final is not None:
                save_module(self.acc.unwrap_model(self.model), final, self.backbone, extra={"step": t.steps})
            self._write_outputs(history)
        self.acc.wait_for_everyone()
        best = self.out / "best"
        return TrainResult(self.out, best if best.exists() else None, final, best_score, history)


def train(config: TrainConfig, **kwargs) -> TrainResult:
    return Trainer(config, **kwargs).fit()
