"""FrozenLM: loading, freezing, target-only loss, layouts with mixed prefixes."""
import torch

from shoulders.backbone import FrozenLM


def test_loads_frozen_in_eval_mode(lm):
    assert not lm.model.training
    assert all(not p.requires_grad for p in lm.model.parameters())
    assert lm.hidden_size == 32 and lm.vocab_size == len(lm.tokenizer)
    assert lm.max_context == 256


def test_target_only_loss_equals_full_logits_loss(lm):
    torch.manual_seed(0)
    ids = lm.encode(["the cat is happy", "a dog was born in paris and london", "no"])
    tgt = lm.encode_targets([" yes", " good bad", " red blue green"])
    prefix = torch.randn(3, 5, lm.hidden_size)
    out = lm(prefix, ids, tgt)
    # Reference: HF forward over full logits with labels = -100 except on targets.
    total, count = 0.0, 0
    for i, (a, b) in enumerate(zip(ids, tgt)):
        emb = torch.cat([prefix[i], lm.embed(torch.tensor(a + b))], 0)[None]
        labels = torch.tensor([[-100] * (5 + len(a)) + b])
        ref = lm.model(inputs_embeds=emb, labels=labels).loss
        total += ref.item() * len(b)
        count += len(b)
    torch.testing.assert_close(out.loss.item(), total / count, rtol=1e-5, atol=1e-5)


def test_mixed_prefix_batch_equals_rows_alone(lm):
    torch.manual_seed(1)
    ids = lm.encode(["the cat", "a dog was born in paris", "red"])
    tgt = lm.encode_targets([" yes", " no no", " good"])
    prefixes = [torch.randn(4, lm.hidden_size), None, torch.randn(9, lm.hidden_size)]
    batch = lm(prefixes, ids, tgt).row_logprob(3)
    for i in range(3):
        alone = lm([prefixes[i]], [ids[i]], [tgt[i]]).row_logprob(1)
        torch.testing.assert_close(batch[i], alone[0], rtol=1e-5, atol=1e-5)


def test_shared_and_per_row_prefix_agree(lm):
    torch.manual_seed(2)
    ids = lm.encode(["the cat", "a dog was born"])
    tgt = lm.encode_targets([" yes", " no"])
    p = torch.randn(3, lm.hidden_size)
    a = lm(p, ids, tgt).row_logprob(2)
    b = lm([p.clone(), p.clone()], ids, tgt).row_logprob(2)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gradients_flow_through_frozen_backbone(lm):
    prefix = torch.randn(4, lm.hidden_size, requires_grad=True)
    loss = lm(prefix, lm.encode(["the cat"]), lm.encode_targets([" yes"])).loss
    loss.backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())


def test_bfloat16_backbone(tiny_dir):
    lm = FrozenLM.from_pretrained(tiny_dir, dtype="bfloat16", device="cpu")
    assert lm.dtype == torch.bfloat16
    prefix = torch.randn(3, lm.hidden_size, requires_grad=True)  # float32 module weights
    out = lm(prefix, lm.encode(["the cat"]), lm.encode_targets([" yes"]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and prefix.grad.dtype == torch.float32
    gens = lm.generate(prefix.detach(), lm.encode(["the cat"]), max_new_tokens=3)
    assert len(gens[0][0].token_ids) <= 3


def test_fingerprint_is_dtype_independent(tiny_dir):
    a = FrozenLM.from_pretrained(tiny_dir, dtype="float32", device="cpu").info()
    b = FrozenLM.from_pretrained(tiny_dir, dtype="bfloat16", device="cpu").info()
    assert a["embedding_fingerprint"] == b["embedding_fingerprint"]


def test_device_map_loading_matches(tiny_dir):
    """The sharded-loading path (accelerate's device_map) gives the same model."""
    plain = FrozenLM.from_pretrained(tiny_dir, dtype="float32", device="cpu")
    sharded = FrozenLM.from_pretrained(tiny_dir, dtype="float32", device_map="auto", max_memory={"cpu": "1GiB"})
    ids = plain.encode(["the cat is happy"])
    tgt = plain.encode_targets([" yes"])
    torch.testing.assert_close(plain(None, ids, tgt).loss, sharded(None, ids, tgt).loss)
    assert all(not p.requires_grad for p in sharded.model.parameters())
