"""The docs test's size substitutions, loaded by every Python process it starts.

tests/test_doc_blocks.py puts this directory on PYTHONPATH, so Python imports this file at
start-up (`sitecustomize`). It changes no behaviour, only sizes: the presets of the toy world
and of the experiments shrink to a smoke run, so that `shoulders demo`, `real-tasks`,
`experiment sweep`, `experiment recursion-standin`, `index eval-squad --rerank` and
`ensure_backbones()` finish in seconds instead of minutes. Each patch runs right after its
module is imported (a sys.meta_path hook), so a process that never imports the module pays
nothing. A rename in one of these modules makes the docs test fail here, by name: update
the patch with it.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

STEPS = 2  # optimizer steps of every training run an experiment starts
EVAL = 2  # examples per task per dev evaluation
TEST = 8  # test examples per experiment


def _toyworld(m):  # shoulders.toyworld.bundle: a tiny world and two tiny backbones, 2 pre-training steps
    from shoulders.toyworld.corpus import CorpusConfig
    from shoulders.toyworld.odqa import OdqaConfig
    from shoulders.toyworld.pretrain import ModelConfig, PretrainConfig
    from shoulders.toyworld.tasks import TaskSetConfig
    from shoulders.toyworld.unseen import UnseenConfig
    from shoulders.toyworld.world import WorldConfig

    def smoke(cls):
        return cls(world=WorldConfig.tiny(), corpus=CorpusConfig(n_passes=2),
                   tasks=TaskSetConfig(n_train=30, n_dev=8, n_test=8),
                   odqa=OdqaConfig(noise_passages=10, mention_rate=0.0, questions_per_fact=1,
                                   unseen=UnseenConfig(people_ratio=0.25, products_ratio=0.25)),
                   train=PretrainConfig(batch_size=4, warmup_steps=1, max_steps=STEPS, threads=1),
                   models=(ModelConfig(name="toy-small", hidden_size=32, num_layers=1, num_heads=2,
                                       intermediate_size=64),
                           ModelConfig(name="toy-large", hidden_size=48, num_layers=1, num_heads=2,
                                       intermediate_size=96)))

    m.ToyworldConfig.full = classmethod(smoke)
    m.ToyworldConfig.quick = classmethod(smoke)


def _multitask(m):  # every Budget (FULL, QUICK, real-tasks' own, the sweep's) at most STEPS steps
    from pydantic import model_validator

    base = m.Budget

    class SmokeBudget(base):
        @model_validator(mode="before")
        @classmethod
        def _shrink(cls, data):
            data = {**{k: f.default for k, f in base.model_fields.items()}, **data}
            for name, cap in (("steps", STEPS), ("eval_every", STEPS), ("eval_max_examples", EVAL),
                              ("warmup_steps", 1), ("batch_size", 4), ("max_new_tokens", 4)):
                data[name] = cap if data[name] is None else min(data[name], cap)
            return data

    m.Budget = SmokeBudget
    m.FULL, m.QUICK = SmokeBudget(), SmokeBudget()
    m.step_ms.__defaults__ = (1,)  # timing repeats
    m.idpt_overhead.__defaults__ = (1,)


def _reader(m):
    for name in ("full", "quick"):
        preset = getattr(m.ReaderSettings, name).__func__
        setattr(m.ReaderSettings, name, classmethod(lambda cls, preset=preset: preset(cls).model_copy(update=dict(
            reranker_steps=STEPS, reader_steps=STEPS, reader_train_questions=8, max_test=TEST, mined=4))))


def _recursion(m):
    for name in ("full", "quick"):
        preset = getattr(m.RecursionSettings, name).__func__
        setattr(m.RecursionSettings, name, classmethod(lambda cls, preset=preset: preset(cls).model_copy(update=dict(
            single_steps=STEPS, steps=STEPS, pretrain_steps=STEPS, eval_every=STEPS, max_test=TEST,
            lr_grid=(0.3,), candidates=2, max_new_tokens=4))))


def _standin(m):
    tiny = dict(hidden=32, layers=1, heads=2, ffn=64, steps=STEPS)
    m.QUICK = m.QUICK.model_copy(update=dict(n_people=20, n_cities=5, n_countries=3, passes=2))
    for name in ("SMALL", "LARGE", "QUICK_SMALL", "QUICK_LARGE"):
        setattr(m, name, getattr(m, name).model_copy(update=tiny))


def _real_tasks(m):
    m.FULL_CAPS = m.QUICK_CAPS = m.Caps(train=16, dev=4, test=TEST)


def _squad_rerank(m):
    class SmokeSettings(m.SquadRerankSettings):
        train_questions: int = 16
        test_questions: int | None = TEST
        mined: int = 3
        negatives: int = 2
        num_layers: int | None = 1
        max_seq_len: int = 64
        batch_size: int = 4
        warmup: int = 1
        depth: int = 5
        dev_questions: int = 4

    m.SquadRerankSettings = SmokeSettings


PATCHES = {
    "shoulders.toyworld.bundle": _toyworld,
    "shoulders.experiments.multitask": _multitask,
    "shoulders.experiments.reader": _reader,
    "shoulders.experiments.recursion": _recursion,
    "shoulders.experiments.recursion_standin": _standin,
    "shoulders.experiments.real_tasks": _real_tasks,
    "shoulders.experiments.squad_rerank": _squad_rerank,
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module, run=run):
            run(module)
            try:
                PATCHES[name](module)
            except Exception as e:  # name what broke: a renamed preset, not a mystery
                raise RuntimeError(f"tests/doc_shim/sitecustomize.py: cannot shrink {name}: {e!r}") from e

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
