"""lm-evaluation-harness on a saved module (issue #22 part 6): a local task scored through
lm_eval gets the accuracy `shoulders eval` gives on the same data, multiple choice and
generation, from lm_eval's Python API and from `shoulders lm-eval`."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")

from shoulders.backbone import FrozenLM  # noqa: E402
from shoulders.cli.main import main  # noqa: E402
from shoulders.data.examples import Example  # noqa: E402
from shoulders.errors import ShouldersError  # noqa: E402
from shoulders.prompts import PromptTuning, PromptTuningConfig  # noqa: E402
from shoulders.train.evaluate import predict  # noqa: E402
from tests.helpers import WORDS  # noqa: E402

MC_YAML = """task: shoulders_mc
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}, cache_dir: {cache}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{input}}}}"
doc_to_choice: choices
doc_to_target: "{{{{target}}}}"
metric_list:
  - metric: acc
"""

# shoulders' exact match strips, lower-cases and drops punctuation (and articles, which
# these golds never hold), so the task asks lm_eval's exact_match for the same
GEN_YAML = """task: shoulders_gen
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}, cache_dir: {cache}}}
test_split: test
output_type: generate_until
doc_to_text: "{{{{input}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs: {{until: ["\\n"], max_gen_toks: 24, do_sample: false}}
metric_list:
  - metric: exact_match
    ignore_case: true
    ignore_punctuation: true
    regexes_to_ignore: ["^\\\\s+", "\\\\s+$"]
"""


@pytest.fixture(scope="module")
def setup(tiny_dirs, tmp_path_factory):
    """A saved prompt-tuning module (with a template) on the tiny Llama, two JSONL files whose
    golds make neither score trivial, and the two task YAMLs over them."""
    tmp = tmp_path_factory.mktemp("harness")
    backbone = str(tiny_dirs["llama"])
    lm = FrozenLM.from_pretrained(backbone, dtype="float32", device="cpu")
    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=3, init="random", seed=1,
                                                   text={"template": "Q: {input} A:"}), lm)
    module.save_pretrained(tmp / "module", lm)
    rng = random.Random(0)
    inputs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(12)]

    mc = [Example(x, "yes", choices=["yes", "no"]) for x in inputs]
    picked = predict(module, lm, mc)
    rows = [{"input": x, "target": p if i < 8 else ("no" if p == "yes" else "yes"), "choices": ["yes", "no"]}
            for i, (x, p) in enumerate(zip(inputs, picked))]
    (tmp / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    gen = predict(module, lm, [Example(x, "") for x in inputs])
    rows = [{"input": x, "target": p if i < 8 and p else "zebra"} for i, (x, p) in enumerate(zip(inputs, gen))]
    (tmp / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    tasks = tmp / "tasks"
    tasks.mkdir()
    cache = tmp / "datasets_cache"
    (tasks / "mc.yaml").write_text(MC_YAML.format(data=tmp / "mc.jsonl", cache=cache))
    (tasks / "gen.yaml").write_text(GEN_YAML.format(data=tmp / "gen.jsonl", cache=cache))
    return {"tmp": tmp, "backbone": backbone, "lm": lm, "module": module, "tasks": tasks, "gen": gen}


def _shoulders_eval(setup, data: str, metric: str, capsys) -> float:
    capsys.readouterr()
    assert main(["eval", str(setup["tmp"] / "module"), "--data", str(setup["tmp"] / data), "--metric", metric,
                 "--backbone", setup["backbone"], "--dtype", "float32", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)["score"]


def test_simple_evaluate_matches_shoulders_eval(setup, capsys):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import shoulders.train.harness  # noqa: F401  (registers the model)

    out = simple_evaluate(
        model="shoulders",
        model_args=f"module={setup['tmp'] / 'module'},backbone={setup['backbone']},dtype=float32,device=cpu",
        tasks=["shoulders_mc", "shoulders_gen"], batch_size=32,
        task_manager=TaskManager(include_path=str(setup["tasks"]), include_defaults=False))
    mc = 100 * out["results"]["shoulders_mc"]["acc,none"]
    gen = 100 * out["results"]["shoulders_gen"]["exact_match,none"]
    assert mc == pytest.approx(_shoulders_eval(setup, "mc.jsonl", "accuracy", capsys))
    assert gen == pytest.approx(_shoulders_eval(setup, "gen.jsonl", "exact_match", capsys))
    assert mc == pytest.approx(100 * 8 / 12)  # the golds were made so: neither score is 0 or 100
    assert 0 < gen < 100
    # the same text, sample by sample, not just the same count of hits
    samples = sorted(out["samples"]["shoulders_gen"], key=lambda s: s["doc_id"])
    assert [s["resps"][0][0].strip() for s in samples] == setup["gen"]


def test_cli_run_matches_shoulders_eval(setup, capsys, tmp_path):
    """`shoulders lm-eval` is lm_eval's own CLI (its task index, table and results file)."""
    assert main(["lm-eval", "--model_args", f"module={setup['tmp'] / 'module'},dtype=float32",
                 "--tasks", "shoulders_mc", "--include_path", str(setup["tasks"]), "--batch_size", "8",
                 "--output_path", str(tmp_path / "out")]) == 0
    assert "shoulders_mc" in capsys.readouterr().out  # lm_eval's results table
    (results,) = tmp_path.glob("out/**/results_*.json")
    acc = 100 * json.loads(results.read_text())["results"]["shoulders_mc"]["acc,none"]
    assert acc == pytest.approx(_shoulders_eval(setup, "mc.jsonl", "accuracy", capsys))


class _Request:  # what lm_eval passes: an object with `args`
    def __init__(self, *args):
        self.args = args


def test_loglikelihood_scores_the_continuation_as_given_and_checks_greedy(setup):
    from shoulders.train.harness import ShouldersLM

    lm, module = setup["lm"], setup["module"]
    model = ShouldersLM(module, lm)
    context = "the cat was born in"
    greedy = module.generate(lm, [context], max_new_tokens=3)[0][0].token_ids
    assert lm.encode([lm.decode(greedy)], add_special_tokens=False)[0] == greedy  # round trip holds here
    other = " dog" if lm.decode(greedy[:1]) != " dog" else " cat"
    (lp_g, hit_g), (lp_o, hit_o) = model.loglikelihood([_Request(context, lm.decode(greedy)),
                                                        _Request(context, other)])
    assert (hit_g, hit_o) == (True, False)
    # the module's own scoring with its target_prefix (" ") gives the same number for " dog"
    (expected,) = module.choice_logprobs(lm, [Example(context, "", choices=[other[1:]])])
    assert lp_o == pytest.approx(expected[0], abs=1e-5)


def test_rolling_loglikelihood_over_two_windows_is_the_whole_text(setup):
    """A 200-token text, in windows of 128, scores as one pass over [EOS ; text] (the tiny
    tokenizer adds no BOS) with the bare backbone."""
    import torch

    from shoulders.train.harness import ShouldersLM

    lm = setup["lm"]
    rng = random.Random(1)
    ids: list[int] = []
    while len(ids) < 200:
        text = " ".join(rng.choice(WORDS) for _ in range(120))
        ids = lm.encode([text], add_special_tokens=False)[0]
    cut = lm.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"][199][1]
    text = text[:cut]
    ids = lm.encode([text], add_special_tokens=False)[0]
    assert lm.max_context // 2 < len(ids) < lm.max_context  # two windows; one pass still fits
    (rolled,) = ShouldersLM(backbone=lm, device="cpu").loglikelihood_rolling([_Request(text)])
    with torch.no_grad():
        whole = lm(None, [[lm.eos_token_id]], [ids]).row_logprob(1).item()
    assert rolled == pytest.approx(whole, abs=1e-3)


def test_bad_model_args_and_gen_kwargs_are_one_line_errors(setup):
    from shoulders.train.harness import ShouldersLM

    with pytest.raises(ShouldersError, match="unknown model_args \\['pretrained'\\]"):
        ShouldersLM(setup["module"], setup["lm"], pretrained="gpt2")
    with pytest.raises(ShouldersError, match="batch_size='auto'"):
        ShouldersLM(setup["module"], setup["lm"], batch_size="auto")
    model = ShouldersLM(setup["module"], setup["lm"])
    with pytest.raises(ShouldersError, match="num_beams"):
        model.generate_until([_Request("the cat", {"until": ["\n"], "num_beams": 4})])
    assert model._generation_config({"temperature": 0.0, "do_sample": True}).do_sample is False


def test_import_shoulders_and_its_cli_parser_stay_free_of_lm_eval():
    code = ("import sys, shoulders; from shoulders.cli.main import build_parser; build_parser(); "
            "print('lm_eval' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_cli_passes_every_argument_to_lm_eval(capsys):
    from shoulders.cli.lm_eval_cmd import lm_eval_argv

    assert lm_eval_argv(["--tasks", "t"]) == ["run", "--model", "shoulders", "--tasks", "t", "--device", "auto"]
    assert lm_eval_argv(["run", "--model", "hf"]) == ["run", "--model", "hf"]
    assert lm_eval_argv(["--device", "cpu"]) == ["run", "--model", "shoulders", "--device", "cpu"]
    assert lm_eval_argv(["ls", "tasks"]) == ["ls", "tasks"]
    assert main(["lm-eval", "--tasks", "t", "--use_cache", "cache/"]) == 2  # pickles: refused
    assert "never loads" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["lm-eval", "-h"])  # lm_eval's help, not ours
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--model_args" in out and "--include_path" in out


def test_a_missing_module_directory_is_a_shoulders_error(tmp_path):
    """A ShouldersError, so `shoulders lm-eval` prints it as one line (checked by hand: lm_eval
    indexes all its own tasks first, 15 s, too slow to run twice here)."""
    from shoulders.train.harness import ShouldersLM

    with pytest.raises(ShouldersError, match="missing: not a module directory"):
        ShouldersLM(tmp_path / "missing")
