"""A stand-in for the toyworld multi-task suite: eight small prompted tasks in the P3
clusters and a tiny Llama that learned each task's *skill* behind a mode word.

Pre-training lines read `<mode>: <content> answer: <answer>`; the downstream tasks render
the same content through natural-language templates that never contain the mode word.
So a frozen LM needs something to say which skill an input calls for: a shared prompt
can supply one mode for the whole mixture, a per-input prompt can supply the right one
for each input (the task identity that ID-PT's generator reads from the template), and
fine-tuning can rewire the LM. Sentiment and topic words are real English, which the
frozen sentence encoder already understands; names and facts are invented, so only the
LM knows them. Used to develop `run_multitask` before the toyworld backbone existed;
the test checks that the stand-in is what it claims to be.
"""
from __future__ import annotations

import random
from pathlib import Path

from shoulders.data.examples import Example, Task

POS = "great wonderful loved superb enjoyable excellent fantastic delightful".split()
NEG = "awful boring terrible hated dull broken poor dreadful".split()
TOPICS = {
    "sports": "match goal team coach league player".split(),
    "business": "market shares profit bank trade price".split(),
    "science": "lab study cells physics research theory".split(),
    "travel": "airport hotel beach flight tourist museum".split(),
}
FILL = "the a this that movie film book show it was is very quite really new old".split()
NAMES = "anna ben carl dana eric fay gus hana ivan jade kurt lena milo nina otto pia".split()
JOBS = "baker pilot nurse chef judge farmer singer tailor".split()
PLACES = "zorin vexa tamburg quila norvik saltu brem oskany".split()  # invented cities
LANDS = "ardonia belmar cystra dovania eskel fermoy galdor hestia".split()  # invented countries
CAPITAL = dict(zip(LANDS, PLACES))
THINGS = "tea chess jazz maps kites opera soup trains".split()


def _review(rng):
    label = rng.random() < 0.5
    words = [rng.choice(FILL) for _ in range(rng.randint(2, 4))]
    words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
    return " ".join(words), "positive" if label else "negative"


def _headline(rng):
    topic = rng.choice(sorted(TOPICS))
    words = [rng.choice(FILL) for _ in range(rng.randint(2, 3))]
    words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[topic]))
    return " ".join(words), topic


def _pair(rng):
    a = rng.choice(THINGS + JOBS)
    b = a if rng.random() < 0.5 else rng.choice([w for w in THINGS + JOBS if w != a])
    return (a, b), "yes" if a == b else "no"


def _list(rng):
    words = rng.sample(THINGS + JOBS, 4)
    return " ".join(words), words[0]


def _person(rng):
    return rng.choice(NAMES), rng.choice(PLACES), rng.choice(JOBS), rng.choice(THINGS)


# skill -> (mode word, draw(rng) -> (content, answer)) for pre-training lines
def _skills():
    def record(rng):
        n, c, _, _ = _person(rng)
        return f"name {n} ; city {c}", f"{n} lives in {c}"

    def bio(rng):
        n, c, j, t = _person(rng)
        return f"{n} is a {j} from {c} who likes {t}", f"{n} the {j}"

    def check(rng):
        n, c, _, _ = _person(rng)
        c2 = c if rng.random() < 0.5 else rng.choice([p for p in PLACES if p != c])
        return f"{n} lives in {c} ; {n} lives in {c2}", "yes" if c == c2 else "no"

    def capital(rng):
        land = rng.choice(LANDS)
        return land, CAPITAL[land]

    def pair(rng):
        (a, b), y = _pair(rng)
        return f"{a} ; {b}", y

    return {
        "review": _review, "topic": _headline, "same": pair, "capital": capital, "first": _list,
        "record": record, "short": bio, "check": check,
    }


def corpus(n: int = 8000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    skills = _skills()
    names = sorted(skills)
    return [f"{m}: {c} answer: {a}" for m in (rng.choice(names) for _ in range(n)) for c, a in [skills[m](rng)]]


# task -> (cluster, metric, mode, templates, choices or None)
TASKS = {
    "reviews": ("sentiment", "accuracy", "review", ["{c}\nDid the writer like it? answer:",
                                                    "Opinion: {c}\nPositive or negative? answer:"],
                ["negative", "positive"]),
    "headlines": ("topic classification", "accuracy", "topic", ["{c}\nWhich section is this? answer:",
                                                                "Headline: {c} answer:"], sorted(TOPICS)),
    "pairs": ("paraphrase", "accuracy", "same", ["Do these mean the same: {c} answer:",
                                                 "Same thing? {c} answer:"], ["no", "yes"]),
    "capitals": ("closed-book QA", "exact_match", "capital", ["What is the capital of {c}? answer:",
                                                              "Capital city of {c} answer:"], None),
    "first_item": ("extractive QA", "exact_match", "first", ["List: {c}\nWhich comes first? answer:",
                                                             "{c}\nFirst item? answer:"], None),
    "records": ("structure-to-text", "rouge_l", "record", ["Data: {c}\nAs a sentence answer:",
                                                           "Write out: {c} answer:"], None),
    "bios": ("summarisation", "rouge_l", "short", ["{c}\nIn short answer:", "Summarise: {c} answer:"], None),
    "checks": ("NLI", "accuracy", "check", ["Premise and hypothesis: {c}\nTrue? answer:",
                                            "Does it follow: {c} answer:"], ["no", "yes"]),
}


def standin_tasks(n_train: int = 200, n_dev: int = 40, n_test: int = 80, seed: int = 1) -> list[Task]:
    rng = random.Random(seed)
    skills = _skills()
    out = []
    for name, (cluster, metric, mode, templates, choices) in TASKS.items():
        def make(n):
            exs = []
            for i in range(n):
                content, answer = skills[mode](rng)
                text = templates[i % len(templates)].format(c=content)
                exs.append(Example(input=text, target=answer, task=name, choices=list(choices) if choices else None))
            return exs

        out.append(Task(name, make(n_train), make(n_dev), make(n_test), metric, cluster))
    return out


def pretrain_standin_backbone(out_dir: Path, *, steps: int = 800, hidden: int = 128, layers: int = 4,
                              seed: int = 0) -> Path:
    """A ~1M-parameter Llama (toy-small's shape) that knows every skill behind its mode word."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").is_file():
        return out_dir
    lines = corpus(seed=seed)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<bos>", "<eos>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    from tokenizers.processors import TemplateProcessing

    fast._tokenizer.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.1, 1 - s / steps))
    model.train()
    for step in range(steps):
        batch = [lines[(step * 32 + i) % len(lines)] + fast.eos_token for i in range(32)]
        enc = fast(batch, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def test_standin_suite_shape():
    tasks = standin_tasks(n_train=20, n_dev=4, n_test=4)
    assert len({t.cluster for t in tasks}) == 8
    for t in tasks:
        for ex in t.train:
            assert not any(ex.input.startswith(m + ":") for m in _skills())  # no mode word in the inputs
            assert ex.choices is None or ex.target in ex.choices
    assert all(line.count(" answer: ") == 1 for line in corpus(n=50))
