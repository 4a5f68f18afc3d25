"""YAML configs validate into typed objects; errors name the key."""
from pathlib import Path

import pytest

from shoulders.train.config import ConfigError, TrainConfig, load_config

BASE = "method: prompt_tuning\nbackbone: {name_or_path: x}\n"


def cfg_file(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(cfg_file(tmp_path, BASE), ["train.steps=7", "module.num_virtual_tokens=3", "optim.lr=0.5"])
    assert cfg.train.steps == 7 and cfg.optim.lr == 0.5
    assert cfg.module_config().num_virtual_tokens == 3


@pytest.mark.parametrize("text,expected", [
    (BASE + "trian: {steps: 3}\n", "unknown key 'trian'"),
    (BASE + "train: {steps: many}\n", "key 'train.steps'"),
    (BASE + "train: {steps: -1}\n", "key 'train.steps'"),
    (BASE + "module: {num_virtual_tokens: 0}\n", "key 'module.num_virtual_tokens'"),
    (BASE + "module: {prompt_len: 3}\n", "unknown key 'module.prompt_len'"),
    ("method: lora\nbackbone: {name_or_path: x}\n", "unknown method 'lora'"),
    ("method: prompt_tuning\n", "missing key 'backbone'"),
    (BASE + "train: [1, 2\n", "not valid YAML"),
])
def test_errors_name_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_config(cfg_file(tmp_path, text))


def test_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(cfg_file(tmp_path, BASE), ["train.steps"])


def test_round_trip():
    cfg = load_config(data={"method": "prompt_tuning", "backbone": {"name_or_path": "x"}})
    assert TrainConfig.model_validate(cfg.model_dump()) == cfg


def test_prompt_longer_than_context_window(tiny_dirs, tmp_path):
    from shoulders.errors import WindowError
    from shoulders.train import Trainer
    from tests.tasks_fixture import keyword_task

    cfg = load_config(data={"method": "prompt_tuning", "backbone": {"name_or_path": str(tiny_dirs["gpt2"]), "device": "cpu"},
                            "module": {"num_virtual_tokens": 300}, "output_dir": str(tmp_path / "o")})
    with pytest.raises(WindowError, match="soft prefix of 300 vectors .* context window of 256 tokens"):
        Trainer(cfg, tasks=[keyword_task(8, 2)], progress=False)
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize("preset", sorted(p.name for p in (Path(__file__).parents[2] / "configs").glob("*.yaml")))
def test_every_preset_config_validates(preset):
    """The YAML presets under configs/ stay in step with the config classes."""
    cfg = load_config(Path(__file__).parents[2] / "configs" / preset)
    assert preset.startswith(cfg.method)  # <method>_<backbone>_<device>.yaml, as the header's command says
    cfg.module_config()  # the method's own section validates too


def test_task_files_are_found_next_to_the_config_first(tmp_path, monkeypatch):
    """Relative task files: the config file's directory first, then the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for name in ("sub/both.jsonl", "both.jsonl", "cwd_only.jsonl"):
        (tmp_path / name).write_text('{"input": "a", "target": "b"}\n')
    (tmp_path / "sub" / "c.yaml").write_text(
        "method: prompt_tuning\nbackbone: {name_or_path: x}\n"
        "tasks: [{name: a, train: both.jsonl, dev: cwd_only.jsonl, test: nowhere.jsonl}]\n")
    task = load_config("sub/c.yaml").tasks[0]
    assert (task.train, task.dev, task.test) == ("sub/both.jsonl", "cwd_only.jsonl", "nowhere.jsonl")


@pytest.mark.parametrize("text, hint", [
    ("module: {num_virtual_token: 3}\n", "unknown key 'module.num_virtual_token' (did you mean 'module.num_virtual_tokens'?)"),
    ("module: {text: {templat: x}}\n", "unknown key 'module.text.templat' (did you mean 'module.text.template'?)"),
    ("tasks: [{name: a, trian: x.jsonl}]\n", "unknown key 'tasks.0.trian' (did you mean 'tasks.0.train'?)"),
    ("optim: {zzz: 1}\n", "unknown key 'optim.zzz'"),
])
def test_unknown_keys_get_did_you_mean(tmp_path, text, hint):
    with pytest.raises(ConfigError) as e:
        load_config(cfg_file(tmp_path, BASE + text))
    assert str(e.value) == f"{tmp_path / 'c.yaml'}: {hint}"
