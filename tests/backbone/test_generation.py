"""Generation from a soft prefix with a KV cache."""
import pytest
import torch

from shoulders.backbone.generation import GenerationConfig


def _step_by_step_greedy(lm, prefix, ids, steps):
    """Reference: recompute the whole sequence at every step, no cache."""
    out = []
    emb = torch.cat([prefix, lm.embed(torch.tensor(ids))], 0)[None] if prefix is not None else lm.embed(torch.tensor([ids]))
    for _ in range(steps):
        logits = lm.model(inputs_embeds=emb).logits[0, -1]
        tok = int(logits.argmax())
        if tok == lm.eos_token_id:
            break
        out.append(tok)
        emb = torch.cat([emb, lm.embed(torch.tensor([[tok]]))], 1)
    return out


def test_kv_cached_greedy_equals_recomputation(lm):
    torch.manual_seed(0)
    prefix = torch.randn(6, lm.hidden_size)
    ids = lm.encode(["the cat is happy"])[0]
    got = lm.generate(prefix, [ids], max_new_tokens=12)[0][0]
    assert got.token_ids == _step_by_step_greedy(lm, prefix, ids, 12)


def test_mixed_batch_generation_equals_rows_alone(lm):
    torch.manual_seed(1)
    prefixes = [torch.randn(3, lm.hidden_size), None, torch.randn(8, lm.hidden_size)]
    ids = lm.encode(["the cat", "a dog was born in paris and", "red"])
    batch = lm.generate(prefixes, ids, max_new_tokens=10)
    for i in range(3):
        alone = lm.generate([prefixes[i]], [ids[i]], max_new_tokens=10)
        assert batch[i][0].token_ids == alone[0][0].token_ids
        assert batch[i][0].logprobs == pytest.approx(alone[0][0].logprobs, abs=1e-4)


def test_sampling_is_seeded_and_n_samples(lm):
    prefix = torch.randn(4, lm.hidden_size)
    ids = lm.encode(["the cat", "a dog"])
    cfg = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, n=3, seed=7)
    a = lm.generate(prefix, ids, cfg)
    b = lm.generate(prefix, ids, cfg)
    assert [[g.token_ids for g in r] for r in a] == [[g.token_ids for g in r] for r in b]
    assert len(a) == 2 and all(len(r) == 3 for r in a)
    assert len({tuple(g.token_ids) for g in a[0]}) > 1  # the samples differ


def test_n_samples_share_prefill_equal_to_separate_rows(lm):
    """Greedy with n=2 gives the same as the input repeated: the cache copy is exact."""
    prefix = torch.randn(4, lm.hidden_size)
    ids = lm.encode(["the cat"])
    a = lm.generate(prefix, ids, max_new_tokens=6, n=2)[0]
    b = lm.generate(prefix, ids * 2, max_new_tokens=6)
    assert a[0].token_ids == a[1].token_ids == b[0][0].token_ids == b[1][0].token_ids


def test_stop_strings_and_max_new_tokens(lm):
    prefix = torch.randn(4, lm.hidden_size)
    ids = lm.encode(["the cat"])
    free = lm.generate(prefix, ids, max_new_tokens=10)[0][0]
    assert len(free.token_ids) <= 10
    if free.finish_reason == "length" and len(free.text) > 2:
        stop = free.text[1:3]
        stopped = lm.generate(prefix, ids, max_new_tokens=10, stop=[stop])[0][0]
        assert stopped.finish_reason == "stop"
        assert stop not in stopped.text and free.text.startswith(stopped.text)


def test_top_p_keeps_only_the_nucleus():
    from shoulders.backbone.sampling import SamplingParams, sample_rows

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    g = torch.Generator().manual_seed(0)
    assert {int(sample_rows(logits, [SamplingParams(1.0, 0.5)], g)) for _ in range(50)} == {0}
    assert {int(sample_rows(logits, [SamplingParams(1.0, 0.8)], g)) for _ in range(200)} == {0, 1}


def test_bad_generation_config():
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0)
