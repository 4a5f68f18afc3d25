"""A small sentiment-like task that a prompt on a tiny random backbone can learn."""
from __future__ import annotations

import random

from shoulders.data.examples import Example, Task

POS = ["happy", "good", "great", "loved", "fun"]
NEG = ["sad", "bad", "awful", "hated", "boring"]
FILL = ["the", "movie", "film", "story", "plot", "actor", "ending", "was", "this", "a"]


def keyword_task(n_train: int = 400, n_dev: int = 100, seed: int = 0, name: str = "sentiment") -> Task:
    rng = random.Random(seed)

    def make(n):
        out = []
        for _ in range(n):
            label = rng.random() < 0.5
            words = [rng.choice(FILL) for _ in range(rng.randint(3, 6))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
            out.append(Example(input=" ".join(words) + " sentiment:", target="yes" if label else "no",
                               task=name, choices=["yes", "no"]))
        return out

    return Task(name=name, train=make(n_train), dev=make(n_dev), test=make(n_dev), metric="accuracy", cluster=name)


def write_keyword_jsonl(directory, n_train: int = 64, n_dev: int = 8):
    """keyword_task's train and dev splits as `{input, target}` JSONL files in `directory`
    (created), for tests that train from a YAML config; returns the directory."""
    import json
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    task = keyword_task(n_train, n_dev)
    for split in ("train", "dev"):
        with open(directory / f"{split}.jsonl", "w") as f:
            for ex in task.split(split):
                f.write(json.dumps({"input": ex.input, "target": ex.target}) + "\n")
    return directory


def write_keyword_config(directory, backbone, name: str, *, train: str, optim: str = "lr: 0.05",
                         init: str = "random", fsdp: bool = False):
    """A prompt-tuning YAML config `directory/name.yaml` that trains on write_keyword_jsonl's
    splits (in `directory/data`) into `directory/name`; `train` and `optim` are the insides
    of their `{...}` mappings, the settings each test is about. Returns the config's path."""
    from pathlib import Path

    directory = Path(directory)
    data = write_keyword_jsonl(directory / "data")
    cfg = directory / f"{name}.yaml"
    cfg.write_text(f"""
method: prompt_tuning
backbone: {{name_or_path: {backbone}, device: cpu{', fsdp: true' if fsdp else ''}}}
module: {{num_virtual_tokens: 4, init: {init}}}
optim: {{{optim}}}
tasks: [{{name: kw, train: {data / 'train.jsonl'}, dev: {data / 'dev.jsonl'}, metric: accuracy}}]
train: {{{train}}}
output_dir: {directory / name}
""")
    return cfg
