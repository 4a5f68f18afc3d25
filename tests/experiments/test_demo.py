"""`shoulders demo`'s scheduling: each experiment starts as soon as its backbones are
ready, in worker processes (the experiments themselves are tested in their own files;
the demo's numbers are in docs/demo.md)."""
import time

import pytest

from shoulders.experiments import demo

DELAY = {"toy-small": 0.2, "toy-large": 2.0}


def fake_backbone(seed, quick, cache_dir, name, progress):
    time.sleep(DELAY[name])
    return {"path": f"/cache/{name}", "ready_at": time.time()}


def fake_section(name, seed, quick, seeds, out, small, large, progress, multitask_steps=None):
    started = time.time()
    time.sleep(0.1)
    return {"wall_s": 0.1, "started_at": started, "small": small, "large": large, "seeds": seeds,
            "multitask_steps": multitask_steps}


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_experiments_start_when_their_backbones_are_ready(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "_backbone_job", fake_backbone)
    monkeypatch.setattr(demo, "run_section", fake_section)
    cfg = demo.DemoConfig(seed=3, out=tmp_path, seeds=2, jobs=2, progress=False)
    backbones, sections = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert list(backbones) == ["toy-small", "toy-large"] and set(sections) == set(demo.SECTIONS)
    large_ready = backbones["toy-large"]["ready_at"]
    # toy-small alone is enough for these two: one of them runs while toy-large pre-trains
    assert min(sections[s]["started_at"] for s in ("reader", "multitask")) < large_ready
    # recursion compares the two backbones: it waits for toy-large and gets both paths
    assert sections["recursion"]["started_at"] >= large_ready
    assert (sections["recursion"]["small"], sections["recursion"]["large"]) == ("/cache/toy-small", "/cache/toy-large")
    assert all(sections[s]["seeds"] == [3, 4] for s in demo.SECTIONS)
    assert "backbones_s" in cfg.timings


def test_only_some_sections(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "_backbone_job", fake_backbone)
    monkeypatch.setattr(demo, "run_section", fake_section)
    cfg = demo.DemoConfig(out=tmp_path, sections=("reader",), jobs=2, progress=False)
    backbones, sections = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert set(sections) == {"reader"} and set(backbones) == {"toy-small", "toy-large"}


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_multitask_steps_reach_the_workers(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "_backbone_job", fake_backbone)
    monkeypatch.setattr(demo, "run_section", fake_section)
    cfg = demo.DemoConfig(out=tmp_path, sections=("multitask",), jobs=2, progress=False, multitask_steps=960)
    _, sections = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert sections["multitask"]["multitask_steps"] == 960


@pytest.mark.parametrize("quick", [False, True])
def test_multitask_steps_replace_only_the_step_count(monkeypatch, tmp_path, quick):
    from shoulders.experiments import multitask

    seen = {}

    def fake_run_multitask(tasks, small, *, budget=None, **kwargs):
        seen["budget"] = budget
        return {}

    monkeypatch.setattr(multitask, "run_multitask", fake_run_multitask)
    monkeypatch.setattr("shoulders.toyworld.load_world_data", lambda seed, quick=False: type("D", (), {"tasks": []}))
    demo.run_section("multitask", 0, quick, [0], str(tmp_path), "/small", None, False, multitask_steps=7)
    base = multitask.QUICK if quick else multitask.FULL
    assert seen["budget"].steps == 7 and seen["budget"].eval_every == base.eval_every
    demo.run_section("multitask", 0, quick, [0], str(tmp_path), "/small", None, False)
    assert seen["budget"] is None  # run_multitask picks FULL / QUICK itself
