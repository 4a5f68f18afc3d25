"""Fixtures for the reader tests: a tiny passage corpus, a tiny BPE tokenizer, and the
bundled MiniLM (loads offline in ~2 s; built once per session)."""
from __future__ import annotations

import json
import random

import pytest

from shoulders.reader.corpus import Passage

TEXTS = [
    ("Paris", "Paris is the capital and largest city of France, on the river Seine."),
    ("Berlin", "Berlin is the capital of Germany and its most populous city."),
    ("Rome", "Rome was the capital of the Roman Empire and is the capital of Italy."),
    ("Cat", "The cat is a small domesticated carnivorous mammal that hunts mice."),
    ("Dog", "The dog is a domesticated descendant of the wolf, kept as a loyal pet."),
    ("Nile", "The Nile is a major river in northeastern Africa flowing into the Mediterranean."),
    ("Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("Python", "Python is a programming language that emphasises code readability."),
    ("Moon", "The Moon is Earth's only natural satellite, first visited by Apollo 11 in 1969."),
    ("Tea", "Tea is an aromatic beverage prepared by pouring hot water over cured leaves."),
    ("Chess", "Chess is a board game for two players played on a checkered board of 64 squares."),
    ("Jazz", "Jazz is a music genre that originated in New Orleans in the late 19th century."),
]


@pytest.fixture(scope="session")
def passages() -> list[Passage]:
    return [Passage(f"p{i}", t, x) for i, (t, x) in enumerate(TEXTS)]


@pytest.fixture()
def corpus_file(tmp_path, passages):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in passages), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def dense(passages):
    from shoulders.reader.retrieval import DenseRetriever

    r = DenseRetriever()
    r.build(passages, show_progress=False)
    return r


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE tokenizer trained here (no hub): merges make token counts non-additive."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    words = " ".join(x for _, x in TEXTS).split()
    corpus = [" ".join(rng.choice(words) for _ in range(15)) for _ in range(300)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
