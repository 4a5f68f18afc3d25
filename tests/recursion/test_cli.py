"""From the command line: `shoulders train` (both methods, both textual stages), then
`shoulders generate` and `shoulders eval` on the saved modules; the example configs validate."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from shoulders.cli.main import main
from shoulders.train import load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*recursion*_tiny_cpu.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_configs_validate(path):
    cfg = load_config(path)
    assert cfg.method in ("textual_recursion", "neural_recursion")
    assert "shoulders train configs/" + path.name in path.read_text()  # the command is in the header


@pytest.fixture()
def data(tmp_path):
    rows = [{"input": f"where is the {w} bird", "target": t} for w, t in
            [("red", "paris"), ("blue", "london"), ("green", "rome"), ("sad", "berlin")]]
    for split in ("train", "dev"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "corpus.txt").write_text("the cat was born in paris\na dog is happy in rome\n" * 4)
    return tmp_path


def _config(tmp_path, data, tiny_dir, name, method, module):
    cfg = {"method": method, "backbone": {"name_or_path": str(tiny_dir), "device": "cpu"}, "module": module,
           "tasks": [{"name": "qa", "train": str(data / "train.jsonl"), "dev": str(data / "dev.jsonl")}],
           "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "max_new_tokens": 3},
           "output_dir": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_generate_eval_from_the_cli(tmp_path, data, tiny_dirs, capsys):
    tiny = tiny_dirs["gpt2"]
    small = {"pass1": {"num_virtual_tokens": 2}, "pass2": {"num_virtual_tokens": 2}}
    one = _config(tmp_path, data, tiny, "stage1", "textual_recursion", {**small, "stage": "pass1"})
    assert main(["train", str(one), "--no-progress"]) == 0
    two = _config(tmp_path, data, tiny, "stage2", "textual_recursion",
                  {**small, "stage": "pass2", "init_from": str(tmp_path / "stage1" / "final"),
                   "sampling": {"n": 3, "max_new_tokens": 3}})
    assert main(["train", str(two), "--no-progress"]) == 0
    from shoulders.api import load

    stage1, _ = load(tmp_path / "stage1" / "final")
    stage2, _ = load(tmp_path / "stage2" / "final")
    assert torch.equal(stage1.prompt1, stage2.prompt1)  # stage 2 kept pass 1 frozen
    assert not torch.equal(stage1.prompt2, stage2.prompt2)
    neural = _config(tmp_path, data, tiny, "neural", "neural_recursion",
                     {**small, "lm_pretrain": {"texts": str(data / "corpus.txt"), "steps": 2, "batch_size": 2}})
    assert main(["train", str(neural), "--no-progress"]) == 0
    capsys.readouterr()
    for name in ("stage2", "neural"):
        assert main(["generate", str(tmp_path / name / "final"), "where is the red bird", "--max-new-tokens", "3",
                     "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out[0]["input"] == "where is the red bird" and len(out[0]["outputs"]) == 1
        assert main(["eval", str(tmp_path / name / "final"), "--data", str(data / "dev.jsonl"),
                     "--max-new-tokens", "3"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["examples"] == 4 and 0.0 <= result["score"] <= 100.0
