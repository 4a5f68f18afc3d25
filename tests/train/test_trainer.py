"""The trainer: frozen backbone untouched, exact resume, outputs written."""
import json

import pytest
import torch

from shoulders.modules import load_module
from shoulders.train import Trainer, load_config
from tests.tasks_fixture import keyword_task


def _config(tiny_dir, out, **train):
    return load_config(data={
        "method": "prompt_tuning",
        "backbone": {"name_or_path": str(tiny_dir), "device": "cpu"},
        "module": {"num_virtual_tokens": 4, "init": "random"},
        "optim": {"lr": 0.05, "warmup_steps": 2, "schedule": "cosine"},
        "train": {"steps": 12, "batch_size": 4, "grad_accum": 2, "eval_every": 4, "eval_max_examples": 8,
                  "log_every": 2, **train},
        "output_dir": str(out),
    })


def test_backbone_bit_identical_after_training(lm, tiny_dir, tmp_path):
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    Trainer(_config(tiny_dir, tmp_path / "run"), backbone=lm, tasks=[keyword_task(40, 8)], progress=False).fit()
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not lm.model.training


def test_interrupted_then_resumed_equals_uninterrupted(lm, tiny_dir, tmp_path):
    tasks = [keyword_task(40, 8, name="a"), keyword_task(30, 8, seed=5, name="b")]
    full = Trainer(_config(tiny_dir, tmp_path / "full"), backbone=lm, tasks=tasks, progress=False).fit()
    # "Crash" after step 8: train to 8 with the same schedule length, then resume to 12.
    part_cfg = _config(tiny_dir, tmp_path / "part")
    trainer = Trainer(part_cfg, backbone=lm, tasks=tasks, progress=False)
    stop_at = 8

    class Stop(Exception):
        pass

    original = trainer._evaluate

    def eval_then_maybe_crash():
        result = original()
        return result

    trainer._evaluate = eval_then_maybe_crash
    import shoulders.train.trainer as tr

    real_save = tr.save_checkpoint

    def save_then_crash(root, step, *a, **k):
        path = real_save(root, step, *a, **k)
        if step == stop_at:
            raise Stop
        return path

    tr.save_checkpoint = save_then_crash
    try:
        with pytest.raises(Stop):
            trainer.fit()
    finally:
        tr.save_checkpoint = real_save
    resumed = Trainer(_config(tiny_dir, tmp_path / "part"), backbone=lm, tasks=tasks, progress=False).fit()
    a = load_module(full.final_dir, lm).prompt
    b = load_module(resumed.final_dir, lm).prompt
    assert torch.equal(a, b)
    assert resumed.history["eval"] == full.history["eval"]


def test_outputs(lm, tiny_dir, tmp_path):
    res = Trainer(_config(tiny_dir, tmp_path / "o"), backbone=lm, tasks=[keyword_task(40, 8)], progress=False).fit()
    out = tmp_path / "o"
    hist = json.loads((out / "history.json").read_text())
    assert [e["step"] for e in hist["eval"]] == [4, 8, 12]
    assert len(hist["train"]) == 6
    assert (out / "training_curve.png").exists() and (out / "train_config.yaml").exists()
    assert res.best_dir is not None and (res.best_dir / "module.json").exists()
    assert len(list((out / "checkpoints").iterdir())) == 2  # keep_checkpoints


def test_resume_with_another_backbone_is_refused_and_changes_nothing(tiny_dirs, tmp_path):
    import hashlib

    from shoulders.backbone import FrozenLM
    from shoulders.train.config import ConfigError

    out = tmp_path / "run"
    gpt2 = FrozenLM.from_pretrained(tiny_dirs["gpt2"], dtype="float32", device="cpu")
    Trainer(_config(tiny_dirs["gpt2"], out, steps=8), backbone=gpt2, tasks=[keyword_task(40, 8)],
            progress=False).fit()

    def snapshot():
        return {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}

    before = snapshot()
    llama = FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")
    with pytest.raises(ConfigError) as err:
        Trainer(_config(tiny_dirs["llama"], out, steps=12), backbone=llama, tasks=[keyword_task(40, 8)],
                progress=False).fit()
    message = str(err.value)
    assert "\n" not in message and "cannot resume" in message
    assert str(tiny_dirs["gpt2"]) in message and str(tiny_dirs["llama"]) in message
    assert snapshot() == before


def test_rerun_of_a_finished_run_says_it_trains_nothing(lm, tiny_dir, tmp_path, caplog):
    """Resuming is the default, so running the same thing twice continues a finished run: one
    warning line says there is nothing to train, instead of a silent no-op."""
    cfg = _config(tiny_dir, tmp_path / "run", steps=4, grad_accum=1, eval_every=0)
    Trainer(cfg, backbone=lm, tasks=[keyword_task(40, 8)], progress=False).fit()
    with caplog.at_level("WARNING", logger="shoulders"):
        Trainer(cfg, backbone=lm, tasks=[keyword_task(40, 8)], progress=False).fit()
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "already reached step 4 of train.steps=4: nothing to train" in record.getMessage()
