"""The scheduler's pieces in-process: merge/select of decode batches, per-row sampling,
text that is safe to stream, module names."""
from __future__ import annotations

import random

import pytest
import torch

from shoulders.backbone.sampling import SamplingParams, make_generator, sample_rows
from shoulders.backbone.stops import streamable_prefix
from shoulders.prompts import PromptTuning, PromptTuningConfig
from shoulders.serving.kvbatch import DecodeBatch
from shoulders.serving.registry import valid_name
from tests.serving_inprocess import greedy, serve_staggered


def test_rows_joining_and_leaving_decode_like_alone(lm):
    """Row A runs 3 steps alone, B and C join (other prefix lengths), A leaves: every
    row's tokens equal its own batch-of-one run."""
    torch.manual_seed(0)
    rows = [(torch.randn(3, lm.hidden_size), lm.encode(["the cat"])[0]),
            (torch.randn(7, lm.hidden_size), lm.encode(["a dog was born in paris and"])[0]),
            (None, lm.encode(["red"])[0])]
    alone = [lm.generate([p], [ids], max_new_tokens=9, stop=())[0][0].token_ids for p, ids in rows]
    eos = lm.eos_token_id
    got = [[] for _ in rows]
    batch = DecodeBatch.prefill(lm, [rows[0][0]], [rows[0][1]])
    live = [0]
    for step in range(12):
        if step == 3:
            batch.merge(DecodeBatch.prefill(lm, [rows[1][0], rows[2][0]], [rows[1][1], rows[2][1]]))
            live += [1, 2]
        nxt = batch.logits.argmax(-1).tolist()
        keep = []
        for j, r in enumerate(live):
            if nxt[j] != eos and len(got[r]) < 9:
                got[r].append(nxt[j])
                if len(got[r]) < 9:
                    keep.append(j)
        live = [live[j] for j in keep]
        if not live:
            break
        batch.select(keep)
        batch.step(torch.tensor([nxt[j] for j in keep]))
    assert got == alone


def test_prefill_repeats_share_one_prefill(lm):
    ids = lm.encode(["the cat", "red"])
    batch = DecodeBatch.prefill(lm, [None, None], ids, repeats=[2, 3])
    assert len(batch) == 5
    toks = greedy(batch, 4)
    assert toks[0] == toks[1] and toks[2] == toks[3] == toks[4]


def test_sampling_rows_keep_their_own_settings():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    params = [SamplingParams(), SamplingParams(1.0, 0.5), SamplingParams(0.7, 1.0, 3), SamplingParams()]
    gens = [None, make_generator(1, torch.device("cpu")), make_generator(2, torch.device("cpu")), None]
    out = sample_rows(logits, params, gens)
    assert out[0] == logits[0].argmax() and out[3] == logits[3].argmax()
    assert int(out[2]) in torch.topk(logits[2], 3).indices.tolist()
    # a seeded row draws the same whatever its neighbours
    alone = sample_rows(logits[1:2], params[1:2], [make_generator(1, torch.device("cpu"))])
    assert int(alone[0]) == int(out[1])


def test_streamable_prefix_holds_back_what_may_change():
    assert streamable_prefix("hello wor", ()) == "hello wor"
    assert streamable_prefix("hello ", ()) == "hello"
    assert streamable_prefix("abc\ufffd", ()) == "abc"
    assert streamable_prefix("answer: ye", ("yes!",)) == "answer:"
    assert streamable_prefix("answer: x", ("yes!",)) == "answer: x"


@pytest.mark.parametrize("name,ok", [("pt-1", True), ("a.b_c", True), ("..", False), ("../x", False),
                                     ("a..b", False), (".x", False), ("a/b", False), ("", False), ("x" * 129, False),
                                     ("%2e%2e", False), ("/abs", False)])
def test_module_names(name, ok):
    assert valid_name(name) is ok


def test_engine_mixed_modules_match_generate(lm):
    """Staggered requests for four modules through the scheduler thread."""
    mods = [PromptTuning.build(PromptTuningConfig(num_virtual_tokens=k, init="random", seed=k), lm) for k in (1, 4, 9)]
    prompts = ["the cat", "a dog was born in paris and", "red", "what is the river of rome"]
    rng = random.Random(0)
    reqs = [(rng.choice(mods), rng.choice(prompts), rng.choice([2, 5, 11]), rng.random() * 0.02) for _ in range(16)]
    for event, ref in serve_staggered(lm, reqs, max_batch=5, max_queue=64):
        assert event[0] == "done", event
        got = event[1][0]
        assert (got.token_ids, got.text) == (ref.token_ids, ref.text)
