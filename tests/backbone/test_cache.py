"""The one adapter to transformers' KV cache (`shoulders.backbone.cache`), pinned to the
installed transformers: if an upgrade changes what a cache holds or how it grows, these
fail here rather than as wrong numbers in generation or serving."""
import torch

from shoulders.backbone import cache as kv


def _states(lm, texts):
    c = kv.new_cache(lm)
    ids = lm.encode(texts, add_special_tokens=False)
    with torch.no_grad():
        lm.model(input_ids=torch.tensor(ids), use_cache=True, **{lm._cache_kw: c})
    return c


def test_new_cache_shapes_and_mergeable(lm):
    c = _states(lm, ["the cat is happy"])
    assert kv.is_mergeable(c)
    states = kv.layer_states(c)
    n = len(lm.encode(["the cat is happy"], add_special_tokens=False)[0])
    heads = getattr(lm.config, "num_key_value_heads", None) or lm.config.num_attention_heads
    assert len(states) == lm.config.num_hidden_layers
    assert all(k.shape == v.shape == (1, heads, n, lm.hidden_size // lm.config.num_attention_heads)
               for k, v in states)
    assert kv.kv_shapes(lm) == [(heads, lm.hidden_size // lm.config.num_attention_heads)] * len(states)


def test_fill_then_forward_grows_the_filled_cache(lm):
    src = kv.layer_states(_states(lm, ["the cat"]))
    c = kv.new_cache(lm)
    kv.fill(c, [k for k, _ in src], [v for _, v in src])
    assert c.get_seq_length() == src[0][0].shape[2]
    with torch.no_grad():
        lm.model(input_ids=torch.tensor([[5, 6]]), use_cache=True, **{lm._cache_kw: c})
    k, v = kv.layer_states(c)[0]
    assert k.shape[2] == src[0][0].shape[2] + 2 and torch.equal(k[:, :, : src[0][0].shape[2]], src[0][0])


def test_concat_rows_pads_on_the_left_then_drop_select_repeat(lm):
    a, b = _states(lm, ["the cat is happy"]), _states(lm, ["red"])
    ka, kb = kv.layer_states(a)[0][0].clone(), kv.layer_states(b)[0][0].clone()
    ta, tb = ka.shape[2], kb.shape[2]
    kv.concat_rows(a, b, ta, tb)
    k = kv.layer_states(a)[0][0]
    assert k.shape[0] == 2 and k.shape[2] == ta
    assert torch.equal(k[0], ka[0]) and torch.equal(k[1, :, ta - tb:], kb[0]) and not k[1, :, : ta - tb].any()
    kv.drop_leading(a, 1)
    assert kv.layer_states(a)[0][0].shape[2] == ta - 1
    kv.select_rows(a, torch.tensor([1, 1, 0]))
    assert torch.equal(kv.layer_states(a)[0][0][0], kv.layer_states(a)[0][0][1])
    kv.repeat_rows(a, 2)
    assert kv.layer_states(a)[0][0].shape[0] == 6


def _tiny(tmp_path, family):
    """A tiny random model of another family (tests/backbone/families.py) as a FrozenLM."""
    from shoulders.backbone import FrozenLM
    from tests.backbone.families import tiny_model
    from tests.helpers import train_tokenizer

    tok = train_tokenizer(tmp_path)
    return FrozenLM(tiny_model(family, tok), tok, family)


def test_returned_takes_the_cache_from_the_output_field_of_its_keyword(lm):
    out = lm.model(input_ids=torch.tensor([[5, 6]]), use_cache=True)
    assert kv.returned(out, "cache") is out.cache and kv.returned(out, None) is None
    assert kv.takes_prefix(out.cache)  # plain attention layers: a KV prefix can go in


def test_select_rows_on_recurrent_layers_and_state_lists(tmp_path):
    """Linear-attention layers (qwen3_next) are selected through reorder_cache, conv and
    recurrent state included; RWKV's `state` is a list of [B, ...] tensors."""
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    lm = _tiny(tmp_path, "qwen3_next")
    with torch.no_grad():
        cache = lm.model(input_ids=torch.tensor([[5, 6, 7], [8, 9, 10]]), use_cache=True).cache
    linear = next(layer for layer in cache.layers if isinstance(layer, LinearAttentionCacheLayerMixin))
    conv, rec = linear.conv_states[0].clone(), linear.recurrent_states[0].clone()
    assert not kv.takes_prefix(cache) and not kv.is_mergeable(cache)
    assert kv.select_rows(cache, torch.tensor([1, 1, 0])) is cache
    assert torch.equal(linear.conv_states[0], conv[[1, 1, 0]]) and torch.equal(linear.recurrent_states[0], rec[[1, 1, 0]])
    state = [torch.arange(6.0).view(2, 3), torch.ones(2, 4)]
    picked = kv.select_rows(state, torch.tensor([1]))
    assert isinstance(picked, list) and torch.equal(picked[0], torch.tensor([[3.0, 4.0, 5.0]]))
