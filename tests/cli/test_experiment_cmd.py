"""`shoulders experiment NAME`: every development tool is reached through the one CLI, its
own flags passed through untouched (they were `python -m` entry points before)."""
import importlib

import pytest

from shoulders.cli.experiment_cmd import EXPERIMENTS
from shoulders.cli.main import main


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_each_experiment_has_a_main_and_its_own_help(name, capsys):
    assert callable(importlib.import_module(EXPERIMENTS[name][0]).main)
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", name, "--help"])
    assert exit_.value.code == 0
    assert "--" in capsys.readouterr().out  # the module's flags, not the pass-through parser's


def test_flags_reach_the_module_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "sweep", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "shoulders experiment sweep" in capsys.readouterr().err


def test_listed_in_top_level_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "experiment" in capsys.readouterr().out


def test_output_flags_after_the_experiment_name_are_the_top_level_ones():
    from shoulders.cli.experiment_cmd import hoist_output_flags

    argv = ["experiment", "backbone-sweep", "--variant", "small:", "--no-progress", "-q"]
    assert hoist_output_flags(argv) == ["--no-progress", "-q", "experiment", "backbone-sweep", "--variant", "small:"]
    assert hoist_output_flags(["-q", "demo", "--quick"]) == ["-q", "demo", "--quick"]
    from shoulders.cli.main import build_parser

    args = build_parser().parse_args(hoist_output_flags(argv))
    assert args.no_progress and args.quiet and args.rest == ["--variant", "small:"]
