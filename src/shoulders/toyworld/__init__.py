"""The toy world: a synthetic world, its datasets, and small backbones pre-trained on it.

The embedded default for a machine with no giant LM and no internet: generate a world
from a seed, render a pre-training corpus and every dataset the paper's experiments
need from it, and pre-train two small Llama backbones (toy-small, toy-large) that
really know the world's facts. Quick start:

    from shoulders.toyworld import ensure_backbones, load_world_data
    paths = ensure_backbones(seed=0)          # {"toy-small": Path, "toy-large": Path}
    data = load_world_data(seed=0)            # world, corpus, tasks, odqa, closedbook

`shoulders experiment knowledge [--quick]` does both and reports few-shot closed-book EM
against chance. One job per file: world (entities, facts), names, lexicon, relations
(how facts are said and asked), genres (reviews, paragraphs, summaries), corpus,
task_defs + tasks (the P3-style suite), closedbook, odqa (+ unseen), splits,
tokenizer, pretrain (loop + cache), fewshot, bundle (configs and the one-call API).
"""
from shoulders.toyworld.bundle import ToyworldConfig, WorldData, ensure_backbones, load_world_data
from shoulders.toyworld.closedbook import ClosedBookConfig, build_closedbook, chance
from shoulders.toyworld.corpus import CorpusConfig, build_corpus
from shoulders.toyworld.fewshot import FewShotConfig, FewShotResult, fewshot_eval
from shoulders.toyworld.odqa import OdqaConfig, OdqaQuestion, OdqaSet, WorldPassage, build_odqa
from shoulders.toyworld.pretrain import TOY_LARGE, TOY_SMALL, ModelConfig, PretrainConfig, cache_root
from shoulders.toyworld.tasks import TaskSetConfig, build_tasks, clusters
from shoulders.toyworld.tokenizer import TokenizerConfig, train_tokenizer
from shoulders.toyworld.world import Entity, Fact, World, WorldConfig, build_world

__all__ = [
    "ToyworldConfig", "WorldData", "ensure_backbones", "load_world_data",
    "ClosedBookConfig", "build_closedbook", "chance",
    "CorpusConfig", "build_corpus",
    "FewShotConfig", "FewShotResult", "fewshot_eval",
    "OdqaConfig", "OdqaQuestion", "OdqaSet", "WorldPassage", "build_odqa",
    "TOY_LARGE", "TOY_SMALL", "ModelConfig", "PretrainConfig", "cache_root",
    "TaskSetConfig", "build_tasks", "clusters",
    "TokenizerConfig", "train_tokenizer",
    "Entity", "Fact", "World", "WorldConfig", "build_world",
]
