"""The CLI end to end on a tiny backbone: train, info, eval, generate, PEFT, errors."""
import json

import pytest

from shoulders.cli.main import main
from tests.tasks_fixture import keyword_task


@pytest.fixture()
def data_files(tmp_path):
    task = keyword_task(40, 10)
    for split in ("train", "dev"):
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for ex in task.split(split):
                f.write(json.dumps({"input": ex.input, "target": ex.target}) + "\n")
    return tmp_path


def test_train_info_eval_generate(tiny_dirs, data_files, tmp_path, capsys):
    cfg = tmp_path / "pt.yaml"
    cfg.write_text(f"""
method: prompt_tuning
backbone: {{name_or_path: {tiny_dirs['gpt2']}, device: cpu}}
module: {{num_virtual_tokens: 4}}
tasks:
  - {{name: kw, train: train.jsonl, dev: dev.jsonl, metric: accuracy, choices: ["yes", "no"]}}
train: {{steps: 4, batch_size: 4, eval_every: 2, eval_max_examples: 4}}
output_dir: {tmp_path / 'run'}
""")
    assert main(["train", str(cfg), "--no-progress", "--set", "train.steps=4"]) == 0
    out = json.loads(capsys.readouterr().out)
    final = out["final"]
    assert main(["info", final, "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["module_type"] == "prompt_tuning" and info["weights"]["verified"]
    assert main(["eval", final, "--data", str(data_files / "dev.jsonl"), "--metric", "accuracy",
                 "--choices", "yes", "no", "--predictions", str(tmp_path / "p.jsonl")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["examples"] == 10 and 0 <= res["score"] <= 100
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 10
    assert main(["generate", final, "the cat", "--max-new-tokens", "3", "--json"]) == 0
    gens = json.loads(capsys.readouterr().out)
    assert len(gens) == 1 and len(gens[0]["outputs"][0]["token_ids"]) <= 3
    assert main(["export-peft", final, str(tmp_path / "peft")]) == 0
    assert (tmp_path / "peft" / "adapter_config.json").exists()
    assert main(["import-peft", str(tmp_path / "peft"), str(tmp_path / "back"), "--template", "Q: {input} A:"]) == 0
    text = json.loads((tmp_path / "back" / "module.json").read_text())["config"]["text"]
    assert text["template"] == "Q: {input} A:"  # PEFT does not record it: the flag restores it


def test_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: prompt_tuning\nbackbone: {name_or_path: x}\ntrain: {stepz: 1}\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.stepz'" in err and "Traceback" not in err
    assert main(["info", str(tmp_path)]) == 2
    assert "module.json: missing" in capsys.readouterr().err


def test_index_query_questions_reads_question_or_input(tmp_path, capsys, monkeypatch):
    """`--questions` takes a task file as it is (`input`, like every data file) or `question`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "title": t, "text": f"{t} is a city."})
                                                   + "\n" for i, t in enumerate(["Paris", "Rome", "Oslo"])))
    assert main(["index", "build", "--corpus", "corpus.jsonl", "--kind", "bm25", "--out", "idx", "--no-progress"]) == 0
    (tmp_path / "qs.jsonl").write_text(json.dumps({"id": "a", "input": "rome"}) + "\n"
                                       + json.dumps({"question": "oslo"}) + "\n")
    assert main(["index", "query", "idx", "--questions", "qs.jsonl", "-k", "1", "--out", "hits.jsonl", "-q"]) == 0
    hits = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert [(h["id"], h["hits"][0]["id"]) for h in hits] == [("a", "p1"), ("1", "p2")]


def test_real_tasks_says_up_front_that_it_pretrains(monkeypatch, caplog):
    """Without --backbone, real-tasks pre-trains toy-small (only it) on first use: it says so first."""
    import logging

    import shoulders.toyworld
    from shoulders.cli.real_tasks_cmd import default_backbone

    asked = {}
    monkeypatch.setattr(shoulders.toyworld, "ensure_backbones", lambda **kw: asked.update(kw) or {"toy-small": "/x"})
    with caplog.at_level(logging.INFO, logger="shoulders"):
        assert default_backbone(quick=True, progress=False) == "/x"
    assert asked["names"] == ("toy-small",) and "pre-trained first" in caplog.text


LONG_COMMANDS = [["train", "c.yaml"], ["eval", "m", "--data", "d.jsonl"], ["generate", "m", "x"], ["ask", "r", "q"],
                 ["demo"], ["real-tasks"], ["index", "build", "--corpus", "c", "--kind", "bm25", "--out", "o"],
                 ["index", "query", "idx", "q"], ["index", "eval-squad"], ["bench", "train"], ["bench", "all"],
                 ["export-peft", "m", "o"], ["import-peft", "a", "o"], ["serve", "--backbone", "b", "--modules", "m"]]


@pytest.mark.parametrize("argv", LONG_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_long_commands_take_the_output_flags_after_their_name(argv):
    from shoulders.cli.main import build_parser

    parser = build_parser()
    plain = parser.parse_args(argv)
    assert (plain.quiet, plain.verbose, plain.no_progress) == (False, False, False)
    given = parser.parse_args([*argv, "--quiet", "--verbose", "--no-progress"])
    assert (given.quiet, given.verbose, given.no_progress) == (True, True, True)
    before = parser.parse_args(["-q", *argv])  # the top-level flag is not reset by the command's default
    assert before.quiet


def test_third_party_noise_only_with_verbose(tiny_dirs, tmp_path):
    """transformers' "Loading weights" bar and bm25s's DEBUG lines came with every command."""
    import os
    import subprocess
    import sys

    from shoulders.backbone import FrozenLM
    from shoulders.modules import save_module
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    lm = FrozenLM.from_pretrained(tiny_dirs["gpt2"], dtype="float32", device="cpu")
    save_module(PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2), lm), tmp_path / "m", lm)
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"id": "p", "title": "Rome", "text": "Rome is a city."}) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}

    def stderr(*argv: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "shoulders", *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    assert "Loading weights" not in stderr("generate", "m", "the cat", "--max-new-tokens", "1")
    quiet = stderr("index", "build", "--corpus", "corpus.jsonl", "--kind", "bm25", "--out", "a")
    loud = stderr("index", "build", "--corpus", "corpus.jsonl", "--kind", "bm25", "--out", "b", "--verbose")
    assert "DEBUG bm25s" not in quiet and "DEBUG bm25s" in loud


def _parsers(parser, name="shoulders"):
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_help_shows_defaults_and_every_flag_has_help():
    import argparse

    from shoulders.cli.main import build_parser

    missing = []
    for name, parser in _parsers(build_parser()):
        if parser.prefix_chars != "-":  # pass-through commands (bench plugins, lm-eval) parse their own flags
            continue
        parser.format_help()  # renders: no stray % in a help text
        missing += [f"{name} {a.option_strings or a.dest}" for a in parser._actions
                    if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert missing == []
    text = dict(_parsers(build_parser()))["shoulders eval"].format_help()
    assert "examples per forward pass (default: 32)" in " ".join(text.split())


def test_a_mistyped_choice_gets_did_you_mean(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "m", "--data", "d.jsonl", "--metric", "acuracy"])
    assert "invalid choice: 'acuracy' (did you mean 'accuracy'?)" in capsys.readouterr().err


def test_no_progress_switches_tqdm_off_for_worker_processes_too(monkeypatch):
    """The demo's workers inherit the environment: the re-ranker's bar showed in --no-progress runs."""
    import argparse

    from shoulders.cli.main import configure_output

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    configure_output(argparse.Namespace(quiet=False, verbose=False, no_progress=False))
    assert "TQDM_DISABLE" not in __import__("os").environ
    configure_output(argparse.Namespace(quiet=False, verbose=False, no_progress=True))
    assert __import__("os").environ["TQDM_DISABLE"] == "1"
    monkeypatch.delenv("TQDM_DISABLE")


def test_demo_compile_flag_reaches_its_config(monkeypatch):
    from shoulders.cli.main import main
    from shoulders.experiments import demo

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg: seen.append(cfg) or {"timing": {"total_s": 0.0}})
    for argv, want in ((["demo", "--no-progress"], False), (["demo", "--compile", "--no-progress"], True)):
        assert main(argv) == 0 and seen[-1].compile is want
