"""`shoulders demo`'s scheduling: each experiment starts as soon as its backbones are
ready, in worker processes (the experiments themselves are tested in their own files;
the demo's numbers are in docs/demo.md)."""
import time

import pytest

from shoulders.experiments import demo

DELAY = {"toy-small": 0.2, "toy-large": 1.0}
PART_S = 0.5  # each fake multitask run: six of them outlast toy-large's delay on one worker


def fake_backbone(seed, quick, cache_dir, name, progress, compile=False):
    time.sleep(DELAY[name])
    return {"path": f"/cache/{name}" + ("-compiled" if compile else ""), "ready_at": time.time()}


def fake_section(name, seed, quick, seeds, out, small, large, progress, multitask_steps=None, ablations=False):
    started = time.time()
    time.sleep(0.1)
    return {"wall_s": 0.1, "started_at": started, "small": small, "large": large, "seeds": seeds}


def fake_part(seed, quick, method, module_seed, measure_overhead, out, small, progress, multitask_steps=None):
    started = time.time()
    time.sleep(PART_S)
    return {"wall_s": PART_S, "started_at": started, "small": small, "task_names": ["t"],
            "multitask_steps": multitask_steps, "measure_overhead": measure_overhead}


def fake_recursion_part(seed, quick, part, seeds, out, backbone, progress, ablations=False):
    started = time.time()
    time.sleep(0.1)
    return {"wall_s": 0.1, "started_at": started, "backbone": backbone, "seeds": seeds, "ablations": ablations}


def fake_assemble_recursion(parts, *, seeds, settings=None, **kwargs):
    return {"parts": parts, "seeds": seeds, "ablation": settings.ablation}


def fake_chance(seed, quick):
    return {"chance": {"seed": seed}}


def fake_assemble(runs, task_names, backbone_path, *, seeds, **kwargs):
    return {"runs": {f"{m}-{s}": r for (m, s), r in runs.items()}, "seeds": seeds}


@pytest.fixture
def fakes(monkeypatch):
    from shoulders.experiments import multitask, recursion

    monkeypatch.setattr(demo, "_backbone_job", fake_backbone)
    monkeypatch.setattr(demo, "recursion_part_job", fake_recursion_part)
    monkeypatch.setattr(recursion, "assemble_recursion", fake_assemble_recursion)
    monkeypatch.setattr(demo, "run_section", fake_section)
    monkeypatch.setattr(demo, "multitask_part_job", fake_part)
    monkeypatch.setattr(demo, "_chance", fake_chance)
    monkeypatch.setattr(multitask, "assemble_multitask", fake_assemble)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_experiments_start_when_their_backbones_are_ready(fakes, tmp_path):
    cfg = demo.DemoConfig(seed=3, out=tmp_path, seeds=2, jobs=2, progress=False)
    backbones, sections, chance = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert list(backbones) == ["toy-small", "toy-large"] and set(sections) == set(demo.SECTIONS)
    assert chance == {"chance": {"seed": 3}}
    large_ready = backbones["toy-large"]["ready_at"]
    runs = sections["multitask"]["runs"]
    # one job per (method, seed), assembled once all are back; the overhead is timed on the last seed's ID-PT
    # (the fine-tuned reference on the first module seed only)
    assert set(runs) == {f"{m}-{s}" for m in ("prompt_tuning", "idpt") for s in (3, 4)} | {"finetune-3"}
    assert [k for k, r in runs.items() if r["measure_overhead"]] == ["idpt-4"]
    assert sections["multitask"]["wall_s"] == pytest.approx(5 * PART_S)
    # toy-small alone is enough for these two: they run while toy-large pre-trains
    assert sections["reader"]["started_at"] < large_ready
    assert min(r["started_at"] for r in runs.values()) < large_ready
    # recursion runs one job per backbone: the small LM's variants start while toy-large
    # pre-trains, toy-large's single pass waits for it; assembled once both are back ...
    small, large = sections["recursion"]["parts"]["small"], sections["recursion"]["parts"]["large"]
    assert small["started_at"] < large_ready <= large["started_at"]
    assert (small["backbone"], large["backbone"]) == ("/cache/toy-small", "/cache/toy-large")
    assert sections["recursion"]["wall_s"] == pytest.approx(0.2)
    # ... and, the longest ready job, toy-large's part goes before multitask runs ready earlier
    assert large["started_at"] < max(r["started_at"] for r in runs.values())
    assert sections["reader"]["seeds"] == sections["recursion"]["seeds"] == sections["multitask"]["seeds"] == [3, 4]
    assert "backbones_s" in cfg.timings


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_compile_reaches_the_backbone_jobs(fakes, tmp_path):
    cfg = demo.DemoConfig(out=tmp_path, sections=("reader",), jobs=2, progress=False, compile=True)
    backbones, sections, _ = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert {n: b["path"] for n, b in backbones.items()} == {"toy-small": "/cache/toy-small-compiled",
                                                            "toy-large": "/cache/toy-large-compiled"}


def test_only_some_sections(fakes, tmp_path):
    cfg = demo.DemoConfig(out=tmp_path, sections=("reader",), jobs=2, progress=False)
    backbones, sections, _ = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert set(sections) == {"reader"} and set(backbones) == {"toy-small", "toy-large"}


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_multitask_steps_reach_the_workers(fakes, tmp_path):
    cfg = demo.DemoConfig(out=tmp_path, sections=("multitask",), jobs=2, progress=False, multitask_steps=960,
                          seeds=1)
    _, sections, _ = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert {r["multitask_steps"] for r in sections["multitask"]["runs"].values()} == {960}


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_toy_large_ready_first_starts_its_recursion_part_alone(fakes, tmp_path, monkeypatch):
    monkeypatch.setitem(DELAY, "toy-small", 1.0)
    monkeypatch.setitem(DELAY, "toy-large", 0.2)
    cfg = demo.DemoConfig(out=tmp_path, sections=("recursion",), jobs=2, progress=False, seeds=1)
    backbones, sections, _ = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    parts = sections["recursion"]["parts"]
    assert parts["large"]["started_at"] < backbones["toy-small"]["ready_at"] <= parts["small"]["started_at"]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
@pytest.mark.parametrize("ablations", [False, True])
def test_ablations_reach_the_recursion_workers(fakes, tmp_path, ablations):
    cfg = demo.DemoConfig(out=tmp_path, sections=("recursion",), jobs=2, progress=False, seeds=1, ablations=ablations)
    _, sections, _ = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    section = sections["recursion"]
    assert {p["ablations"] for p in section["parts"].values()} == {ablations} and section["ablation"] is ablations


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


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fakes reach workers by fork")
def test_backbones_that_come_back_together_still_start_every_experiment(fakes, monkeypatch, tmp_path):
    """Cached backbones (or two that finish at once) return in one `wait`: nothing is pending
    or ready at that moment, and every experiment and chance must still run (CI once got a
    results.json with none of them: KeyError 'chance')."""
    monkeypatch.setitem(DELAY, "toy-small", 0.0)
    monkeypatch.setitem(DELAY, "toy-large", 0.0)
    from concurrent.futures import wait as real_wait

    def wait_for_all(fs, return_when=None):  # the worst case, deterministically: everything done at once
        return real_wait(fs)

    monkeypatch.setattr("concurrent.futures.wait", wait_for_all)
    cfg = demo.DemoConfig(seed=3, out=tmp_path, seeds=1, jobs=2, progress=False)
    backbones, sections, chance = demo._run_pool(cfg, ["toy-small", "toy-large"], tmp_path, time.perf_counter())
    assert set(sections) == set(demo.SECTIONS) and chance == {"chance": {"seed": 3}}
