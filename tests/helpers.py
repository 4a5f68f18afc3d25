"""Builders for tiny offline backbones and small synthetic tasks used across the tests."""
from __future__ import annotations

import random
from pathlib import Path

import torch

WORDS = (
    "the a cat dog bird fish red blue green happy sad good bad great awful movie film "
    "story actor plot ending loved hated liked boring fun yes no paris london rome "
    "berlin city country river mountain question answer review sentiment positive "
    "negative what where who is was born in of and to it this that"
).split()


def train_tokenizer(out_dir: Path, vocab_size: int = 400):
    from shoulders.toyworld.tiny_lm import byte_bpe

    rng = random.Random(0)
    fast = byte_bpe([" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)], vocab_size)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_backbone(out_dir: Path, family: str, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM

    from shoulders.toyworld.tiny_lm import llama_config

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out_dir)
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = GPT2Config(
            vocab_size=len(tok), n_positions=256, n_embd=hidden, n_layer=layers, n_head=4,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        model = GPT2LMHeadModel(cfg)
    elif family == "llama":
        model = LlamaForCausalLM(llama_config(tok, hidden=hidden, layers=layers, heads=4, intermediate=hidden * 2,
                                              max_positions=256, kv_heads=2, tied=False))
    else:
        raise ValueError(family)
    model.save_pretrained(out_dir)
    return out_dir


def _review(rng: random.Random) -> tuple[str, bool]:
    from tests.tasks_fixture import FILL, NEG, POS

    label = rng.random() < 0.5
    words = [rng.choice(FILL) for _ in range(rng.randint(2, 4))] + [rng.choice(POS if label else NEG)]
    return " ".join(words), label


def skill_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """Two modes, told apart by the first word: after `review:` the answer is the
    sentiment of the last word, after `topic:` it is the first word. A prompt that
    learns to play the part of `review:` turns the bare text into a sentiment answer."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        text, label = _review(rng)
        if rng.random() < 0.25:  # the rarer mode: without its mode word the LM answers a topic
            lines.append(f"review: {text} answer: {'yes' if label else 'no'}")
        else:
            lines.append(f"topic: {text} answer: {text.split()[0]}")
    return lines


def mode_task(n_train: int = 400, n_dev: int = 100, seed: int = 1, name: str = "sentiment"):
    """The review mode without its mode word: only a learned prompt can supply it."""
    from shoulders.data.examples import Example, Task

    rng = random.Random(seed)

    def make(n):
        out = []
        for _ in range(n):
            text, label = _review(rng)
            out.append(Example(input=f"{text} answer:", target="yes" if label else "no", task=name))
        return out

    return Task(name=name, train=make(n_train), dev=make(n_dev), test=make(n_dev), metric="accuracy", cluster=name)


def pretrain_tiny_backbone(out_dir: Path, family: str, *, steps: int = 300, hidden: int = 64, layers: int = 2,
                           seed: int = 0) -> Path:
    """A tiny backbone that has learned a skill (label after a cue), for tests of learning."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_backbone(out_dir, family, hidden=hidden, layers=layers, seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    lines = skill_corpus(seed=seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = [lines[(step * 32 + i) % len(lines)] + tok.eos_token for i in range(32)]
        enc = tok(batch, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(path)
    return path
