"""One call for everything the embedded default needs: data and pre-trained backbones.

`ToyworldConfig` gathers every knob with its default visible; `full()` is the demo,
`quick()` the smoke-test size (its own smaller world and shorter pre-training, so
quick and full never share backbones). Data is regenerated in about a second from the
seed and kept in memory; backbones are cached on disk (see `pretrain.train_cached`).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, model_validator

from shoulders.data.examples import Task
from shoulders.toyworld.closedbook import ClosedBookConfig, build_closedbook
from shoulders.toyworld.corpus import CorpusConfig, build_corpus
from shoulders.toyworld.odqa import OdqaConfig, OdqaSet, build_odqa
from shoulders.toyworld.pretrain import TOY_LARGE, TOY_SMALL, ModelConfig, PretrainConfig, train_cached
from shoulders.toyworld.tasks import TaskSetConfig, build_tasks
from shoulders.toyworld.tokenizer import TokenizerConfig, train_tokenizer
from shoulders.toyworld.world import World, WorldConfig, build_world
from shoulders.utils.strict_model import StrictModel


# What each part of a backbone's cache key is (named in its key.json and cache-miss message).
KEY_NAMES = ("world_seed", "world", "corpus", "corpus_text_sha256", "tokenizer", "tokenizer_passes")


class ToyworldConfig(StrictModel):
    """Every knob of the toy world, its datasets and its backbones, with its default visible."""

    world: WorldConfig = Field(default_factory=WorldConfig, description="entity counts")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="pre-training text")
    tasks: TaskSetConfig = Field(default_factory=TaskSetConfig, description="the P3-style suite")
    odqa: OdqaConfig = Field(default_factory=OdqaConfig, description="passages + open-domain questions")
    closedbook: ClosedBookConfig = Field(default_factory=ClosedBookConfig, description="1-hop and 2-hop questions")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="the byte-level BPE")
    train: PretrainConfig = Field(default_factory=PretrainConfig, description="pre-training loop (shared by all "
                                  "models)")
    models: tuple[ModelConfig, ...] = Field((TOY_SMALL, TOY_LARGE), min_length=1, description="the backbones, "
                                            "each pre-trained on the same corpus and tokenizer")
    tokenizer_passes: int = Field(3, ge=1, description="corpus passes the BPE is trained on (more adds nothing)")

    @model_validator(mode="after")
    def _distinct_names(self):
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: backbone names must be distinct, got {names}")
        return self

    @classmethod
    def full(cls) -> "ToyworldConfig":
        return cls()

    @classmethod
    def quick(cls) -> "ToyworldConfig":
        """Smaller world, fewer passes: both backbones in about two minutes on 2 cores. toy-large
        keeps one epoch here: its second (the full demo's) took the quick demo from 3.4 to
        6.8 minutes, past the 5-minute budget of a smoke run."""
        return cls(world=WorldConfig.quick(), corpus=CorpusConfig.quick(), tasks=TaskSetConfig.quick(),
                   train=PretrainConfig.quick(), models=(TOY_SMALL, TOY_LARGE.model_copy(update={"epochs": None})))


def resolve(quick: bool = False, config: ToyworldConfig | None = None) -> ToyworldConfig:
    return config or (ToyworldConfig.quick() if quick else ToyworldConfig.full())


@dataclass
class WorldData:
    """The world and every dataset rendered from it."""

    seed: int
    world: World
    corpus: list[str]
    tasks: list[Task]
    odqa: OdqaSet
    closedbook: Task

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"no task {name!r}: have {[t.name for t in self.tasks]}")

    def save(self, out_dir: str | Path) -> Path:
        """Write everything as inspectable JSON/JSONL files (for people and other tools)."""
        out = Path(out_dir)
        (out / "tasks").mkdir(parents=True, exist_ok=True)
        (out / "world.json").write_text(json.dumps(self.world.to_dict(), indent=1))
        _jsonl(out / "corpus.jsonl", ({"text": d} for d in self.corpus))
        for t in [*self.tasks, self.closedbook]:
            _jsonl(out / "tasks" / f"{t.name}.jsonl",
                   (dict(ex.to_dict(), split=s) for s in ("train", "dev", "test") for ex in t.split(s)))
        _jsonl(out / "odqa_passages.jsonl", (p.to_dict() for p in self.odqa.passages))
        _jsonl(out / "odqa_questions.jsonl", (dict(vars(q), split=s) for s in ("train", "dev", "test")
                                              for q in self.odqa.split(s)))
        return out


def _jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _build(seed: int, cfg: ToyworldConfig) -> WorldData:
    world = build_world(seed, cfg.world)
    return WorldData(seed=seed, world=world, corpus=build_corpus(world, cfg.corpus),
                     tasks=build_tasks(world, cfg.tasks), odqa=build_odqa(world, cfg.odqa),
                     closedbook=build_closedbook(world, cfg.closedbook))


@functools.lru_cache(maxsize=4)
def _cached(seed: int, quick: bool) -> WorldData:
    return _build(seed, resolve(quick))


def load_world_data(seed: int = 0, quick: bool = False, config: ToyworldConfig | None = None) -> WorldData:
    """The world and its datasets; preset configs are memoised per (seed, quick), so treat
    the result as read-only (copy a task before changing it)."""
    return _build(seed, config) if config is not None else _cached(seed, quick)


def ensure_backbones(seed: int = 0, quick: bool = False, cache_dir: str | Path | None = None,
                     names: tuple[str, ...] | None = None, config: ToyworldConfig | None = None,
                     progress: bool = True, threads: int | None = None,
                     compile: str | None = None) -> dict[str, Path]:
    """name -> directory of a pre-trained backbone (loadable with `from_pretrained`).

    Missing backbones are pre-trained now (minutes on CPU) and cached; present ones
    are reused. The cache root is `cache_dir`, else `$SHOULDERS_CACHE/toyworld`, else
    `~/.cache/shoulders/toyworld`. `seed` is the *world* seed: each one is a different
    world with its own backbones, so repeat experiments over module seeds on one world.
    `threads` fixes the torch threads of pre-training (default: the config's, where 0 =
    the idle cores); it is not part of the cache key. `compile` sets
    `PretrainConfig.compile` (auto | on | off; default: the config's): compiled backbones
    are cached under their own key.
    """
    cfg = resolve(quick, config)
    overrides = {k: v for k, v in (("threads", threads), ("compile", compile)) if v is not None}
    if overrides:
        train = PretrainConfig.model_validate({**cfg.train.model_dump(), **overrides})
        cfg = cfg.model_copy(update={"train": train})
    models = [m for m in cfg.models if names is None or m.name in names]
    if names is not None and len(models) != len(set(names)):
        raise ValueError(f"unknown backbone(s) in {names}: have {[m.name for m in cfg.models]}")
    # The key hashes the corpus text itself, not just its config, so a change to any
    # generator invalidates the cache even when no config field changed.
    docs = load_world_data(seed, quick).corpus if config is None else build_corpus(build_world(seed, cfg.world),
                                                                                   cfg.corpus)
    digest = hashlib.sha256("\x00".join(docs).encode()).hexdigest()
    key = (seed, cfg.world, cfg.corpus, digest, cfg.tokenizer, cfg.tokenizer_passes)
    tokenizer, out = None, {}

    def data():
        nonlocal tokenizer
        if tokenizer is None:
            n = len(docs) * cfg.tokenizer_passes // max(1, cfg.corpus.n_passes)
            tokenizer = train_tokenizer(docs[:n], cfg.tokenizer)
        return tokenizer, docs

    for m in models:
        out[m.name] = train_cached(m, cfg.train, key, data, cache_dir=cache_dir, progress=progress, key_names=KEY_NAMES)
    return out
