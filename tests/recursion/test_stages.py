"""Building a module never trains it; the Connector's pre-training (`lm_pretrain`) is a
stage the Trainer runs, once, before task training; a loaded module does not run it."""
import pytest
import torch

from shoulders.backbone import FrozenLM
from shoulders.data.examples import Task
from shoulders.modules import load_module, save_module
from shoulders.modules.stages import pending_stages, run_stages
from shoulders.recursion import NeuralRecursion, NeuralRecursionConfig, pretrain_connector
from shoulders.recursion.pretrain import read_texts
from shoulders.train import Trainer, load_config


@pytest.fixture()
def llama(tiny_dirs):
    return FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat was born in paris and the dog in london\na red bird is happy and the fish is sad\n" * 3)
    return path


def _cfg(corpus=None, steps=3) -> dict:
    cfg = {"pass1": {"num_virtual_tokens": 2}, "pass2": {"num_virtual_tokens": 2, "seed": 1},
           "connector": {"kind": "transformer", "layers": 1}}
    if corpus is not None:
        cfg["lm_pretrain"] = {"texts": str(corpus), "steps": steps, "batch_size": 2, "lr": 1e-2}
    return cfg


def _build(llama, cfg: dict, seed: int = 0) -> NeuralRecursion:
    torch.manual_seed(seed)
    return NeuralRecursion.build(NeuralRecursionConfig(**cfg), llama)


def _same(a, b) -> bool:
    sa, sb = a.state_to_save(), b.state_to_save()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_building_with_lm_pretrain_does_not_train(llama, corpus):
    with_stage = _build(llama, _cfg(corpus))
    after_build = torch.get_rng_state()
    plain = _build(llama, _cfg())
    assert _same(with_stage, plain)  # the same weights as a build without lm_pretrain
    assert torch.equal(after_build, torch.get_rng_state())  # and the same random stream after it
    assert list(pending_stages(with_stage)) == ["lm_pretrain"] and not pending_stages(plain)


def test_run_stages_is_pretrain_connector_and_runs_once(llama, corpus):
    module = _build(llama, _cfg(corpus))
    stats = run_stages(module, llama, progress=False)
    assert list(stats) == ["lm_pretrain"] and len(stats["lm_pretrain"]["losses"]) == 3
    by_hand = _build(llama, _cfg(corpus))
    pretrain_connector(by_hand, llama, read_texts(corpus), by_hand.config.lm_pretrain, progress=False)
    assert _same(module, by_hand)
    assert run_stages(module, llama, progress=False) == {} and _same(module, by_hand)  # once per module


def _train_cfg(llama, corpus, out, steps=1):
    return load_config(data={"method": "neural_recursion", "backbone": {"name_or_path": str(llama.name_or_path),
                                                                         "device": "cpu"},
                             "module": _cfg(corpus), "train": {"steps": steps, "batch_size": 2, "seed": 4,
                                                               "checkpoint_every": 1},
                             "output_dir": str(out)})


def test_the_trainer_runs_the_stage_when_fit_starts(llama, corpus, examples, tmp_path):
    trainer = Trainer(_train_cfg(llama, corpus, tmp_path / "run"), backbone=llama, tasks=[Task("qa", train=examples)],
                      progress=False)
    assert list(pending_stages(trainer.module)) == ["lm_pretrain"]  # constructing a Trainer trains nothing
    expected = _build(llama, _cfg(corpus), seed=4)  # the Trainer seeds with train.seed, then builds
    stats = run_stages(expected, llama, progress=False)
    history = trainer.fit().history
    assert not pending_stages(trainer.module)
    assert history["stages"]["lm_pretrain"]["losses"] == stats["lm_pretrain"]["losses"]  # the same stage, first


def test_resuming_does_not_run_the_stage_again(llama, corpus, examples, tmp_path, monkeypatch):
    tasks = [Task("qa", train=examples)]
    first = Trainer(_train_cfg(llama, corpus, tmp_path / "run", steps=1), backbone=llama, tasks=tasks,
                    progress=False).fit()
    import shoulders.recursion.neural as neural

    def refuse(*a, **k):
        raise AssertionError("the stage ran again on resume")

    monkeypatch.setattr(neural, "pretrain_connector", refuse)
    resumed = Trainer(_train_cfg(llama, corpus, tmp_path / "run", steps=2), backbone=llama, tasks=tasks,
                      progress=False).fit()
    assert resumed.history["stages"] == first.history["stages"]  # the stats come from the checkpoint
    assert [r["step"] for r in resumed.history["train"]][-1] == 2


def test_loading_never_runs_the_stage(llama, corpus, tmp_path):
    module = _build(llama, _cfg(corpus))
    save_module(module, tmp_path / "saved", llama)
    loaded = load_module(tmp_path / "saved", llama)
    assert _same(loaded, module) and not pending_stages(loaded)
    reloaded = NeuralRecursion.from_pretrained(tmp_path / "saved", llama)
    assert _same(reloaded, module) and run_stages(reloaded, llama, progress=False) == {}
