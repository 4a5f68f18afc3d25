"""`shoulders experiment backbone-sweep` variants: key=value pairs into the toy world's configs."""
from pathlib import Path

import pytest

from shoulders.experiments.backbone_sweep import build_variant
from shoulders.toyworld import ToyworldConfig


def test_a_variant_sets_model_and_group_fields():
    cfg, model = build_variant("large:num_layers=6,lr=3e-3,corpus.reading_passages=[2,3],train.copy_mix=0.2", True)
    quick = ToyworldConfig.quick()
    assert cfg.models == (model,) and model.name == "toy-large" and model.num_layers == 6 and model.lr == 3e-3
    assert cfg.corpus == quick.corpus.model_copy(update={"reading_passages": (2, 3)})
    assert cfg.train.copy_mix == 0.2 and cfg.world == quick.world


@pytest.mark.parametrize("text, message", [
    ("small:hiden_size=3", "unknown key 'hiden_size' (did you mean 'hidden_size'?)"),
    ("small:corpus.n_pases=3", "unknown key 'corpus.n_pases' (did you mean 'corpus.n_passes'?)"),
    ("small:corpus.qa_lines_per_doc=[5,2]", "key 'corpus.qa_lines_per_doc': expected (lo, hi)"),
    ("small:train.copy_mix=1.0", "key 'train.copy_mix'"),
    ("small:tokenizer.vocab_size=10", "must start with corpus., world. or train."),
    ("small:name=x", "the backbone's name comes from its preset"),
])
def test_a_bad_variant_names_the_field(text, message):
    with pytest.raises(ValueError) as err:
        build_variant(text, quick=True)
    assert message in str(err.value) and text in str(err.value)


def test_the_cli_checks_every_variant_before_pre_training(tmp_path, capsys):
    from shoulders.experiments.backbone_sweep import main

    with pytest.raises(SystemExit) as exit_:
        main(["--quick", "--cache", str(tmp_path / "cache"), "--variant", "small:", "--variant", "small:hiden_size=3"])
    assert exit_.value.code == 2 and "unknown key 'hiden_size'" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # the good first variant was not pre-trained


def test_prompt_tuned_dev_trains_the_single_pass_and_scores_dev(tmp_path, monkeypatch):
    """--prompt-tuned: the demo's single-pass recipe on a variant, scored on the dev split."""
    from shoulders.experiments import backbone_sweep, recursion
    from shoulders.toyworld import ModelConfig, PretrainConfig, ensure_backbones
    from tests.toyworld.conftest import tiny_config

    tiny = ModelConfig(name="toy-small", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                       max_positions=128)
    cfg = tiny_config(models=(tiny,), train=PretrainConfig(seq_len=128, batch_size=4, max_steps=5, threads=1))
    path = ensure_backbones(seed=0, config=cfg, cache_dir=tmp_path / "cache", progress=False)["toy-small"]
    small = recursion.RecursionSettings.quick().model_copy(update={"single_steps": 2, "eval_every": 2,
                                                                    "max_new_tokens": 3})
    monkeypatch.setattr(recursion.RecursionSettings, "quick", classmethod(lambda cls: small))
    row = backbone_sweep.prompt_tuned_dev(Path(path), cfg, 0, tmp_path / "run", quick=True)
    assert set(row) == {"dev_prompt_tuned_em", "dev_prompt_tuned_1hop", "dev_prompt_tuned_2hop", "dev_prompt_tuned_lr"}
    assert 0.0 <= row["dev_prompt_tuned_em"] <= 100.0 and row["dev_prompt_tuned_lr"] == 0.3
    assert (tmp_path / "run" / "lr0.3" / "history.json").is_file()  # trained with the Trainer, dev-evaluated
