"""Typed training configuration, read from YAML with every default visible here.

An unknown key or a wrong type is an error that names the key (pydantic, extra=forbid).
`--set a.b=value` overrides are parsed as YAML scalars and applied before validation.
"""
from __future__ import annotations

from shoulders.errors import ShouldersError, format_validation_error

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from shoulders.modules.base import StrictModel


class ConfigError(ShouldersError):
    """A config that cannot be used; the message names the file and the key."""


class BackboneConfig(StrictModel):
    name_or_path: str = Field(..., description="hub id or local directory of a transformers causal LM")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16 | auto")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    device_map: str | None = Field(None, description="'auto' shards the backbone over visible devices")
    trust_remote_code: bool = Field(False, description="run model code from the hub; off unless you trust it")
    gradient_checkpointing: bool = Field(False, description="recompute backbone activations in backward to save memory")
    fsdp: bool = Field(False, description="shard the frozen weights across processes (FSDP2): each holds 1/N, the "
                                          "module stays whole on each; needs torchrun or accelerate launch (one "
                                          "process loads the whole backbone, with a warning)")

    @model_validator(mode="after")
    def _one_way_to_split(self):
        if self.fsdp and self.device_map is not None:
            raise ValueError("backbone.fsdp and backbone.device_map both split the backbone: set one of them")
        return self


class TaskConfig(StrictModel):
    name: str
    train: str | None = Field(None, description="training file (JSONL, CSV/TSV, JSON or a datasets directory)")
    dev: str | None = Field(None, description="dev file, evaluated during training")
    test: str | None = None
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "datasets"] = "auto"
    metric: Literal["exact_match", "f1", "accuracy", "rouge_l"] = "exact_match"
    cluster: str = ""
    input_field: str | None = Field(None, description="default: input, or P3's inputs_pretokenized")
    target_field: str | None = Field(None, description="default: target, or P3's targets_pretokenized")
    choices: list[str] | None = Field(None, description="fixed label words for rank classification")
    label_names: list[str] | None = Field(None, description="maps integer labels to words (0 -> first)")


class MixtureConfig(StrictModel):
    kind: Literal["proportional", "temperature", "uniform"] = "proportional"
    cap: int | None = Field(None, gt=0, description="examples-proportional size limit K (T5)")
    temperature: float = Field(1.0, gt=0, description="temperature mixing: rate ~ min(n, K)^(1/T)")
    shuffle: Literal["numpy", "python"] = Field(
        "numpy", description="how a task's examples are permuted each epoch. numpy: a generator seeded by (seed, "
        "task, epoch); python: one random.Random(seed) per task drawing random.sample permutations in turn (the "
        "order the re-ranker trained in before it moved into the Trainer: its numbers do not move)")


class OptimConfig(StrictModel):
    lr: float = Field(3e-2, gt=0, description="peak learning rate (prompts like large ones)")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "linear", "cosine", "warmup_times_linear"] = Field(
        "linear", description="after warm-up: constant, linear to 0 or cosine to 0 (warmup_steps then the decay); "
        "warmup_times_linear: a warm-up factor times a linear decay that starts at step 0 (the re-ranker's)")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global grad norm; null = off")


class LoopConfig(StrictModel):
    steps: int = Field(200, gt=0, description="optimizer steps")
    batch_size: int = Field(8, gt=0, description="global examples per micro-batch")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    seed: int = 0
    eval_every: int = Field(50, ge=0, description="steps between dev evaluations; 0 = only at the end")
    eval_max_examples: int | None = Field(200, gt=0, description="dev examples per task per evaluation")
    eval_batch_size: int = Field(32, gt=0)
    max_new_tokens: int = Field(24, gt=0, description="generation budget when evaluating")
    log_every: int = Field(10, gt=0)
    checkpoint_every: int = Field(0, ge=0, description="steps between resumable checkpoints; 0 = at evals only")
    keep_checkpoints: int = Field(2, gt=0)
    save_final: bool = Field(True, description="write the trained module to output_dir/final, and the last step's "
                             "checkpoint, at the end (off when the caller keeps the module in memory: a "
                             "re-ranker's encoder is 90 MB)")


class TrainConfig(StrictModel):
    method: str = Field(..., description="module type: prompt_tuning | idpt | prefix_tuning | reranker | reader | textual_recursion | neural_recursion | finetune")
    backbone: BackboneConfig | None = Field(None, description="the frozen LM; required unless the method reads "
                                            "none (reranker)")
    device: str | None = Field(None, description="device of a run with no backbone (reranker): auto | cpu | cuda | "
                               "cuda:N (None = auto); with a backbone, backbone.device decides")
    module: dict[str, Any] = Field(default_factory=dict, description="the method's own config (validated by it)")
    tasks: list[TaskConfig] = Field(default_factory=list)
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: LoopConfig = Field(default_factory=LoopConfig)
    output_dir: str = Field("runs/default", description="checkpoints, best/ and final/ modules, history, plot")
    resume: bool = Field(True, description="continue from the newest checkpoint in output_dir if there is one")

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks):
        names = [t.name for t in tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task names must be unique; repeated: {dup}")
        return tasks

    @model_validator(mode="after")
    def _check_method(self):
        from shoulders.modules.registry import MODULE_TYPES

        if self.method not in MODULE_TYPES:
            raise ValueError(f"unknown method {self.method!r}: expected one of {sorted(MODULE_TYPES)}")
        from shoulders.modules.registry import module_class

        if self.backbone is None and not module_class(self.method).capabilities.backbone_free:
            raise ValueError(f"missing key 'backbone': method {self.method} trains on a frozen LM (give "
                             "backbone.name_or_path: a hub id or a local directory)")
        if self.device is not None and self.backbone is not None:
            raise ValueError("device: for a run with no backbone; with a backbone, set backbone.device")
        if self.method == "finetune" and self.backbone and self.backbone.fsdp:
            raise ValueError("method finetune trains the backbone's own weights; backbone.fsdp shards a frozen "
                             "backbone only")
        return self

    def module_config(self):
        """The method's config object, with errors named as `module.<key>`."""
        from shoulders.modules.registry import module_class

        cls = module_class(self.method).config_class
        try:
            return cls.model_validate(self.module)
        except ValidationError as e:
            raise ConfigError(_format_errors(e, prefix="module.", model=cls)) from None


def _format_errors(err: ValidationError, prefix: str = "", model=None) -> str:
    return format_validation_error(err, prefix, model)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    out = []
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. train.steps=100)")
        try:
            out.append((key.strip(), yaml.safe_load(raw)))
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({_yaml_problem(e)})") from None
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> TrainConfig:
    """Read a YAML config (or a dict), apply `key=value` overrides and validate."""
    where = str(path) if path else "<config>"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        raw = path.read_bytes()
        try:
            data = yaml.safe_load(raw.decode("utf-8-sig"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys (method, backbone, ...) at the top level, "
                          f"got {type(data).__name__}")
    data = dict(data)
    for key, value in parse_overrides(overrides):
        _set_dotted(data, key, value)
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_format_errors(e, model=TrainConfig)}") from None
    try:
        cfg.module_config()  # validate the method's own section now, not at step 0
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if path is not None:
        _resolve_task_files(cfg, path.parent)
    return cfg


def _resolve_task_files(cfg: TrainConfig, base: Path) -> None:
    """A relative task file is looked up next to the config file first, as in most tools'
    configs, so a config runs from any directory; one that is not there is kept as it is
    (from the working directory), so configs written for the repository root still run.
    output_dir and the module's own paths stay relative to the working directory."""
    for t in cfg.tasks:
        for split in ("train", "dev", "test"):
            value = getattr(t, split)
            if value and not Path(value).is_absolute() and (base / value).exists():
                setattr(t, split, str(base / value))
