"""The backbone's KV-prefix hook: per-layer keys and values before a row, pre-filled into
the cache. A prefix made of a real text's keys and values must give exactly what the
backbone computes reading that text first."""
import pytest
import torch

from shoulders.backbone import cache as kv
from shoulders.backbone.layout import KVPrefix, prefix_length, split_prefix
from shoulders.errors import BackboneError


def text_prefix(lm, text: str) -> tuple[KVPrefix, list[int]]:
    ids = lm.encode([text], add_special_tokens=False)[0]
    c = kv.new_cache(lm)
    with torch.no_grad():
        lm.model(input_ids=torch.tensor([ids]), use_cache=True, **{lm._cache_kw: c})
    states = kv.layer_states(c)
    return KVPrefix(tuple(k for k, _ in states), tuple(v for _, v in states)), ids


def test_kv_prefix_equals_reading_its_text(lm):
    pre, text = text_prefix(lm, "the cat is happy")
    ids = lm.encode(["a red dog", "who is the actor of this film"])
    tgt = lm.encode_targets([" yes", " no no"])
    ours = lm(pre, ids, tgt)
    ref = lm(None, [text + i for i in ids], tgt)
    torch.testing.assert_close(ours.token_logprobs, ref.token_logprobs, rtol=1e-5, atol=1e-5)
    gen = lm.generate(pre, ids, max_new_tokens=8)
    assert [g[0].token_ids for g in gen] == [g[0].token_ids for g in lm.generate(None, [text + i for i in ids],
                                                                                   max_new_tokens=8)]


def test_rows_with_kv_soft_and_no_prefix_mix(lm):
    """KV prefixes of two lengths, soft vectors and no prefix in one batch: each row as alone."""
    short, short_text = text_prefix(lm, "red")
    long, long_text = text_prefix(lm, "the cat is happy and the dog")
    torch.manual_seed(0)
    soft = torch.randn(3, lm.hidden_size)
    both = KVPrefix(short.keys, short.values, embeds=soft)
    rows = [long, None, soft, short, both]
    ids = lm.encode(["a dog", "yes", "the film", "who is", "paris"])
    tgt = lm.encode_targets([" good", " bad", " no", " yes yes", " red"])
    batch = lm(rows, ids, tgt).row_logprob(len(rows))
    for i, row in enumerate(rows):
        alone = lm([row], [ids[i]], [tgt[i]]).row_logprob(1)
        torch.testing.assert_close(batch[i], alone[0], rtol=1e-5, atol=1e-5)
    assert [prefix_length(r) for r in rows] == [len(long_text), 0, 3, len(short_text), len(short_text) + 3]
    gen = lm.generate(rows, ids, max_new_tokens=6)
    for i, row in enumerate(rows):
        assert gen[i][0].token_ids == lm.generate([row], [ids[i]], max_new_tokens=6)[0][0].token_ids
    # n samples share one prefill: the KV prefix is copied with the cache
    two = lm.generate(long, ids[:1], max_new_tokens=5, n=2)[0]
    assert two[0].token_ids == two[1].token_ids == gen[0][0].token_ids[:5]


def test_gradients_reach_the_kv_prefix_only(lm):
    pre, _ = text_prefix(lm, "the cat")
    keys = tuple(k.clone().requires_grad_(True) for k in pre.keys)
    values = tuple(v.clone().requires_grad_(True) for v in pre.values)
    loss = lm(KVPrefix(keys, values), lm.encode(["a dog", "red"]), lm.encode_targets([" yes", " no"])).loss
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in keys + values)
    assert all(p.grad is None for p in lm.model.parameters())


def test_split_and_bad_batch(lm):
    pre, _ = text_prefix(lm, "the cat")
    assert split_prefix(pre, 3) == [pre] * 3  # shared: the same object per row
    two = KVPrefix(tuple(k.expand(2, -1, -1, -1) for k in pre.keys), tuple(v.expand(2, -1, -1, -1)
                                                                          for v in pre.values))
    assert [r.batch_size for r in split_prefix(two, 2)] == [1, 1]
    with pytest.raises(ValueError, match="batch size 2"):
        split_prefix(two, 3)


def test_gradient_checkpointing_is_refused(tiny_dir):
    from shoulders.backbone import FrozenLM
    from shoulders.backbone.checkpointing import disable_gradient_checkpointing, enable_gradient_checkpointing

    lm = FrozenLM.from_pretrained(tiny_dir, dtype="float32", device="cpu")
    pre, _ = text_prefix(lm, "the cat")
    keys = tuple(k.clone().requires_grad_(True) for k in pre.keys)
    enable_gradient_checkpointing(lm)
    with pytest.raises(BackboneError, match="gradient checkpointing"):
        lm(KVPrefix(keys, pre.values), lm.encode(["a dog"]), lm.encode_targets([" yes"]))
    with torch.no_grad():  # without gradients nothing is checkpointed: generation works
        assert lm.generate(pre, lm.encode(["a dog"]), max_new_tokens=2)
    disable_gradient_checkpointing(lm)
