"""A stand-in for the toyworld closed-book set: develop and check recursion without it.

People are born in cities; cities lie in countries. The corpus states both links in
varied wording and asks 1-hop questions in `Q: ... A: ...` lines, one fact per line;
it never states a person's country, so "In which country was X born?" needs two
stored facts composed inside the model: the case a second pass is meant to help with.
Two Llama backbones (~1.5M and ~3M parameters by default) are pre-trained on it from
scratch, with a BPE tokenizer trained on the corpus.

`shoulders experiment recursion-standin OUT_DIR [--quick]` writes OUT_DIR/{small,large}
(backbones), OUT_DIR/closedbook/{train,dev,test}.jsonl and OUT_DIR/corpus.txt, which
the example configs `configs/*recursion*_tiny_cpu.yaml` train on.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from pydantic import Field, model_validator

from shoulders.data.examples import Example, Task
from shoulders.toyworld.tiny_lm import byte_bpe, llama_config
from shoulders.train import loop
from shoulders.utils.strict_model import StrictModel

BORN = ("{p} was born in {c}.", "{p} is a native of {c}.", "The birthplace of {p} is {c}.",
        "{c} is the hometown of {p}.", "{p} comes from {c}.")
LIES = ("{c} is a city in {k}.", "{c} lies in {k}.", "{c} is located in {k}.", "The city of {c} is part of {k}.")
ASK_BORN = ("Where was {p} born?", "In which city was {p} born?", "What is the birthplace of {p}?")
ASK_LIES = ("In which country is {c}?", "Which country is {c} located in?", "{c} is a city in which country?")
ASK_CHAIN = ("In which country was {p} born?", "{p} was born in which country?", "What is the country of birth of {p}?")
_C, _V = "bdfgklmnprstvz", "aeiou"


class StandinConfig(StrictModel):
    """The stand-in world, its corpus and its closed-book splits."""

    n_people: int = Field(150, ge=1, description="people, each born in one city")
    n_cities: int = Field(18, ge=1, description="cities, spread round-robin over the countries")
    n_countries: int = Field(6, ge=1, description="countries")
    passes: int = Field(12, ge=1, description="each pass restates every fact once and asks it in a Q/A line with "
                        "p = qa_share")
    qa_share: float = Field(0.5, ge=0, le=1, description="probability that a pass also asks each birthplace fact in a "
                            "Q/A line")
    dev_frac: float = Field(0.2, ge=0, le=1, description="share of the questions (of each hop count) in dev; large "
                            "dev and test splits: EM differences of a few points must be measurable")
    test_frac: float = Field(0.5, ge=0, le=1, description="share of the questions (of each hop count) in test")
    vocab_size: int = Field(1024, ge=259, description="BPE vocabulary, special tokens and the 256 byte symbols "
                            "included")
    seed: int = Field(0, description="seeds the world, the corpus and the splits")

    @model_validator(mode="after")
    def _check(self):
        if self.dev_frac + self.test_frac > 1:
            raise ValueError(f"dev_frac + test_frac must be <= 1, got {self.dev_frac} + {self.test_frac}")
        return self


class BackboneSize(StrictModel):
    """The shape of one stand-in backbone (a Llama) and its pre-training length."""

    hidden: int = Field(ge=1, description="hidden size; a multiple of heads")
    layers: int = Field(ge=1, description="decoder layers")
    heads: int = Field(ge=1, description="attention heads")
    ffn: int = Field(ge=1, description="MLP (intermediate) size")
    steps: int = Field(ge=1, description="pre-training steps of 16 x 128 tokens")

    @model_validator(mode="after")
    def _check(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


SMALL = BackboneSize(hidden=160, layers=4, heads=4, ffn=480, steps=700)  # ~1.5M parameters
LARGE = BackboneSize(hidden=224, layers=4, heads=4, ffn=672, steps=700)  # ~2.9M parameters
QUICK = StandinConfig(n_people=60, n_cities=10, n_countries=4, passes=12)
QUICK_SMALL = BackboneSize(hidden=96, layers=2, heads=4, ffn=288, steps=300)
QUICK_LARGE = BackboneSize(hidden=128, layers=2, heads=4, ffn=384, steps=300)


def _name(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_C) + rng.choice(_V) for _ in range(syllables)).capitalize()


def build_world(cfg: StandinConfig) -> dict:
    rng = random.Random(f"standin-{cfg.seed}")
    names: set[str] = set()

    def fresh(make):
        while (n := make()) in names:
            pass
        names.add(n)
        return n

    countries = [fresh(lambda: _name(rng, 2) + rng.choice(["ia", "land"])) for _ in range(cfg.n_countries)]
    cities = [fresh(lambda: _name(rng, rng.choice([2, 3]))) for _ in range(cfg.n_cities)]
    people = [fresh(lambda: f"{_name(rng, 2)} {_name(rng, rng.choice([2, 3]))}") for _ in range(cfg.n_people)]
    country = {c: countries[i % len(countries)] for i, c in enumerate(cities)}
    born = {p: rng.choice(cities) for p in people}
    return {"people": people, "cities": cities, "countries": countries, "born": born, "country": country}


def build_corpus(world: dict, cfg: StandinConfig) -> list[str]:
    rng = random.Random(f"standin-corpus-{cfg.seed}")
    lines = []
    for _ in range(cfg.passes):
        for p, c in world["born"].items():
            lines.append(rng.choice(BORN).format(p=p, c=c))
            if rng.random() < cfg.qa_share:
                lines.append(f"Q: {rng.choice(ASK_BORN).format(p=p)} A: {c}")
        for c, k in world["country"].items():
            lines.append(rng.choice(LIES).format(c=c, k=k))
            lines.append(f"Q: {rng.choice(ASK_LIES).format(c=c)} A: {k}")
    rng.shuffle(lines)
    return lines


def build_task(world: dict, cfg: StandinConfig) -> Task:
    """Closed-book QA; `meta["hops"]` is 1 or 2; splits stratified by hop count."""
    rng = random.Random(f"standin-task-{cfg.seed}")
    ones = [Example(rng.choice(ASK_BORN).format(p=p), c, "closedbook_qa", meta={"hops": 1})
            for p, c in world["born"].items()]
    ones += [Example(rng.choice(ASK_LIES).format(c=c), k, "closedbook_qa", meta={"hops": 1})
             for c, k in world["country"].items()]
    twos = [Example(rng.choice(ASK_CHAIN).format(p=p), world["country"][c], "closedbook_qa", meta={"hops": 2})
            for p, c in world["born"].items()]
    task = Task("closedbook_qa", metric="exact_match", cluster="closed-book QA")
    for group in (ones, twos):
        rng.shuffle(group)
        n_dev, n_test = int(len(group) * cfg.dev_frac), int(len(group) * cfg.test_frac)
        task.dev += group[:n_dev]
        task.test += group[n_dev:n_dev + n_test]
        task.train += group[n_dev + n_test:]
    for i, ex in enumerate(task.train + task.dev + task.test):
        ex.id = f"sb{ex.meta['hops']}-{i:05d}"
    return task


def train_tokenizer(lines: list[str], out_dir: Path, vocab_size: int):
    fast = byte_bpe(lines, vocab_size)
    fast.save_pretrained(out_dir)
    return fast


def pretrain_backbone(lines: list[str], tok_dir: Path, out_dir: Path, size: BackboneSize, seed: int = 0,
                      seq_len: int = 128, batch_size: int = 16, lr: float = 3e-3) -> dict:
    """Train a Llama from scratch on the corpus (packed lines, warm-up + cosine); save it."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    cfg = llama_config(tok, hidden=size.hidden, layers=size.layers, heads=size.heads, intermediate=size.ffn,
                       max_positions=256)
    model = LlamaForCausalLM(cfg)
    ids = [t + [tok.eos_token_id] for t in tok(lines)["input_ids"]]
    rng = random.Random(seed)

    def packed_rows():  # lines re-shuffled and re-packed every epoch, so a fact never has fixed neighbours
        while True:
            order = rng.sample(ids, len(ids))
            flat = [i for t in order for i in t]
            rows = torch.tensor(flat[: len(flat) // seq_len * seq_len]).view(-1, seq_len)
            yield from rows.split(batch_size)

    batches = packed_rows()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    start, model = time.time(), model.train()
    for step in range(size.steps):
        loop.set_lr(opt, loop.warmup_times_cosine_floor(step, size.steps, lr, warmup=50, floor=0.1))
        batch = next(batches)
        loss = loop.step(model(input_ids=batch, labels=batch).loss, opt, params=model.parameters(), max_grad_norm=1.0)
    model.eval().save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    stats = {"params": sum(p.numel() for p in model.parameters()), "final_loss": round(loss, 4),
             "wall_s": round(time.time() - start, 1), "size": size.model_dump()}
    (out_dir / "pretrain.json").write_text(json.dumps(stats, indent=2))
    return stats


def build_standin(out_dir: str | Path, cfg: StandinConfig | None = None, small: BackboneSize = SMALL,
                  large: BackboneSize = LARGE, only: str | None = None) -> tuple[Task, list[str], Path, Path]:
    """(task, corpus lines, small path, large path); backbones already in out_dir are reused.
    `only="small"` or `"large"` pre-trains just that one (e.g. two processes in parallel)."""
    cfg = cfg or StandinConfig()
    out = Path(out_dir)
    world = build_world(cfg)
    corpus, task = build_corpus(world, cfg), build_task(world, cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.txt").write_text("\n".join(corpus) + "\n")
    (out / "closedbook").mkdir(exist_ok=True)
    for split in ("train", "dev", "test"):
        (out / "closedbook" / f"{split}.jsonl").write_text(
            "".join(json.dumps(ex.to_dict()) + "\n" for ex in task.split(split)))
    if not (out / "tokenizer" / "tokenizer.json").exists():
        train_tokenizer(corpus, out / "tokenizer", cfg.vocab_size)
    for name, size in (("small", small), ("large", large)):
        if only in (None, name) and not (out / name / "pretrain.json").exists():
            pretrain_backbone(corpus, out / "tokenizer", out / name, size, seed=cfg.seed)
    return task, corpus, out / "small", out / "large"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shoulders experiment recursion-standin", description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--quick", action="store_true", help="a smaller world and shorter pre-training")
    ap.add_argument("--only", choices=["small", "large"], help="pre-train only this backbone")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        build_standin(args.out_dir, QUICK, QUICK_SMALL, QUICK_LARGE, only=args.only)
    else:
        build_standin(args.out_dir, only=args.only)
    print(json.dumps({n: json.loads((Path(args.out_dir) / n / "pretrain.json").read_text())
                      for n in ("small", "large") if (Path(args.out_dir) / n / "pretrain.json").exists()}, indent=2))
    return 0
