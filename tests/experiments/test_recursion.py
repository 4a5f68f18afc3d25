"""The recursion experiment end to end at a toy size: every variant, the result's shape,
the gated sweep PNG and the markdown fragment (learning is not checked here)."""
import math

from shoulders.data.examples import Example, Task
from shoulders.experiments.recursion import VARIANTS, RecursionSettings, run_recursion


def _task():
    def ex(i, hops):
        return Example(f"where is the {'red blue green'.split()[i % 3]} bird {i}", "paris" if i % 2 else "rome",
                       "qa", meta={"hops": hops})

    return Task("closedbook_qa", train=[ex(i, 1 + i % 2) for i in range(8)], dev=[ex(i, 1 + i % 2) for i in range(4)],
                test=[ex(i, 1 + i % 2) for i in range(6)])


def test_run_recursion_tiny(tiny_dirs, tmp_path):
    settings = RecursionSettings(steps=2, single_steps=2, batch_size=2, lr_grid=(0.1,), pretrain_steps=2,
                                 pretrain_batch=2, candidates=2, eval_every=2, max_new_tokens=3, prompt_tokens=2, cross_fit=2,
                                 neural={"connector": {"kind": "transformer", "layers": 1}, "pass1_loss_weight": 1.0},
                                 ablation=True)
    texts = ["the cat was born in paris", "a dog is happy in rome"] * 3
    result = run_recursion(_task(), texts, str(tiny_dirs["llama"]), str(tiny_dirs["gpt2"]), seeds=[0, 1], quick=True,
                           out_dir=tmp_path, progress=False, settings=settings)
    for v in VARIANTS:
        r = result[v]
        for key in ("em", "em_std", "em_1hop", "em_2hop", "forward_passes", "flops_per_question"):
            assert isinstance(r[key], float) and not math.isnan(r[key]), (v, key)
        assert 0.0 <= r["em"] <= 100.0 and r["flops_per_question"] > 0
    assert result["single_pass"]["forward_passes"] == 1.0 and result["neural"]["forward_passes"] == 2.0
    assert 1.0 <= result["gated"]["forward_passes"] <= 2.0
    assert result["neural"]["flops_per_question"] > result["single_pass"]["flops_per_question"]
    for key in ("candidates_top_train", "candidates_any_train", "candidates_top", "candidates_any"):
        assert 0.0 <= result["textual"][key] <= 100.0, key  # pass 1's candidates, training vs held-out questions
        assert result["textual"][key.replace("top", "any")] >= result["textual"][key]
    assert "gap_closed" in result and len(result["per_seed"]["neural"]) == 2
    # cross-fitting: one single pass per fold, trained without that fold's questions
    assert all((tmp_path / "runs" / "seed0" / "textual" / f"fold{k}").is_dir() for k in (0, 1))
    assert (tmp_path / "recursion_gated.png").stat().st_size > 1000
    md = (tmp_path / "recursion.md").read_text()
    assert "| neural recursion, small x2 |" in md and "recursion_gated.png" in md
    assert "| neural, no Connector LM pre-training |" in md


def test_the_ablation_runs_only_when_asked(tiny_dirs, tmp_path):
    settings = RecursionSettings(steps=1, single_steps=1, batch_size=2, lr_grid=(0.1,), pretrain_steps=1,
                                 pretrain_batch=2, candidates=2, eval_every=1, max_new_tokens=2, prompt_tokens=2)
    result = run_recursion(_task(), ["the cat was born in paris"] * 4, str(tiny_dirs["llama"]), str(tiny_dirs["gpt2"]),
                           seeds=[0], quick=True, out_dir=tmp_path, progress=False, settings=settings)
    assert "neural_no_lm_pretrain" not in result and "neural_no_lm_pretrain" not in result["per_seed"]
    assert not (tmp_path / "runs" / "seed0" / "neural_no_lm_pretrain").exists()
    assert "no Connector LM pre-training" not in (tmp_path / "recursion.md").read_text()


def test_the_grid_is_tried_on_the_first_seed_or_on_every_seed(tiny_dirs, tmp_path, monkeypatch):
    """lr_per_seed=False: later seeds reuse the first seed's rate; True: each seed tries the grid."""
    from shoulders.experiments import recursion

    asked = []

    def fake_single_pass(lm, task, settings, seed, run_dir, lr, progress):
        asked.append(lr)
        chosen = settings.lr_grid[seed % len(settings.lr_grid)] if lr is None else lr
        return None, run_dir, chosen

    monkeypatch.setattr(recursion, "_single_pass", fake_single_pass)
    monkeypatch.setattr(recursion, "score_single", lambda *a, **k: (None, None))
    monkeypatch.setattr(recursion, "summarize", lambda *a, **k: {"em": 0.0})
    for per_seed, expected_asked, expected_lrs in ((False, [None, 0.1, 0.1], [0.1, 0.1, 0.1]),
                                                   (True, [None, None, None], [0.1, 0.3, 0.1])):
        asked.clear()
        settings = RecursionSettings(lr_grid=(0.1, 0.3), lr_per_seed=per_seed)
        part = recursion.run_recursion_part("large", _task(), [], str(tiny_dirs["gpt2"]), seeds=[0, 1, 2], quick=True,
                                            out_dir=tmp_path / str(per_seed), progress=False, settings=settings)
        assert asked == expected_asked and part["lrs"]["large"] == expected_lrs
