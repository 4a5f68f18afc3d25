"""Property tests (hypothesis): metrics, the context packer, mixture rates, config and data
round trips. Every property runs on a fixed, derandomised set of examples, so a failure
reproduces; each stays well under a second or two on one CPU core."""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoulders.data.examples import Example
from shoulders.data.loaders import load_examples, write_examples
from shoulders.data.metrics import exact_match, normalize_answer, rouge_l, token_f1
from shoulders.data.mixture import MixtureSampler, mixture_rates
from shoulders.reader.corpus import Passage
from shoulders.reader.packing import PackingConfig, pack
from shoulders.train.config import TrainConfig, load_config

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Answer-like text: words, articles, punctuation, case and odd whitespace, plus some unicode.
WORDS = ["the", "a", "an", "The", "A", "Paris", "paris", "rome", "cat", "dog", "1990", "u.s.", "don't", "état"]
answer = st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(list(",.!?;:'\"()-")),
                            st.text(max_size=4)), max_size=8).map(
    lambda parts: "".join(p + (" " if i % 2 else "") for i, p in enumerate(parts)))
golds = st.lists(answer, min_size=1, max_size=4)


# ------------------------------------------------------------------------- SQuAD metrics
@FAST
@given(answer)
def test_normalisation_is_idempotent_and_canonical(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once
    assert once == once.strip() and "  " not in once  # spaces squashed
    assert not set(once) & set(",.!?;:'\"()-")  # punctuation gone
    assert not {"a", "an", "the"} & set(once.split())  # articles gone


@FAST
@given(answer, golds)
def test_exact_match_never_exceeds_f1_and_both_are_the_max_over_golds(pred, gs):
    em, f1 = exact_match(pred, gs), token_f1(pred, gs)
    assert em in (0.0, 1.0) and 0.0 <= f1 <= 1.0
    assert em <= f1
    assert em == max(exact_match(pred, [g]) for g in gs)
    assert f1 == max(token_f1(pred, g) for g in gs)
    assert rouge_l(pred, gs) == max(rouge_l(pred, g) for g in gs)
    # one more gold can only raise the score
    assert token_f1(pred, [*gs, "extra words"]) >= f1 and exact_match(pred, [*gs, "zz"]) >= em


@FAST
@given(answer, answer)
def test_single_gold_scores_are_symmetric(a, b):
    assert exact_match(a, [b]) == exact_match(b, [a])
    assert math.isclose(token_f1(a, [b]), token_f1(b, [a]))
    assert math.isclose(rouge_l(a, [b]), rouge_l(b, [a]))
    assert exact_match(a, [a]) == 1.0 and token_f1(a, [a]) == 1.0  # a prediction equal to its gold
    if exact_match(a, [b]):  # equal after normalisation: every token matches
        assert token_f1(a, [b]) == 1.0


@FAST
@given(answer, answer)
def test_f1_depends_only_on_normalised_token_bags(a, b):
    bag = Counter(normalize_answer(a).split())
    shuffled = " ".join(sorted(bag.elements(), reverse=True))
    assert math.isclose(token_f1(shuffled, [b]), token_f1(a, [b]))


# ------------------------------------------------------------------------- context packing
class CharTokenizer:
    """One token per character: token counts add up exactly, so greedy is checkable exactly."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """The tiny backbones' byte-level BPE tokenizer, where pieces do not add up exactly."""
    from tests.helpers import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("bpe"))


def passages_strategy(alphabet):
    text = st.text(alphabet=alphabet, min_size=1, max_size=60)
    return st.lists(st.tuples(st.text(alphabet=alphabet, max_size=8), text,
                              st.integers(-5, 5).map(float)), min_size=0, max_size=10).map(
        lambda rows: [(Passage(str(i), title, body), score) for i, (title, body, score) in enumerate(rows)])


packing_configs = st.builds(
    PackingConfig, context_window=st.integers(20, 220), prompt_tokens=st.integers(0, 20),
    question_tokens=st.one_of(st.none(), st.integers(0, 20)), answer_tokens=st.integers(0, 20),
    overflow=st.sampled_from(["skip", "truncate", "stop"]), order=st.sampled_from(["descending", "ascending"]),
    separator=st.sampled_from(["\n\n", " | ", ""]), min_truncated_tokens=st.integers(1, 10))


def best_first(packed, cfg) -> list[str]:
    return packed.passage_ids if cfg.order == "descending" else packed.passage_ids[::-1]


def check_packed(packed, scored, tokenizer, cfg):
    scores = {p.id: s for p, s in scored}
    n = len(tokenizer([packed.text])["input_ids"][0]) if packed.text else 0
    assert packed.n_tokens == n <= packed.budget  # never over the window's passage budget
    question = cfg.question_tokens if cfg.question_tokens is not None else len(tokenizer(["q?"])["input_ids"][0])
    assert packed.budget == max(0, cfg.context_window - cfg.prompt_tokens - question - cfg.answer_tokens)
    assert sorted(packed.passage_ids + packed.skipped_ids) == sorted(scores)  # each candidate: in or out
    assert not set(packed.passage_ids) & set(packed.skipped_ids)
    order = [scores[i] for i in best_first(packed, cfg)]
    assert order == sorted(order, reverse=True)  # score order kept
    if packed.truncated_id is not None:  # only the lowest-scored passage packed is ever cut
        assert cfg.overflow == "truncate" and best_first(packed, cfg)[-1] == packed.truncated_id


@FAST
@given(passages_strategy("abcde xyz"), packing_configs)
def test_packing_is_greedy_in_score_order(scored, cfg):
    tok = CharTokenizer()
    packed = pack("q?", scored, tok, cfg)
    check_packed(packed, scored, tok, cfg)
    ranked = [p.id for p, _ in sorted(scored, key=lambda ps: -ps[1])]
    cost = {p.id: len(cfg.passage_template.format(title=p.title, text=p.text)) for p, _ in scored}
    sep = len(cfg.separator)

    def used(ids):
        return sum(cost[i] for i in ids) + sep * max(0, len(ids) - 1)

    def fits(before, pid):  # does pid fit after the whole passages `before`?
        return used(before) + cost[pid] + (sep if before else 0) <= packed.budget

    full = [i for i in best_first(packed, cfg) if i != packed.truncated_id]
    if cfg.overflow == "skip":  # greedy: taken exactly when it fits after the better ones taken
        for r, pid in enumerate(ranked):
            assert (pid in full) == fits([i for i in ranked[:r] if i in full], pid)
        return
    k = len(full)  # stop / truncate: whole passages form a prefix of the ranking
    assert full == ranked[:k]
    if k < len(ranked):
        assert not fits(full, ranked[k])
    if packed.truncated_id is not None:  # cut to the tokens left: the budget is filled exactly
        assert packed.truncated_id == ranked[k] and packed.n_tokens == packed.budget
    elif cfg.overflow == "truncate" and k < len(ranked):  # the stub would have been too short
        assert packed.budget - used(full) - (sep if full else 0) < cfg.min_truncated_tokens


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(passages_strategy("the cat dog paris rome is was born in of and"), packing_configs)
def test_packing_with_bpe_never_exceeds_the_budget(bpe, scored, cfg):
    check_packed(pack("q?", scored, bpe, cfg), scored, bpe, cfg)


# ------------------------------------------------------------------------- mixture rates
sizes_strategy = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), st.integers(1, 10_000),
                                 min_size=1, max_size=6)


@FAST
@given(sizes_strategy, st.one_of(st.none(), st.integers(1, 5_000)))
def test_examples_proportional_rates_with_cap(sizes, cap):
    rates = mixture_rates(sizes, "proportional", cap)
    eff = {k: min(n, cap) if cap else n for k, n in sizes.items()}
    assert set(rates) == set(sizes) and math.isclose(sum(rates.values()), 1.0)
    for k in sizes:
        assert math.isclose(rates[k], eff[k] / sum(eff.values()))
    for a in sizes:  # a larger (capped) task never gets a lower rate; capped tasks tie
        for b in sizes:
            if eff[a] >= eff[b]:
                assert rates[a] >= rates[b]


@FAST
@given(sizes_strategy, st.one_of(st.none(), st.integers(1, 5_000)), st.floats(0.1, 50))
def test_temperature_rates_sum_to_one_and_flatten_with_temperature(sizes, cap, t):
    rates = mixture_rates(sizes, "temperature", cap, t)
    eff = {k: min(n, cap) if cap else n for k, n in sizes.items()}
    total = sum(v ** (1 / t) for v in eff.values())
    assert math.isclose(sum(rates.values()), 1.0)
    for k in sizes:
        assert math.isclose(rates[k], eff[k] ** (1 / t) / total, rel_tol=1e-9)
    prop = mixture_rates(sizes, "proportional", cap)
    at_one = mixture_rates(sizes, "temperature", cap, 1.0)  # T = 1 is examples-proportional
    assert all(math.isclose(at_one[k], prop[k]) for k in sizes)
    uniform = mixture_rates(sizes, "uniform", cap)
    assert all(math.isclose(v, 1 / len(sizes)) for v in uniform.values())
    for a in sizes:  # rate ratios are the size ratios to the power 1/T: hotter is flatter
        for b in sizes:
            assert math.isclose(rates[a] / rates[b], (eff[a] / eff[b]) ** (1 / t), rel_tol=1e-9)


@FAST
@given(sizes_strategy.filter(lambda s: sum(s.values()) <= 400), st.integers(1, 16), st.integers(0, 3))
def test_sampler_sees_every_example_before_repeating_and_resumes_exactly(sizes, batch, seed):
    sampler = MixtureSampler(sizes, seed=seed)
    drawn = {k: Counter() for k in sizes}
    for _ in range(5):
        for name, idx in sampler.next_batch(batch):
            assert 0 <= idx < sizes[name]
            drawn[name][idx] += 1
    for name, counts in drawn.items():
        taken = sum(counts.values())
        per_example = [counts[i] for i in range(sizes[name])]
        assert max(per_example) - min(per_example) <= 1 and max(per_example) == math.ceil(taken / sizes[name])
    state = json.loads(json.dumps(sampler.state_dict()))  # a checkpoint stores it as JSON
    again = MixtureSampler(sizes, seed=99)
    again.load_state_dict(state)
    assert [again.next_batch(batch) for _ in range(3)] == [sampler.next_batch(batch) for _ in range(3)]


# ------------------------------------------------------------------------- config round trip
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
task_configs = st.lists(st.fixed_dictionaries(
    {"name": names, "train": st.one_of(st.none(), names.map(lambda s: f"/nonexistent/{s}.jsonl"))},
    optional={"metric": st.sampled_from(["exact_match", "f1", "accuracy", "rouge_l"]),
              "choices": st.lists(names, min_size=1, max_size=3), "cluster": names}),
    max_size=3, unique_by=lambda t: t["name"])
config_dicts = st.fixed_dictionaries(
    {"method": st.sampled_from(["prompt_tuning", "idpt", "textual_recursion", "finetune"]),
     "backbone": st.fixed_dictionaries({"name_or_path": names},
                                       optional={"dtype": st.sampled_from(["float32", "bfloat16"]),
                                                 "gradient_checkpointing": st.booleans()}),
     "tasks": task_configs},
    optional={
        "mixture": st.fixed_dictionaries({"kind": st.sampled_from(["proportional", "temperature", "uniform"])},
                                         optional={"cap": st.integers(1, 10**6),
                                                   "temperature": st.floats(0.01, 100)}),
        "optim": st.fixed_dictionaries({}, optional={
            "lr": st.floats(1e-9, 10, allow_subnormal=False), "weight_decay": st.floats(0, 1),
            "betas": st.tuples(st.floats(0, 0.999), st.floats(0, 0.9999)),
            "schedule": st.sampled_from(["constant", "linear", "cosine"]),
            "max_grad_norm": st.one_of(st.none(), st.floats(1e-3, 1e3))}),
        "train": st.fixed_dictionaries({}, optional={
            "steps": st.integers(1, 10**7), "batch_size": st.integers(1, 512), "seed": st.integers(-2**31, 2**31),
            "eval_every": st.integers(0, 1000), "eval_max_examples": st.one_of(st.none(), st.integers(1, 10**4))}),
        "output_dir": names, "resume": st.booleans(),
    })


@FAST
@given(config_dicts)
def test_config_dumped_to_yaml_loads_back_equal(tmp_path_factory, data):
    cfg = load_config(data=data)
    # what the trainer writes next to a run (train_config.yaml), read back as a config file
    path = tmp_path_factory.mktemp("cfg") / "train_config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    back = load_config(path)
    assert back == cfg
    assert TrainConfig.model_validate(back.model_dump()) == cfg


# ------------------------------------------------------------------------- data round trips
field_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "")
tsv_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\t\n\r"),
                   min_size=1, max_size=30).filter(lambda s: s.strip() != "")


@FAST
@given(st.lists(st.tuples(field_text, field_text), min_size=1, max_size=8), st.booleans())
def test_jsonl_from_random_strings_loads_back_exactly(tmp_path_factory, rows, ascii_only):
    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_text("".join(json.dumps({"id": i, "input": a, "target": b}, ensure_ascii=ascii_only) + "\n"
                            for i, (a, b) in enumerate(rows)), encoding="utf-8")
    loaded = load_examples(path)
    assert [(e.id, e.input, e.target) for e in loaded] == [(str(i), a, b) for i, (a, b) in enumerate(rows)]


@FAST
@given(st.lists(st.tuples(tsv_text, tsv_text), min_size=1, max_size=8))
def test_tsv_from_random_strings_loads_back_exactly(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("tsv") / "data.tsv"
    path.write_text("input\ttarget\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8", newline="")
    assert [(e.input, e.target) for e in load_examples(path)] == rows


@FAST
@given(st.lists(st.tuples(field_text, field_text), min_size=1, max_size=8))
def test_csv_written_by_csv_writer_loads_back_exactly(tmp_path_factory, rows):
    """Quotes, commas and newlines inside fields, as csv.writer (or pandas) writes them."""
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["input", "target"])
        writer.writerows(rows)
    assert [(e.input, e.target) for e in load_examples(path)] == rows


examples = st.lists(st.builds(
    Example, input=field_text, target=field_text, id=st.none(),
    answers=st.one_of(st.none(), st.lists(field_text, min_size=1, max_size=3)),
    choices=st.one_of(st.none(), st.lists(field_text, min_size=1, max_size=3))), min_size=1, max_size=6)


@FAST
@given(examples)
def test_write_examples_then_load_examples_is_the_identity(tmp_path_factory, exs):
    for i, ex in enumerate(exs):
        ex.id = f"ex-{i}"
    path = tmp_path_factory.mktemp("rt") / "out.jsonl"
    write_examples(path, exs)
    back = load_examples(path, answers_field="answers")
    assert [(e.id, e.input, e.target, e.answers, e.choices) for e in back] == \
        [(e.id, e.input, e.target, e.answers, e.choices) for e in exs]
    assert sorted(p.name for p in Path(path).parent.iterdir()) == ["out.jsonl"]  # no temp file left

