"""--no-progress reaches bars that pass their own `disable` (tqdm's TQDM_DISABLE alone would not)."""
from shoulders.utils.progress import bar_disabled


def test_bars_follow_the_caller_and_the_user(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not bar_disabled(True) and bar_disabled(False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert bar_disabled(True)


def test_no_progress_silences_toy_pretraining(monkeypatch, capsys):
    from shoulders.cli.main import configure_output, build_parser

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    configure_output(build_parser().parse_args(["--no-progress", "info", "x"]))
    from tqdm.auto import tqdm

    for _ in tqdm(range(3), desc="visible?", disable=bar_disabled(True)):
        pass
    assert "visible?" not in capsys.readouterr().err
