"""The toy world's configs (and the experiments' and benches' settings): pydantic StrictModels whose cache keys
stay what they were."""
import pytest
from pydantic import BaseModel, ValidationError

from shoulders.bench.generate import GenWorkload
from shoulders.bench.idpt_overhead import IdptWorkload
from shoulders.bench.serve_vs_generate import VsWorkload
from shoulders.bench.train import Workload
from shoulders.experiments.demo import DemoConfig
from shoulders.experiments.multitask import Budget
from shoulders.experiments.reader import ReaderSettings
from shoulders.experiments.real_tasks import Caps
from shoulders.experiments.recursion import RecursionSettings
from shoulders.experiments.recursion_standin import BackboneSize, StandinConfig
from shoulders.experiments.squad_rerank import SquadRerankSettings
from shoulders.toyworld import pretrain as pt
from shoulders.toyworld.bundle import ToyworldConfig
from shoulders.toyworld.closedbook import ClosedBookConfig
from shoulders.toyworld.corpus import CorpusConfig
from shoulders.toyworld.fewshot import FewShotConfig
from shoulders.toyworld.odqa import OdqaConfig
from shoulders.toyworld.pretrain import TOY_LARGE, TOY_SMALL, ModelConfig, PretrainConfig
from shoulders.toyworld.tasks import TaskSetConfig
from shoulders.toyworld.tokenizer import TokenizerConfig
from shoulders.toyworld.unseen import UnseenConfig
from shoulders.toyworld.world import World, WorldConfig, build_world
from shoulders.utils.strict_model import StrictModel

CONFIGS = (WorldConfig, CorpusConfig, ModelConfig, PretrainConfig, ToyworldConfig, ClosedBookConfig, FewShotConfig,
           OdqaConfig, TaskSetConfig, TokenizerConfig, UnseenConfig, StandinConfig, DemoConfig,
           # the experiments' settings and the benches' workloads
           Budget, Caps, BackboneSize, RecursionSettings, ReaderSettings, SquadRerankSettings, Workload, GenWorkload,
           VsWorkload, IdptWorkload)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_is_strict_and_every_field_documented(cls):
    assert issubclass(cls, StrictModel)
    assert [n for n, f in cls.model_fields.items() if not f.description] == []
    with pytest.raises(ValidationError, match="extra"):
        cls(no_such_field=1)


def test_preset_cache_keys_are_pinned():
    """The backbone cache is addressed by these hashes: a change here re-trains every cached
    backbone (they were the same when the configs were dataclasses; toy-large's moved when it
    got its own token budget, epochs=2.0)."""
    quick_large = ToyworldConfig.quick().models[1]  # one epoch on the quick world (its 5-minute budget)
    for world, corpus, large_cfg, small, large in (
            (WorldConfig(), CorpusConfig(), TOY_LARGE, "c042d6e412a9", "e4cf586c952b"),
            (WorldConfig.quick(), CorpusConfig.quick(), quick_large, "a110b514619d", "ae602c6464f2")):
        assert pt.config_hash(world, corpus, TOY_SMALL, PretrainConfig()) == small
        assert pt.config_hash(world, corpus, large_cfg, PretrainConfig()) == large
    # resolved as train_cached hashes it: compile off (or unset) keeps the eager key, on has its own
    fp32 = {"precision": "fp32"}
    for compile, key in ((None, "0284b5df2956"), ("off", "0284b5df2956"), ("on", "7749149a78ae")):
        cfg = pt.resolved(PretrainConfig(**fp32, compile=compile))
        assert pt.config_hash(WorldConfig(), CorpusConfig(), TOY_SMALL, cfg) == key


def test_bad_values_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match="qa_lines_per_doc"):
        CorpusConfig(qa_lines_per_doc=(5, 2))
    assert CorpusConfig(reading_passages=[2, 3]).reading_passages == (2, 3)  # a JSON list is a range too
    with pytest.raises(ValidationError, match="copy_mix"):
        PretrainConfig(copy_mix=1.0)
    with pytest.raises(ValidationError, match="precision"):
        PretrainConfig(precision="fp16")
    with pytest.raises(ValidationError, match="num_heads"):
        ModelConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ValidationError, match="two cities per country"):
        WorldConfig(n_cities=3, n_countries=2)
    with pytest.raises(ValidationError, match="dev_frac \\+ test_frac"):
        OdqaConfig(dev_frac=0.6, test_frac=0.6)
    with pytest.raises(ValidationError, match="distinct"):
        ToyworldConfig(models=(TOY_SMALL, TOY_SMALL))
    with pytest.raises(ValidationError, match="unknown section"):
        DemoConfig(sections=("nope",))


def test_world_json_round_trip():
    world = build_world(0, "tiny")
    again = World.from_dict(world.to_dict())
    assert again.config == world.config and again.to_dict() == world.to_dict()
    assert isinstance(world.to_dict()["config"], dict) and not isinstance(world.to_dict()["config"], BaseModel)


def test_experiment_settings_are_checked_and_budgets_stay_frozen():
    budget = Budget()
    with pytest.raises(ValidationError, match="frozen"):
        budget.steps = 1
    assert hash(budget) == hash(Budget()) and hash(Caps()) == hash(Caps())  # shared, hashable presets
    with pytest.raises(ValidationError, match="multiple of heads"):
        BackboneSize(hidden=130, layers=1, heads=4, ffn=8, steps=1)
    with pytest.raises(ValidationError, match="lr_grid"):
        RecursionSettings(lr_grid=())
    with pytest.raises(ValidationError, match="steps"):
        Budget(steps=0)
