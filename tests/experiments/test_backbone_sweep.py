"""`shoulders experiment backbone-sweep` variants: key=value pairs into the toy world's configs."""
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
