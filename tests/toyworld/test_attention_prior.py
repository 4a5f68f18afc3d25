"""Previous-token heads wired in at initialisation (toyworld/attention_prior.py)."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from shoulders.toyworld.attention_prior import wire_previous_token_heads
from shoulders.toyworld.pretrain import TOY_SMALL, ModelConfig, config_hash


def tiny(attention_bias=True):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, attention_bias=attention_bias,
                      attn_implementation="eager", max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def test_wired_heads_look_their_offset_back_whatever_the_tokens():
    model = tiny()
    wire_previous_token_heads(model, (1, 2, 3))
    ids = torch.randint(0, 300, (2, 100), generator=torch.Generator().manual_seed(1))
    att = model(input_ids=ids, output_attentions=True).attentions[0]  # batch, head, query, key
    for h, d in enumerate((1, 2, 3)):
        q = torch.arange(d, 100)
        assert att[:, h, q, q - d].min() > 0.8 and att[:, h, q, q - d].mean() > 0.95
    free = att[:, 3, torch.arange(1, 100), torch.arange(0, 99)].mean()
    assert free < 0.5  # the fourth head keeps its random, content-based start


def test_needs_biases_and_valid_offsets():
    with pytest.raises(ValueError, match="attention_bias"):
        wire_previous_token_heads(tiny(attention_bias=False), (1,))
    with pytest.raises(ValueError, match=">= 1"):
        wire_previous_token_heads(tiny(), (0,))
    with pytest.raises(ValueError, match="offsets for 4 heads"):
        wire_previous_token_heads(tiny(), (1, 2, 3, 4, 5))


def test_model_config_builds_the_prior_and_leaves_default_keys_alone():
    from shoulders.toyworld.tiny_lm import byte_bpe

    tok = byte_bpe(["Ana Tesk was born in Tamwick."] * 20, vocab_size=300)
    wired = ModelConfig(name="t", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                        prev_token_heads=(1, 2)).build(tok)
    assert wired.config.attention_bias and wired.model.layers[0].self_attn.q_proj.bias.abs().max() > 1
    plain = ModelConfig(name="t", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128).build(tok)
    assert not plain.config.attention_bias
    # unset (None) options are not hashed: caches of backbones built before the option existed stay valid
    fields = {k: v for k, v in TOY_SMALL.model_dump().items() if k != "prev_token_heads"}
    assert config_hash(TOY_SMALL) == config_hash(fields)
