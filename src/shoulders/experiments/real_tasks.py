"""A real-English check of the multi-task comparison: SST-2, MRPC, RTE and BoolQ.

Only the dev sets of these benchmarks are shipped (../shared/data), so each file is
split here into train / dev / test with a fixed seed (`SPLIT_SEED` = 0, a seeded
shuffle; `TEST_FRACTION` of the file is test, `DEV_FRACTION` is dev for model
selection, the rest trains), with caps so the run takes minutes on a CPU. Each example
is rendered through a P3-style natural-language template and scored by rank
classification over the task's label words (accuracy, T0-style). The three methods of
`run_multitask` (shared prompt, ID-PT, fine-tuning) train on the four-task mixture.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

from pydantic import ConfigDict, Field

from shoulders.data.examples import Example, Task
from shoulders.data.loaders import DataError, iter_records
from shoulders.utils.strict_model import StrictModel

SPLIT_SEED = 0
TEST_FRACTION = 0.4
DEV_FRACTION = 0.1
MAX_WORDS = 60  # long fields (BoolQ passages, RTE premises) keep their first MAX_WORDS words


class Caps(StrictModel):
    """Examples per task and split (after the seeded split)."""

    model_config = ConfigDict(frozen=True)

    train: int = Field(400, ge=1, description="training examples per task, at most")
    dev: int = Field(40, ge=1, description="dev examples per task (model selection), at most")
    test: int = Field(200, ge=1, description="test examples per task (the reported scores), at most")


FULL_CAPS, QUICK_CAPS = Caps(), Caps(train=200, dev=24, test=100)


def data_dir(path: str | Path | None = None) -> Path:
    """Argument, else $SHOULDERS_DATA, else <repo>/../shared/data."""
    if path:
        return Path(path)
    if os.environ.get("SHOULDERS_DATA"):
        return Path(os.environ["SHOULDERS_DATA"])
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _short(text: str) -> str:
    words = text.split()
    return " ".join(words[:MAX_WORDS]) + (" ..." if len(words) > MAX_WORDS else "")


def _field(rec: dict, key: str, path: Path, line) -> str:
    if key not in rec or not str(rec[key]).strip():
        raise DataError(f"{path}:{line}: missing or empty field {key!r} (fields present: {', '.join(rec)})")
    return str(rec[key]).strip()


def _sst2(rec, path, line):
    label = _field(rec, "label", path, line)
    text = f"Review: {_short(_field(rec, 'sentence', path, line))}\nIs this review positive or negative?"
    return text, ["negative", "positive"][int(label)], ["negative", "positive"]


def _mrpc(rec, path, line):
    a, b = _field(rec, "#1 String", path, line), _field(rec, "#2 String", path, line)
    text = f"Sentence 1: {_short(a)}\nSentence 2: {_short(b)}\nDo these two sentences mean the same thing? Yes or no?"
    return text, ["no", "yes"][int(_field(rec, "Quality", path, line))], ["no", "yes"]


def _rte(rec, path, line):
    label = _field(rec, "label", path, line)
    if label not in ("entailment", "not_entailment"):
        raise DataError(f"{path}:{line}: field 'label' is {label!r}, expected entailment or not_entailment")
    text = (f"{_short(_field(rec, 'premise', path, line))}\nQuestion: does this mean that "
            f"\"{_field(rec, 'hypothesis', path, line)}\"? Yes or no?")
    return text, "yes" if label == "entailment" else "no", ["yes", "no"]


def _boolq(rec, path, line):
    label = str(rec.get("label", "")).strip().lower()
    if label not in ("true", "false"):
        raise DataError(f"{path}:{line}: field 'label' is {rec.get('label')!r}, expected true or false")
    text = (f"Question: {_field(rec, 'question', path, line)}?\nPassage: {_short(_field(rec, 'passage', path, line))}"
            "\nAnswer yes or no:")
    return text, "yes" if label == "true" else "no", ["no", "yes"]


# name -> (file, reader, cluster)
TASKS = {
    "sst2": ("sst2-dev.tsv", _sst2, "sentiment"),
    "mrpc": ("mrpc-dev.tsv", _mrpc, "paraphrase"),
    "rte": ("rte-dev.superglue.jsonl", _rte, "NLI"),
    "boolq": ("boolq-dev.superglue.jsonl", _boolq, "reading QA"),
}


def load_real_task(name: str, directory: Path, caps: Caps = FULL_CAPS) -> Task:
    """One benchmark's dev file as a Task split train/dev/test by `SPLIT_SEED`."""
    file, reader, cluster = TASKS[name]
    path = directory / file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (pass --data-dir or set SHOULDERS_DATA)")
    examples = []
    for line, rec in iter_records(path):
        text, target, choices = reader(rec, path, line)
        examples.append(Example(input=text, target=target, task=name, id=f"{name}-{line}", choices=choices))
    random.Random(f"{SPLIT_SEED}-{name}").shuffle(examples)
    n_test, n_dev = int(TEST_FRACTION * len(examples)), int(DEV_FRACTION * len(examples))
    test, dev, train = examples[:n_test], examples[n_test : n_test + n_dev], examples[n_test + n_dev :]
    return Task(name=name, train=train[: caps.train], dev=dev[: caps.dev], test=test[: caps.test],
                metric="accuracy", cluster=cluster)


def load_real_tasks(directory: str | Path | None = None, quick: bool = False) -> list[Task]:
    d = data_dir(directory)
    return [load_real_task(n, d, QUICK_CAPS if quick else FULL_CAPS) for n in TASKS]


def majority_baseline(tasks: list[Task]) -> dict[str, float]:
    """Test accuracy (%) of always answering the most frequent training label: the floor to beat."""
    out = {}
    for t in tasks:
        labels = [ex.target for ex in t.train]
        top = max(set(labels), key=labels.count)
        out[t.name] = 100.0 * sum(ex.target == top for ex in t.test) / len(t.test)
    return out


def run_real_tasks(backbone_path: str, *, data: str | Path | None = None, seeds: list[int] = (0,), quick: bool = False,
                   out_dir: str | Path = "runs/real_tasks", encoder_path: str | None = None,
                   progress: bool = True) -> dict:
    """The three-way comparison on the four English tasks; writes real_tasks.md and .json."""
    from shoulders.experiments.multitask import Budget, run_multitask
    from shoulders.utils.fs import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    tasks = load_real_tasks(data, quick)
    budget = Budget(steps=60, eval_every=30, eval_max_examples=24, max_new_tokens=4) if quick else \
        Budget(steps=200, eval_every=50, eval_max_examples=40, max_new_tokens=4)
    section = run_multitask(tasks, backbone_path, seeds=list(seeds), quick=quick, out_dir=out_dir,
                            encoder_path=encoder_path, progress=progress, budget=budget)
    section["majority_baseline"] = majority_baseline(tasks)
    section["split"] = {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION, "dev_fraction": DEV_FRACTION,
                        "max_words": MAX_WORDS, "sizes": {t.name: [len(t.train), len(t.dev), len(t.test)] for t in tasks}}
    rows = " | ".join(f"{t.name} {section['majority_baseline'][t.name]:.1f}" for t in tasks)
    md = (f"## Real English tasks (backbone: {backbone_path})\n\n{section['table_markdown']}\n\n"
          f"Majority-label test accuracy: {rows}. Each dev file is split train/dev/test with seed {SPLIT_SEED} "
          f"({int(100 * TEST_FRACTION)}% test, {int(100 * DEV_FRACTION)}% dev).\n")
    atomic_write_text(out_dir / "real_tasks.md", md)
    atomic_write_json(out_dir / "real_tasks.json", section)
    section["markdown"] = md
    return section
