"""The bad-input table (docs/BAD_INPUTS.md): one row per bad input, each a test here.

Every row feeds one bad input to the API, the CLI or the HTTP server and checks that:
- the refusal is the documented kind (a `ShouldersError` for the API, exit code 2 and one
  `error:` line without a traceback for the CLI, a JSON error body for HTTP);
- the message names the file, line or field and what was expected (a regex per row), and
  is exactly the message recorded in docs/BAD_INPUTS.md (paths under the test's temporary
  directory written as `<tmp>`, the shared backbones as `<root>`);
- nothing on disk changed: every file under the row's directory (data files, an existing
  output directory, module directory, checkpoint, index) is byte-identical after the
  failed call, and no file or temporary directory was added.

To refresh the table after changing a message, run this file with
SHOULDERS_BAD_INPUTS_RECORD=/some/file.jsonl and rebuild the table from that file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shoulders.backbone import FrozenLM
from shoulders.cli.main import main
from shoulders.data.loaders import DataError, load_examples
from shoulders.errors import BackboneError, ShouldersError, WindowError
from shoulders.modules import BackboneMismatchError, ModuleFormatError, load_module, save_module
from shoulders.prompts import PromptTuning, PromptTuningConfig
from shoulders.reader.corpus import CorpusError, load_passages
from shoulders.train.config import ConfigError, load_config
from tests.helpers import build_tiny_backbone

DOC = Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUTS.md"
CONFIG_HEAD = "method: prompt_tuning\nbackbone: {name_or_path: x}\n"


# ----------------------------------------------------------------------------- shared world
class World:
    """One tiny GPT-2 backbone, a perturbed copy of it, a saved module and (lazily) a
    one-step training run with its checkpoint, shared by every row of this file."""

    def __init__(self, root: Path):
        self.root = root
        self.backbone = build_tiny_backbone(root / "gpt2", "gpt2")
        self.lm = FrozenLM.from_pretrained(self.backbone, dtype="float32", device="cpu")
        module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2, init="random", seed=0), self.lm)
        self.module = save_module(module, root / "module", self.lm)
        self._other = None
        self._run = None

    def other_lm(self) -> FrozenLM:
        """Same architecture and tokenizer, different embedding weights: a different backbone."""
        if self._other is None:
            from safetensors.torch import load_file, save_file

            other = self.root / "gpt2-other"
            shutil.copytree(self.backbone, other)
            tensors = load_file(str(other / "model.safetensors"))
            tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"] + 0.5
            save_file(tensors, str(other / "model.safetensors"), metadata={"format": "pt"})
            self._other = FrozenLM.from_pretrained(other, dtype="float32", device="cpu")
        return self._other

    def run(self) -> Path:
        """The output directory of a one-step run of task 'a' (6 examples), with one checkpoint."""
        if self._run is None:
            from shoulders.train import Trainer

            data = self.root / "run-data"
            data.mkdir()
            write_train_data(data)
            cfg = load_config(data={**train_config_data(str(data / "tr.jsonl")), "output_dir": str(self.root / "run")})
            Trainer(cfg, backbone=self.lm, progress=False).fit()
            self._run = self.root / "run"
            assert (self._run / "checkpoints" / "step-0000001" / "trainer_state.json").is_file()
        return self._run


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("bad_inputs_world"))


def write_train_data(directory: Path) -> Path:
    path = directory / "tr.jsonl"
    path.write_text("".join(json.dumps({"input": f"the cat {i}", "target": "yes"}) + "\n" for i in range(6)))
    return path


def train_config_data(train_file: str, **module) -> dict:
    return {"method": "prompt_tuning", "backbone": {"name_or_path": "x", "device": "cpu"},
            "module": {"num_virtual_tokens": 2, **module}, "tasks": [{"name": "a", "train": train_file}],
            "train": {"steps": 1, "batch_size": 2, "eval_every": 0}}


def train_yaml(world: World, tmp: Path, **changes) -> Path:
    """A config for `shoulders train` that resumes the shared run copied to tmp/run."""
    shutil.copytree(world.run(), tmp / "run")
    write_train_data(tmp)
    data = train_config_data("tr.jsonl")
    data["backbone"]["name_or_path"] = str(world.backbone)
    data["output_dir"] = "run"
    for key, value in changes.items():
        data[key] = value
    path = tmp / "c.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


# ----------------------------------------------------------------------------- the rows
@dataclass
class Api:
    call: Callable[[], object]
    error: type[BaseException]
    pattern: str


@dataclass
class Cli:
    argv: list[str]
    pattern: str


@dataclass
class Http:
    modules: Path
    method: str
    url: str
    status: int
    code: str
    pattern: str
    body: dict | None = None
    content: bytes | None = None
    headers: dict = field(default_factory=dict)
    skipped: str | None = None  # a module the server must list as skipped: its reason is the message


ROWS: dict[str, tuple[str, str, Callable[[World, Path], Api | Cli | Http]]] = {}


def row(row_id: str, entry: str, what: str):
    """Register a row: its id, where the input enters, what the bad input is, and a maker
    `fn(world, tmp) -> Api | Cli | Http` that writes the input under tmp."""
    def register(fn):
        assert row_id not in ROWS, row_id
        ROWS[row_id] = (what, entry, fn)
        return fn
    return register


def put(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


GOOD = {"input": "a", "target": "b"}
LOAD = "API load_examples"


# --- data files -----------------------------------------------------------------------------
@row("data-jsonl-malformed-line", LOAD, "JSONL: a line cut off mid-object")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl(GOOD, '{"input": "x", "target": '))
    return Api(lambda: load_examples("bad.jsonl"), DataError, r"^bad\.jsonl:2: invalid JSON \(.+ at column \d+\)$")


@row("data-jsonl-missing-field", LOAD, "JSONL: a record without `target`")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl(GOOD, {"input": "x"}))
    return Api(lambda: load_examples("bad.jsonl"), DataError,
               r"^bad\.jsonl:2: missing field 'target' \(fields present: input\)$")


@row("data-jsonl-empty-target", LOAD, "JSONL: `target` is only spaces")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl(GOOD, GOOD, {"input": "x", "target": "  "}))
    return Api(lambda: load_examples("bad.jsonl"), DataError, r"^bad\.jsonl:3: field 'target' is empty$")


@row("data-jsonl-latin1-bytes", LOAD, "JSONL: latin-1 bytes (`caf\\xe9`) on line 2")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl(GOOD).encode() + '{"input": "café", "target": "b"}\n'.encode("latin-1"))
    return Api(lambda: load_examples("bad.jsonl"), DataError,
               r"^bad\.jsonl:2: not valid UTF-8 \(byte 14 of the line\); re-encode the file as UTF-8$")


@row("data-jsonl-10mb-line", LOAD, "JSONL: a 10 MB line")
def _(w, tmp):
    big = json.dumps({"input": "x" * (10 << 20), "target": "b"}) + "\n"
    put(tmp / "bad.jsonl", jsonl(GOOD) + big)
    return Api(lambda: load_examples("bad.jsonl"), DataError,
               r"^bad\.jsonl:2: line is 10,485,7\d\d bytes, over the limit of 1,048,576 ")


@row("data-jsonl-duplicate-id", LOAD, "JSONL: the same `id` on lines 1 and 3")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl({"id": "q1", **GOOD}, {"id": "q2", **GOOD}, {"id": "q1", **GOOD}))
    return Api(lambda: load_examples("bad.jsonl"), DataError,
               r"^bad\.jsonl:3: duplicate id 'q1' \(first seen on line 1\)$")


@row("data-jsonl-not-an-object", LOAD, "JSONL: a line that is a JSON string, not an object")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl(GOOD, '"just a string"'))
    return Api(lambda: load_examples("bad.jsonl"), DataError, r"^bad\.jsonl:2: expected a JSON object, got str$")


@row("data-jsonl-target-wrong-type", LOAD, "JSONL: `target` is an object")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl({"input": "x", "target": {"a": 1}}))
    return Api(lambda: load_examples("bad.jsonl"), DataError,
               r"^bad\.jsonl:1: field 'target' must be a string, got dict$")


@row("data-jsonl-target-empty-list", LOAD, "JSONL: `target` is `[]`")
def _(w, tmp):
    put(tmp / "bad.jsonl", jsonl({"input": "x", "target": []}))
    return Api(lambda: load_examples("bad.jsonl"), DataError,
               r"^bad\.jsonl:1: field 'target' must be a non-empty list of non-empty strings$")


@row("data-jsonl-only-blank-lines", LOAD, "JSONL: only blank lines")
def _(w, tmp):
    put(tmp / "bad.jsonl", "\n  \n\n")
    return Api(lambda: load_examples("bad.jsonl"), DataError, r"^bad\.jsonl: no examples$")


@row("data-csv-wrong-column-count", LOAD, "CSV: a row with 3 fields under a 2-column header")
def _(w, tmp):
    put(tmp / "bad.csv", "input,target\na,b\na,b,c\n")
    return Api(lambda: load_examples("bad.csv"), DataError,
               r"^bad\.csv:3: expected 2 columns \(input, target\), got 3$")


@row("data-tsv-wrong-column-count", LOAD, "TSV: a row with 1 field under a 2-column header")
def _(w, tmp):
    put(tmp / "bad.tsv", "input\ttarget\na\n")
    return Api(lambda: load_examples("bad.tsv"), DataError,
               r"^bad\.tsv:2: expected 2 columns \(input, target\), got 1$")


@row("data-csv-unclosed-quote", LOAD, "CSV: a quoted field that is never closed")
def _(w, tmp):
    put(tmp / "bad.csv", 'input,target\na,b\n"c,d\ne,f\n')
    return Api(lambda: load_examples("bad.csv"), DataError,
               r"^bad\.csv:3: not valid CSV \(unexpected end of data\) \(a quote that is never closed\?\)$")


@row("data-csv-empty-file", LOAD, "CSV: an empty file (no header)")
def _(w, tmp):
    put(tmp / "bad.csv", "")
    return Api(lambda: load_examples("bad.csv"), DataError, r"^bad\.csv: empty file; expected a header line$")


@row("data-csv-header-lacks-field", LOAD, "CSV: header `text,label`, no `input` column")
def _(w, tmp):
    put(tmp / "bad.csv", "text,label\nhello,yes\n")
    return Api(lambda: load_examples("bad.csv"), DataError,
               r"^bad\.csv:2: missing field 'input' \(fields present: text, label\)$")


@row("data-p3-target-missing", LOAD, "P3 JSONL: `inputs_pretokenized` without `targets_pretokenized`")
def _(w, tmp):
    put(tmp / "p3.jsonl", jsonl({"inputs_pretokenized": "Is it good?", "answer_choices": ["yes", "no"]}))
    return Api(lambda: load_examples("p3.jsonl"), DataError,
               r"^p3\.jsonl:1: missing field 'targets_pretokenized' \(fields present: inputs_pretokenized, "
               r"answer_choices\)$")


@row("data-p3-answer-choices-not-a-list", LOAD, "P3 JSONL: `answer_choices` is a string")
def _(w, tmp):
    put(tmp / "p3.jsonl", jsonl({"inputs_pretokenized": "Q?", "targets_pretokenized": "yes", "answer_choices": "yes"}))
    return Api(lambda: load_examples("p3.jsonl"), DataError,
               r"^p3\.jsonl:1: field 'answer_choices' must be a non-empty list of strings$")


@row("data-label-index-out-of-range", LOAD + " (label_names=)", "TSV: label `2` with two `label_names`")
def _(w, tmp):
    put(tmp / "sst.tsv", "sentence\tlabel\ngood film\t1\nbad film\t2\n")
    return Api(lambda: load_examples("sst.tsv", input_field="sentence", target_field="label",
                                     label_names=["negative", "positive"]), DataError,
               r"^sst\.tsv:3: field 'label' is '2', expected a label index below 2$")


@row("data-json-not-a-list", LOAD, "JSON: an object without a `data` list")
def _(w, tmp):
    put(tmp / "bad.json", json.dumps({"examples": [GOOD]}))
    return Api(lambda: load_examples("bad.json"), DataError,
               r"^bad\.json: expected a JSON list of objects \(or \{'data': \[\.\.\.\]\}\)$")


@row("data-json-malformed", LOAD, "JSON: a missing comma on line 3")
def _(w, tmp):
    put(tmp / "bad.json", '[\n  {"input": "a", "target": "b"},\n  {"input": "c" "target": "d"}\n]\n')
    return Api(lambda: load_examples("bad.json"), DataError, r"^bad\.json:3: invalid JSON \(Expecting ',' delimiter\)$")


@row("data-unknown-extension", LOAD, "a `.txt` data file")
def _(w, tmp):
    put(tmp / "data.txt", "a\tb\n")
    return Api(lambda: load_examples("data.txt"), DataError,
               r"^data\.txt: cannot tell the format from the extension; expected \.jsonl, \.json, \.csv, \.tsv")


@row("data-missing-file", LOAD, "a data file that does not exist")
def _(w, tmp):
    return Api(lambda: load_examples("nope.jsonl"), DataError, r"^nope\.jsonl: no such file$")


# --- configs ---------------------------------------------------------------------------------
def config_row(text: str | bytes, pattern: str):
    def make(w, tmp):
        put(tmp / "c.yaml", text)
        return Api(lambda: load_config("c.yaml"), ConfigError, pattern)
    return make


CFG = "API load_config"
for _id, _what, _text, _pattern in [
    ("config-unknown-key", "YAML: top-level key `trian`", CONFIG_HEAD + "trian: {steps: 3}\n",
     r"^c\.yaml: unknown key 'trian' \(did you mean 'train'\?\)$"),
    ("config-unknown-nested-key", "YAML: `optim.learning_rate` (it is `lr`)", CONFIG_HEAD + "optim: {learning_rate: 0.1}\n",
     r"^c\.yaml: unknown key 'optim\.learning_rate'$"),
    ("config-wrong-type", "YAML: `train.steps: many`", CONFIG_HEAD + "train: {steps: many}\n",
     r"^c\.yaml: key 'train\.steps': Input should be a valid integer.* \(got 'many'\)$"),
    ("config-negative-steps", "YAML: `train.steps: -5`", CONFIG_HEAD + "train: {steps: -5}\n",
     r"^c\.yaml: key 'train\.steps': Input should be greater than 0 \(got -5\)$"),
    ("config-negative-prompt-length", "YAML: `module.num_virtual_tokens: -4`", CONFIG_HEAD + "module: {num_virtual_tokens: -4}\n",
     r"^c\.yaml: key 'module\.num_virtual_tokens': Input should be greater than 0 \(got -4\)$"),
    ("config-unknown-module-key", "YAML: `module.prompt_len` (unknown to prompt_tuning)", CONFIG_HEAD + "module: {prompt_len: 3}\n",
     r"^c\.yaml: unknown key 'module\.prompt_len'$"),
    ("config-unknown-method", "YAML: `method: lora`", "method: lora\nbackbone: {name_or_path: x}\n",
     r"^c\.yaml: unknown method 'lora': expected one of \[.*'prompt_tuning'.*\]$"),
    ("config-missing-backbone", "YAML: no `backbone` section", "method: prompt_tuning\n",
     r"^c\.yaml: missing key 'backbone': method prompt_tuning trains on a frozen LM \(give backbone\.name_or_path: "
     r"a hub id or a local directory\)$"),
    ("config-invalid-yaml", "YAML: an unclosed `[`", CONFIG_HEAD + "train: [1, 2\n",
     r"^c\.yaml: not valid YAML \(.+ at line \d+, column \d+\)$"),
    ("config-top-level-list", "YAML: a list at the top level", "- method: prompt_tuning\n",
     r"^c\.yaml: expected a mapping of keys \(method, backbone, \.\.\.\) at the top level, got list$"),
    ("config-duplicate-task-names", "YAML: two tasks named `a`", CONFIG_HEAD + "tasks: [{name: a}, {name: a}]\n",
     r"^c\.yaml: key 'tasks': task names must be unique; repeated: \['a'\]$"),
    ("config-unknown-metric", "YAML: `metric: bleu`", CONFIG_HEAD + "tasks: [{name: a, metric: bleu}]\n",
     r"^c\.yaml: key 'tasks\.0\.metric': Input should be 'exact_match', .* \(got 'bleu'\)$"),
    ("config-not-utf8", "YAML: latin-1 bytes on line 3", CONFIG_HEAD.encode() + "# café\n".encode("latin-1"),
     r"^c\.yaml:3: not valid UTF-8; re-encode the file as UTF-8$"),    ("config-prefix-projection-init", "YAML: `method: prefix_tuning`, `module: {projection: true}` (init left at vocab)",
     "method: prefix_tuning\nbackbone: {name_or_path: x}\nmodule: {projection: true}\n",
     r"^c\.yaml: key 'module': projection: true starts from PEFT's random initialisation; set init: random "
     r"\(got init: vocab\)$"),
]:
    row(_id, CFG, _what)(config_row(_text, _pattern))


@row("config-missing-file", CFG, "a config file that does not exist")
def _(w, tmp):
    return Api(lambda: load_config("nope.yaml"), ConfigError, r"^nope\.yaml: no such config file$")


def trainer_row(error: type[BaseException], pattern: str, **changes):
    """A config that validates but cannot train; an existing output_dir must stay as it was.
    `changes`: `section=value` replaces a section, `section__key=value` one key in it."""
    def make(w, tmp):
        from shoulders.train import Trainer

        write_train_data(tmp)
        put(tmp / "out" / "notes.txt", "an earlier run's file\n")
        data = train_config_data("tr.jsonl")
        data["backbone"]["name_or_path"] = str(w.backbone)
        data["output_dir"] = "out"
        for key, value in changes.items():
            section, _, name = key.partition("__")
            if name:
                data[section][name] = value
            else:
                data[section] = value
        put(tmp / "c.yaml", json.dumps(data))
        return Api(lambda: Trainer(load_config("c.yaml"), progress=False), error, pattern)
    return make


TRAINER = "API Trainer(load_config(...))"
row("config-prompt-longer-than-window", TRAINER,
    "`num_virtual_tokens: 300` on a 256-token backbone (existing output_dir)")(trainer_row(
        WindowError, r"soft prefix of 300 vectors .* context window of 256 tokens", module__num_virtual_tokens=300))
row("config-backbone-dir-missing", TRAINER, "`backbone.name_or_path` a directory that does not exist")(trainer_row(
    BackboneError, r"^\./gone-backbone: no such backbone directory \(expected a hub id or a local directory",
    backbone={"name_or_path": "./gone-backbone", "device": "cpu"}))
row("config-no-tasks", TRAINER, "`tasks: []`")(trainer_row(
    ConfigError, r"^no tasks: list at least one under `tasks:` with a `train` file$", tasks=[]))
row("config-task-without-train-file", TRAINER, "a task with only a `dev` file")(trainer_row(
    ConfigError, r"^tasks without training examples \(no `train` file\): \['a'\]$",
    tasks=[{"name": "a", "dev": "tr.jsonl"}]))
row("config-task-file-missing", TRAINER, "a task whose `train` file does not exist")(trainer_row(
    DataError, r"^missing\.jsonl: no such file$", tasks=[{"name": "a", "train": "missing.jsonl"}]))
row("config-prefix-tuning-gradient-checkpointing", TRAINER,
    "`method: prefix_tuning` with `backbone.gradient_checkpointing: true`")(trainer_row(
        BackboneError, r"^prefix_tuning modules do not work with gradient checkpointing: transformers drops the cache",
        method="prefix_tuning", backbone__gradient_checkpointing=True))


@row("config-output-dir-is-a-module", TRAINER, "`output_dir` a directory that `save_module` filled")
def _(w, tmp):
    from shoulders.train import Trainer

    write_train_data(tmp)
    shutil.copytree(w.module, tmp / "out")
    data = {**train_config_data("tr.jsonl"), "output_dir": "out"}
    data["backbone"]["name_or_path"] = str(w.backbone)
    put(tmp / "c.yaml", json.dumps(data))
    return Api(lambda: Trainer(load_config("c.yaml"), backbone=w.lm, progress=False), ConfigError,
               r"^out: output_dir is a saved module directory \(it holds module\.json\); give the run a directory "
               r"of its own$")


# --- module directories ------------------------------------------------------------------------
def module_copy(w: World, tmp: Path) -> Path:
    return Path(shutil.copytree(w.module, tmp / "m"))


def edit_meta(path: Path, fn) -> None:
    meta = json.loads((path / "module.json").read_text())
    fn(meta)
    (path / "module.json").write_text(json.dumps(meta, indent=2))


MOD = "API load_module"


@row("module-missing-module-json", MOD, "module dir without module.json")
def _(w, tmp):
    m = module_copy(w, tmp)
    (m / "module.json").unlink()
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/module\.json: missing \(a module directory holds module\.json and weights\.safetensors\)$")


@row("module-missing-weights", MOD, "module dir without weights.safetensors")
def _(w, tmp):
    m = module_copy(w, tmp)
    (m / "weights.safetensors").unlink()
    return Api(lambda: load_module("m", w.lm), ModuleFormatError, r"^m/weights\.safetensors: missing$")


@row("module-truncated-weights", MOD, "weights.safetensors cut to half its size")
def _(w, tmp):
    m = module_copy(w, tmp)
    data = (m / "weights.safetensors").read_bytes()
    (m / "weights.safetensors").write_bytes(data[: len(data) // 2])
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/weights\.safetensors: \d+ bytes but module\.json records \d+ \(truncated or replaced file\)$")


@row("module-tampered-weights", MOD, "one bit of weights.safetensors flipped (same size)")
def _(w, tmp):
    m = module_copy(w, tmp)
    data = bytearray((m / "weights.safetensors").read_bytes())
    data[-1] ^= 0x01  # one bit of one weight: same size, different sha256
    (m / "weights.safetensors").write_bytes(bytes(data))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/weights\.safetensors: sha256 does not match module\.json \(corrupted or tampered file\)$")


@row("module-wrong-backbone", MOD, "module loaded on a different backbone (other embedding weights)")
def _(w, tmp):
    module_copy(w, tmp)
    return Api(lambda: load_module("m", w.other_lm()), BackboneMismatchError,
               r"^m: module was trained on backbone '.*gpt2', not on '.*gpt2-other': embedding_fingerprint: "
               r"module has '[0-9a-f]{16}', backbone has '[0-9a-f]{16}'$")


@row("module-future-format-version", MOD, "module.json `format_version: 99`")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m.update(format_version=99))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/module\.json: format_version 99 is newer than this shoulders \(.+\) reads \(<= 1\); upgrade shoulders$")


@row("module-format-version-not-an-integer", MOD, "module.json `format_version: \"1\"`")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m.update(format_version="1"))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/module\.json: field 'format_version' must be a positive integer, got '1'$")


@row("module-unknown-type", MOD, "module.json `module_type: lora`")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m.update(module_type="lora"))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/module\.json: field 'module_type' is 'lora', expected one of \[.*'prompt_tuning'.*\]")


@row("module-json-malformed", MOD, "module.json cut off mid-object")
def _(w, tmp):
    m = module_copy(w, tmp)
    (m / "module.json").write_text('{"module_type": "prompt_tuning",')
    return Api(lambda: load_module("m", w.lm), ModuleFormatError, r"^m/module\.json: not valid JSON \(.+line 1 column \d+")


@row("module-json-missing-field", MOD, "module.json without `weights`")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m.pop("weights"))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError, r"^m/module\.json: missing field 'weights'$")


@row("module-invalid-config", MOD, "module.json `config.num_virtual_tokens: \"many\"`")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m["config"].update(num_virtual_tokens="many"))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/module\.json: key 'config\.num_virtual_tokens': Input should be a valid integer.*\(got 'many'\)$")


@row("module-weights-shape-mismatch", MOD, "module.json config says 5 prompt vectors, weights hold 2")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m["config"].update(num_virtual_tokens=5))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/weights\.safetensors: weight 'prompt' has shape \(2, 32\), the module expects \(5, 32\)")


@row("module-weights-not-safetensors", MOD, "weights.safetensors replaced by other bytes (size and sha256 updated)")
def _(w, tmp):
    from shoulders.utils.fs import sha256_file

    m = module_copy(w, tmp)
    put(m / "weights.safetensors", b"\x00" * 8 + b"not a safetensors header")
    edit_meta(m, lambda meta: meta["weights"].update(size=32, sha256=sha256_file(m / "weights.safetensors")))
    return Api(lambda: load_module("m", w.lm), ModuleFormatError,
               r"^m/weights\.safetensors: not a readable safetensors file \(.+\)$")


@row("module-path-is-a-file", MOD, "a file given as the module directory")
def _(w, tmp):
    put(tmp / "m.json", "{}")
    return Api(lambda: load_module("m.json", w.lm), ModuleFormatError,
               r"^m\.json: not a module directory \(expected a folder with module\.json\)$")


@row("module-recorded-backbone-missing", "API shoulders.load", "module.json records a backbone directory that is gone")
def _(w, tmp):
    import shoulders

    edit_meta(module_copy(w, tmp), lambda m: m["backbone"].update(name_or_path="./moved-backbone"))
    return Api(lambda: shoulders.load("m"), BackboneError, r"^\./moved-backbone: no such backbone directory")


# --- checkpoints (resuming `shoulders train` into an existing output_dir) ------------------------
TRAIN = "CLI shoulders train"


@row("checkpoint-other-tasks", TRAIN, "resume into an output_dir whose checkpoint has other tasks")
def _(w, tmp):
    train_yaml(w, tmp, tasks=[{"name": "b", "train": "tr.jsonl"}])
    return Cli(["train", "c.yaml", "--no-progress", "--set", "train.steps=2"],
               r"^shoulders train: error: run/checkpoints/step-0000001: cannot resume from this checkpoint: sampler "
               r"state is for task sizes \{'a': 6\}, this mixture has \{'b': 6\}; use a new output_dir or set resume: false")


@row("checkpoint-other-module-config", TRAIN, "resume with `module.num_virtual_tokens` changed")
def _(w, tmp):
    train_yaml(w, tmp)
    return Cli(["train", "c.yaml", "--no-progress", "--set", "train.steps=2", "--set", "module.num_virtual_tokens=3"],
               r"^shoulders train: error: run/checkpoints/step-0000001: cannot resume from this checkpoint: "
               r"run/checkpoints/step-0000001/weights\.safetensors: weight 'prompt' has shape \(2, 32\), the module "
               r"expects \(3, 32\)")


@row("checkpoint-other-backbone", TRAIN, "resume with `backbone.name_or_path` set to another backbone")
def _(w, tmp):
    other = w.other_lm().name_or_path
    train_yaml(w, tmp)
    return Cli(["train", "c.yaml", "--no-progress", "--set", "train.steps=2", "--set", f"backbone.name_or_path={other}"],
               r"^shoulders train: error: run/checkpoints/step-0000001: cannot resume from this checkpoint: "
               r"run/checkpoints/step-0000001: module was trained on backbone '.*gpt2', not on '.*gpt2-other': "
               r"embedding_fingerprint")


@row("checkpoint-tampered-weights", TRAIN, "resume from a checkpoint whose weights were modified")
def _(w, tmp):
    train_yaml(w, tmp)
    weights = tmp / "run" / "checkpoints" / "step-0000001" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    return Cli(["train", "c.yaml", "--no-progress", "--set", "train.steps=2"],
               r"^shoulders train: error: run/checkpoints/step-0000001: cannot resume from this checkpoint: "
               r"run/checkpoints/step-0000001/weights\.safetensors: sha256 does not match module\.json")


@row("checkpoint-corrupt-trainer-state", TRAIN, "resume from a checkpoint with a cut-off trainer_state.json")
def _(w, tmp):
    train_yaml(w, tmp)
    put(tmp / "run" / "checkpoints" / "step-0000001" / "trainer_state.json", '{"step": 1, "sampler": ')
    return Cli(["train", "c.yaml", "--no-progress", "--set", "train.steps=2"],
               r"^shoulders train: error: run/checkpoints/step-0000001: cannot resume from this checkpoint: "
               r"run/checkpoints/step-0000001/trainer_state\.json: not valid JSON \(")


# --- CLI arguments -------------------------------------------------------------------------------
@row("cli-eval-missing-module", "CLI shoulders eval", "`shoulders eval nope --data ok.jsonl --predictions p.jsonl` (p.jsonl exists)")
def _(w, tmp):
    put(tmp / "ok.jsonl", jsonl(GOOD))
    put(tmp / "p.jsonl", "earlier predictions\n")
    return Cli(["eval", "nope", "--data", "ok.jsonl", "--predictions", "p.jsonl"],
               r"^shoulders eval: error: nope: not a module directory \(expected a folder with module\.json\)$")


@row("cli-eval-missing-data", "CLI shoulders eval", "`shoulders eval m --data nope.jsonl`")
def _(w, tmp):
    module_copy(w, tmp)
    return Cli(["eval", "m", "--data", "nope.jsonl"], r"^shoulders eval: error: nope\.jsonl: no such file$")


@row("cli-eval-bad-data-line", "CLI shoulders eval", "`shoulders eval` on a file whose line 3 lacks `target` (p.jsonl exists)")
def _(w, tmp):
    module_copy(w, tmp)
    put(tmp / "dev.jsonl", jsonl(GOOD, GOOD, {"input": "x", "answer": "y"}))
    put(tmp / "p.jsonl", "earlier predictions\n")
    return Cli(["eval", "m", "--data", "dev.jsonl", "--predictions", "p.jsonl"],
               r"^shoulders eval: error: dev\.jsonl:3: missing field 'target' \(fields present: input, answer\)$")


@row("cli-eval-batch-size-zero", "CLI shoulders eval", "`shoulders eval ... --batch-size 0`")
def _(w, tmp):
    module_copy(w, tmp)
    put(tmp / "ok.jsonl", jsonl(GOOD))
    return Cli(["eval", "m", "--data", "ok.jsonl", "--batch-size", "0"],
               r"^shoulders eval: error: argument --batch-size: expected a positive integer, got 0$")


@row("cli-eval-unknown-metric", "CLI shoulders eval", "`shoulders eval ... --metric bleu`")
def _(w, tmp):
    return Cli(["eval", "m", "--data", "ok.jsonl", "--metric", "bleu"],
               r"^shoulders eval: error: argument --metric: invalid choice: 'bleu' \(choose from ")


@row("cli-generate-top-p-out-of-range", "CLI shoulders generate", "`shoulders generate m \"the cat\" --top-p 2`")
def _(w, tmp):
    module_copy(w, tmp)
    return Cli(["generate", "m", "the cat", "--top-p", "2"],
               r"^shoulders generate: error: bad sampling flags: top_p must be in \(0, 1\], got 2\.0 ")


@row("cli-generate-n-not-a-number", "CLI shoulders generate", "`shoulders generate m \"the cat\" -n two`")
def _(w, tmp):
    return Cli(["generate", "m", "the cat", "-n", "two"],
               r"^shoulders generate: error: argument -n: expected a positive integer, got 'two'$")


@row("cli-set-without-equals", TRAIN, "`--set train.steps`")
def _(w, tmp):
    put(tmp / "c.yaml", CONFIG_HEAD)
    return Cli(["train", "c.yaml", "--set", "train.steps"],
               r"^shoulders train: error: --set 'train\.steps': expected key=value \(e\.g\. train\.steps=100\)$")


@row("cli-set-value-not-yaml", TRAIN, "`--set train.steps=[1`")
def _(w, tmp):
    put(tmp / "c.yaml", CONFIG_HEAD)
    return Cli(["train", "c.yaml", "--set", "train.steps=[1"],
               r"^shoulders train: error: --set 'train\.steps=\[1': value is not valid YAML \(.+ at line 1, column \d+\)$")


@row("cli-set-not-a-section", TRAIN, "`--set method.name=x`")
def _(w, tmp):
    put(tmp / "c.yaml", CONFIG_HEAD)
    return Cli(["train", "c.yaml", "--set", "method.name=x"],
               r"^shoulders train: error: --set method\.name: 'method' is not a section$")


@row("cli-set-unknown-key", TRAIN, "`--set train.stepz=3`")
def _(w, tmp):
    put(tmp / "c.yaml", CONFIG_HEAD)
    return Cli(["train", "c.yaml", "--set", "train.stepz=3"],
               r"^shoulders train: error: c\.yaml: unknown key 'train\.stepz' \(did you mean 'train\.steps'\?\)$")


@row("cli-command-misspelt", "CLI shoulders", "`shoulders trian c.yaml`")
def _(w, tmp):
    return Cli(["trian", "c.yaml"], r"^shoulders: error: argument COMMAND: invalid choice: 'trian' \(did you mean "
               r"'train'\?\)$")


@row("cli-set-wrong-type", TRAIN, "`--set optim.lr=fast`")
def _(w, tmp):
    put(tmp / "c.yaml", CONFIG_HEAD)
    return Cli(["train", "c.yaml", "--set", "optim.lr=fast"],
               r"^shoulders train: error: c\.yaml: key 'optim\.lr': Input should be a valid number.*\(got 'fast'\)$")


@row("cli-train-missing-config", TRAIN, "`shoulders train nope.yaml`")
def _(w, tmp):
    return Cli(["train", "nope.yaml"], r"^shoulders train: error: nope\.yaml: no such config file$")


@row("cli-train-placeholder-backbone", TRAIN, "a config left with its placeholder backbone (`name_or_path: toy-small`)")
def _(w, tmp):
    write_train_data(tmp)
    data = train_config_data("tr.jsonl")
    data["backbone"]["name_or_path"] = "toy-small"  # as in configs/*.yaml before --set backbone.name_or_path=...
    put(tmp / "c.yaml", json.dumps(data))
    return Cli(["train", "c.yaml", "--no-progress"],
               r"^shoulders train: error: toy-small: cannot load the backbone \(not a local directory; as a hub id: "
               r".+\); expected a hub id or a local directory with config\.json and the tokenizer files$")


@row("cli-import-peft-template-without-input", "CLI shoulders import-peft", "`--template 'Review:'` (no `{input}`)")
def _(w, tmp):
    return Cli(["import-peft", "peft", "back", "--template", "Review:"],
               r"^shoulders import-peft: error: --template 'Review:': must contain \{input\}, where each input goes$")


@row("cli-import-peft-unknown-type", "CLI shoulders import-peft", "an adapter whose `peft_type` is `LORA`")
def _(w, tmp):
    put(tmp / "peft" / "adapter_config.json", json.dumps({"peft_type": "LORA"}))
    return Cli(["import-peft", "peft", "back", "--backbone", str(w.backbone)],
               r"^shoulders import-peft: error: peft/adapter_config\.json: peft_type is 'LORA', expected one of "
               r"\['PREFIX_TUNING', 'PROMPT_TUNING'\]$")


@row("cli-import-peft-prefix-wrong-width", "CLI shoulders import-peft",
     "a `PREFIX_TUNING` adapter whose `prompt_embeddings` are [4, 10] (the backbone needs [P, 128])")
def _(w, tmp):
    import torch
    from safetensors.torch import save_file

    put(tmp / "peft" / "adapter_config.json", json.dumps({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4}))
    save_file({"prompt_embeddings": torch.zeros(4, 10)}, str(tmp / "peft" / "adapter_model.safetensors"))
    return Cli(["import-peft", "peft", "back", "--backbone", str(w.backbone)],
               r"^shoulders import-peft: error: peft/adapter_model\.safetensors: prompt_embeddings has shape "
               r"\(4, 10\), the backbone needs \[num_virtual_tokens, 128\] \(2 layers x 2 x 4 heads x 8\)$")


@row("cli-info-verify-tampered", "CLI shoulders info --verify", "`shoulders info m --verify` on modified weights")
def _(w, tmp):
    m = module_copy(w, tmp)
    data = bytearray((m / "weights.safetensors").read_bytes())
    data[-1] ^= 0x01
    (m / "weights.safetensors").write_bytes(bytes(data))
    return Cli(["info", "m", "--verify"],
               r"^shoulders info: error: m/weights\.safetensors: sha256 does not match module\.json")


@row("cli-generate-unknown-module-type", "CLI shoulders generate", "`shoulders generate` on a module of unknown type")
def _(w, tmp):
    edit_meta(module_copy(w, tmp), lambda m: m.update(module_type="lora"))
    return Cli(["generate", "m", "the cat"], r"^shoulders generate: error: m/module\.json: field 'module_type' is 'lora'")


# --- retrieval corpus files ----------------------------------------------------------------------
PASSAGE = {"id": "p1", "title": "Paris", "text": "Paris is a city."}
CORPUS = "API load_passages"


def corpus_row(name: str, content: str | bytes, pattern: str):
    def make(w, tmp):
        put(tmp / name, content)
        return Api(lambda: load_passages(name), CorpusError, pattern)
    return make


for _id, _what, _name, _content, _pattern in [
    ("corpus-malformed-line", "corpus JSONL: a broken line", "corpus.jsonl", jsonl(PASSAGE, "{not json"),
     r"^corpus\.jsonl:2: invalid JSON \(.+; expected id, title, text\)$"),
    ("corpus-missing-text-field", "corpus JSONL: a passage without `text`", "corpus.jsonl",
     jsonl(PASSAGE, {"id": "p2", "title": "Rome"}), r"^corpus\.jsonl:2: missing field 'text' \(expected id, title, text\)$"),
    ("corpus-empty-text", "corpus JSONL: `text` is only spaces", "corpus.jsonl",
     jsonl({"id": "p2", "title": "Rome", "text": " "}), r"^corpus\.jsonl:1: empty 'text' for passage id 'p2'$"),
    ("corpus-text-not-a-string", "corpus JSONL: `text` is a number", "corpus.jsonl",
     jsonl({"id": "p2", "title": "Rome", "text": 42}), r"^corpus\.jsonl:1: field 'text' must be a string, got int$"),
    ("corpus-duplicate-id", "corpus JSONL: two passages with id `p1`", "corpus.jsonl",
     jsonl(PASSAGE, {**PASSAGE, "text": "again"}), r"^corpus\.jsonl:2: duplicate passage id 'p1' \(first defined on line 1\)$"),
    ("corpus-latin1-bytes", "corpus JSONL: latin-1 bytes on line 2", "corpus.jsonl",
     jsonl(PASSAGE).encode() + '{"id": "p2", "title": "", "text": "café"}\n'.encode("latin-1"),
     r"^corpus\.jsonl:2: not valid UTF-8 \(byte \d+ of the line\); re-encode the file as UTF-8$"),
    ("corpus-tsv-header-lacks-column", "corpus TSV: header without `title`", "psgs.tsv", "id\ttext\n1\tParis is a city.\n",
     r"^psgs\.tsv:1: TSV header \['id', 'text'\] lacks column\(s\) \['title'\] \(expected id, title, text\)$"),
    ("corpus-tsv-wrong-column-count", "corpus TSV: a row with 2 of 3 columns", "psgs.tsv", "id\ttitle\ttext\n1\tParis\n",
     r"^psgs\.tsv:2: expected 3 tab-separated columns \(id, title, text\), got 2$"),
    ("corpus-no-passages", "corpus JSONL: no passages", "corpus.jsonl", "\n", r"^corpus\.jsonl: the corpus has no passages$"),
]:
    row(_id, CORPUS, _what)(corpus_row(_name, _content, _pattern))


def index_row(content: str | bytes, pattern: str, *extra: str):
    """`shoulders index build` over an existing index directory, which must survive the failure."""
    def make(w, tmp):
        put(tmp / "corpus.jsonl", content)
        put(tmp / "idx" / "index.json", '{"format_version": 1, "kind": "bm25", "config": {}}\n')
        return Cli(["index", "build", "--corpus", "corpus.jsonl", "--kind", "bm25", "--out", "idx", *extra], pattern)
    return make


INDEX = "CLI shoulders index build"
for _id, _what, _content, _pattern, _extra in [
    ("cli-index-build-missing-text", "`shoulders index build` on a corpus whose line 2 lacks `text` (existing index dir)",
     jsonl(PASSAGE, {"id": "p2", "title": "Rome"}),
     r"^shoulders index: error: corpus\.jsonl:2: missing field 'text' \(expected id, title, text\)$", ()),
    ("cli-index-build-latin1-corpus", "`shoulders index build` on a latin-1 corpus (existing index dir)",
     '{"id": "p2", "title": "", "text": "café"}\n'.encode("latin-1"),
     r"^shoulders index: error: corpus\.jsonl:1: not valid UTF-8 \(byte \d+ of the line\)", ()),
    ("cli-index-build-unknown-option", "`shoulders index build ... --set k3=1.2`", jsonl(PASSAGE),
     r"^shoulders index: error: --set/flags: unknown option\(s\) \['k3'\] for a bm25 index: expected some of \[",
     ("--set", "k3=1.2")),
    ("cli-index-build-misspelt-option", "`shoulders index build ... --set stemer=english`", jsonl(PASSAGE),
     r"^shoulders index: error: --set/flags: unknown option\(s\) \['stemer'\] for a bm25 index \(did you mean "
     r"'stemmer' for 'stemer'\?\): expected some of \[", ("--set", "stemer=english")),
]:
    row(_id, INDEX, _what)(index_row(_content, _pattern, *_extra))


@row("cli-index-build-stemmer-without-pystemmer", INDEX, "`shoulders index build ... --set stemmer=english` without "
     "PyStemmer installed (existing index dir)")
def _(w, tmp):
    import importlib.util

    if importlib.util.find_spec("Stemmer") is not None:
        pytest.skip("PyStemmer is installed here")
    return index_row(jsonl(PASSAGE), r"^shoulders index: error: --set/flags: BM25Config\.stemmer='english' needs the "
                     r"optional PyStemmer package: pip install PyStemmer$", "--set", "stemmer=english")(w, tmp)


row("cli-index-build-missing-corpus", INDEX, "`shoulders index build --corpus nope.jsonl`")(lambda w, tmp: Cli(
    ["index", "build", "--corpus", "nope.jsonl", "--kind", "bm25", "--out", "idx"],
    r"^shoulders index: error: nope\.jsonl: corpus file not found$"))
row("cli-index-query-broken-index-json", "CLI shoulders index query", "`shoulders index query` on an index whose "
    "index.json is cut short")(lambda w, tmp: (put(tmp / "idx" / "index.json", '{"format_version": 1,\n'), Cli(
        ["index", "query", "idx", "who"],
        r"^shoulders index: error: idx/index\.json: invalid JSON \(Expecting property name enclosed in double quotes "
        r"at line 2\)$"))[1])


@row("cli-index-query-questions-without-text", "CLI shoulders index query", "`shoulders index query idx --questions "
     "qs.jsonl --out hits.jsonl` on a file with neither `question` nor `input`")
def _(w, tmp):
    from shoulders.reader.retrieval import build_index

    put(tmp / "corpus.jsonl", jsonl(PASSAGE))
    build_index("corpus.jsonl", "bm25", "idx", show_progress=False)
    put(tmp / "qs.jsonl", jsonl({"input": "who"}, {"id": "q2", "text": "where"}))
    return Cli(["index", "query", "idx", "--questions", "qs.jsonl", "--out", "hits.jsonl"],
               r"^shoulders index: error: qs\.jsonl:2: missing string field 'question' or 'input' \(expected question "
               r"or input\[, id\]\)$")


# --- HTTP requests (more in tests/serving/test_errors.py) ------------------------------------------
def modules_dir(w: World, tmp: Path) -> Path:
    root = tmp / "modules"
    shutil.copytree(w.module, root / "pt")
    return root


HTTP = "HTTP POST /v1/completions"


@row("http-unknown-model", HTTP, "`{\"model\": \"no-such-module\"}`")
def _(w, tmp):
    return Http(modules_dir(w, tmp), "POST", "/v1/completions", 404, "model_not_found",
                r"^404 model_not_found: model 'no-such-module' not found \(GET /v1/models lists the served modules\)$",
                body={"model": "no-such-module", "prompt": "x"})


@row("http-path-like-model-name", HTTP, "`{\"model\": \"../pt\"}`")
def _(w, tmp):
    return Http(modules_dir(w, tmp), "POST", "/v1/completions", 400, "invalid_model_name",
                r"^400 invalid_model_name: invalid model name '\.\./pt': expected a module directory name ",
                body={"model": "../pt", "prompt": "x"})


@row("http-malformed-json", HTTP, "a body cut off mid-object")
def _(w, tmp):
    return Http(modules_dir(w, tmp), "POST", "/v1/completions", 422, "invalid_json",
                r"^422 invalid_json: request body is not valid JSON: Expecting value$",
                content=b'{"model": "pt", "prompt": ', headers={"content-type": "application/json"})


@row("http-max-tokens-zero", HTTP, "`\"max_tokens\": 0`")
def _(w, tmp):
    return Http(modules_dir(w, tmp), "POST", "/v1/completions", 422, "invalid_parameters",
                r"^422 invalid_parameters: max_tokens: Input should be greater than or equal to 1$",
                body={"model": "pt", "prompt": "x", "max_tokens": 0})


@row("http-unknown-field", HTTP, "`\"max_tokenz\": 3`")
def _(w, tmp):
    return Http(modules_dir(w, tmp), "POST", "/v1/completions", 422, "invalid_parameters",
                r"^422 invalid_parameters: max_tokenz: Extra inputs are not permitted$",
                body={"model": "pt", "prompt": "x", "max_tokenz": 3})


@row("http-chat-without-template", "HTTP POST /v1/chat/completions", "a chat request to a backbone whose tokenizer has no chat template")
def _(w, tmp):
    return Http(modules_dir(w, tmp), "POST", "/v1/chat/completions", 400, "no_chat_template",
                r"^400 no_chat_template: the backbone '.*gpt2' has no chat template \(its tokenizer sets no "
                r"chat_template\): use /v1/completions",
                body={"model": "pt", "messages": [{"role": "user", "content": "x"}]})


@row("http-tampered-module-is-skipped", "HTTP (modules directory) GET /admin/modules", "a module with modified weights in the served directory")
def _(w, tmp):
    root = modules_dir(w, tmp)
    shutil.copytree(w.module, root / "bad")
    data = bytearray((root / "bad" / "weights.safetensors").read_bytes())
    data[-1] ^= 0x01
    (root / "bad" / "weights.safetensors").write_bytes(bytes(data))
    return Http(root, "GET", "/admin/modules", 200, "", r"^skipped 'bad': .*bad/weights\.safetensors: sha256 does not match",
                skipped="bad")


# ----------------------------------------------------------------------------- the test
def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with the sha256 of its bytes: a change, an addition or a leftover
    temporary file shows up as a difference."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], capsys) -> str:
    capsys.readouterr()
    try:
        rc = main(["-q", *argv])
    except SystemExit as e:  # argparse refusals exit here, with their usage line
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


def run_http(exp: Http, world: World) -> str:
    from fastapi.testclient import TestClient

    from shoulders.serving import ServeSettings, create_app

    settings = ServeSettings(modules_dir=exp.modules, rescan_interval=0)
    with TestClient(create_app(settings, world.lm)) as client:
        r = client.request(exp.method, exp.url, json=exp.body, content=exp.content, headers=exp.headers)
        served = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert served == ["pt"], served  # the good module is served whatever else is wrong
    assert r.status_code == exp.status, r.text
    if exp.skipped:
        return f"skipped {exp.skipped!r}: {r.json()['skipped'][exp.skipped]}"
    err = r.json()["error"]
    assert err["code"] == exp.code, err
    return f"{r.status_code} {err['code']}: {err['message']}"


def normalise(message: str, tmp: Path, world: World) -> str:
    return message.replace(str(tmp), "<tmp>").replace(str(world.root), "<root>")


def documented() -> dict[str, tuple[str, str, str]]:
    """Row id -> (input, where it enters, message) from the table in docs/BAD_INPUTS.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and re.fullmatch(r"`[a-z0-9-]+`", cells[3]):
            message = re.sub(r"^(`+) ?(.*?) ?\1$", r"\2", cells[2]).replace("\\|", "|")
            rows[cells[3].strip("`")] = (cells[0], cells[1], message)
    return rows


@pytest.mark.parametrize("row_id", list(ROWS))
def test_bad_input(row_id, world, tmp_path, capsys, monkeypatch):
    what, entry, make = ROWS[row_id]
    monkeypatch.chdir(tmp_path)  # relative names in messages; nothing can land in the repository
    exp = make(world, tmp_path)
    before = snapshot(tmp_path)
    if isinstance(exp, Api):
        with pytest.raises(exp.error) as caught:
            exp.call()
        assert isinstance(caught.value, ShouldersError), type(caught.value)
        message = str(caught.value)
    elif isinstance(exp, Cli):
        message = run_cli(exp.argv, capsys)
    else:
        message = run_http(exp, world)
    assert "\n" not in message, message
    assert re.search(exp.pattern, message), message
    assert snapshot(tmp_path) == before, "the failed call changed, added or removed files"
    message = normalise(message, tmp_path, world)
    if os.environ.get("SHOULDERS_BAD_INPUTS_RECORD"):
        with open(os.environ["SHOULDERS_BAD_INPUTS_RECORD"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"id": row_id, "input": what, "entry": entry, "message": message}) + "\n")
    else:
        doc = documented()
        assert row_id in doc, f"{row_id} is missing from {DOC}"
        assert doc[row_id] == (what, entry, message), f"docs/BAD_INPUTS.md has {doc[row_id]!r}"


def test_table_lists_exactly_these_rows():
    doc = documented()
    assert len(ROWS) >= 30
    assert sorted(doc) == sorted(ROWS)


# ----------------------------------------------------------------------------- the table
SECTIONS = [  # (title, row-id prefixes)
    ("Data files (`load_examples`, `shoulders eval --data`, task files of a config)", ("data-",)),
    ("Configs (YAML for `shoulders train`)", ("config-",)),
    ("Module directories", ("module-",)),
    ("Checkpoints (resuming into an existing output_dir)", ("checkpoint-",)),
    ("CLI arguments", ("cli-command-", "cli-eval-", "cli-generate-", "cli-set-", "cli-train-", "cli-import-",
                       "cli-info-")),
    ("Retrieval corpus files", ("corpus-", "cli-index-")),
    ("HTTP requests (`shoulders serve`)", ("http-",)),
]

INTRO = """\
# Bad inputs and what they get

Every row is a test in `tests/test_bad_inputs.py` (`test_bad_input[<test id>]`). Each test
feeds the bad input, checks the error kind (a `ShouldersError` subclass from the API; exit
code 2 and one `error:` line with no traceback from the CLI; a JSON error body from the
server), checks the message with a pattern naming the file, line or field, and checks that
every file already on disk (data files, an existing output directory, module directory,
checkpoint or index) is byte-identical afterwards, with no file or temporary directory
added. The messages below are copied from a run; the test also fails if a message here
differs from the one the code gives. Paths under the test's temporary directory are
relative (the test runs there); `<root>` is the shared tiny backbones' directory.

Regenerate after changing a message:

    SHOULDERS_BAD_INPUTS_RECORD=/tmp/rows.jsonl python -m pytest tests/test_bad_inputs.py -k "not table"
    python -m tests.test_bad_inputs /tmp/rows.jsonl   # rewrites this file

"""

OUTRO = """\
More HTTP refusals are covered by `tests/serving/test_errors.py` against a real server
process: path-like model names in the body and the URL (`test_path_like_model_names_are_refused`,
`test_path_like_names_in_the_url_never_resolve`, 400), malformed JSON and bad fields
(`test_malformed_json_and_bad_fields_are_422`, 422), oversized bodies with and without
Content-Length (`test_oversized_body_is_413`, 413), unsupported parameters, `n` and
`max_tokens` over the limits and prompts over the context window
(`test_unsupported_and_out_of_range_requests_are_400`, 400), `/v1/answer` on a module that
is not a reader (`test_answer_needs_a_reader`, 400), a missing or wrong API key
(`test_api_key_from_env_is_enforced`, 401), the prompt token limit (`test_prompt_token_limit`,
400) and a full queue (`test_full_queue_is_429`, 429 with Retry-After).
"""


def _cell(text: str, code: bool = False) -> str:
    text = text.replace("|", "\\|")
    if not code:
        return text
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_table(records: list[dict]) -> str:
    by_id = {r["id"]: r for r in records}
    missing = sorted(set(ROWS) - set(by_id))
    assert not missing, f"no recorded message for {missing}"
    out = [INTRO]
    placed = set()
    for title, prefixes in SECTIONS:
        ids = [i for i in ROWS if i.startswith(prefixes) and i not in placed]
        placed.update(ids)
        out.append(f"## {title}\n\n| Input | Enters through | Message | Test id |\n|---|---|---|---|\n")
        for i in ids:
            r = by_id[i]
            out.append(f"| {_cell(r['input'])} | {_cell(r['entry'])} | {_cell(r['message'], code=True)} | `{i}` |\n")
        out.append("\n")
    assert placed == set(ROWS), sorted(set(ROWS) - placed)
    out.append(f"{len(ROWS)} rows.\n\n")
    out.append(OUTRO)
    return "".join(out)


if __name__ == "__main__":
    import sys

    from shoulders.utils.fs import atomic_write_text

    with open(sys.argv[1], encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    atomic_write_text(DOC, render_table(recs))
    print(f"wrote {DOC} ({len(ROWS)} rows)")
