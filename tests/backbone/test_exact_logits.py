"""Logits, loss and generation equal the model's own forward on families that transform
their logits after (or before) the LM head: scaling and soft-capping must not be lost."""
from __future__ import annotations

import pytest
import torch

from shoulders.backbone import FrozenLM
from tests.helpers import train_tokenizer

# family -> (config class, the options that make its head non-plain). Values are
# exaggerated so a missing transform moves logits by far more than the tolerance.
SCALED = {
    "cohere": ("CohereConfig", {"logit_scale": 0.3}),
    "granite": ("GraniteConfig", {"logits_scaling": 4.0}),
    "gemma2": ("Gemma2Config", {"final_logit_softcapping": 0.5, "head_dim": 16}),
}


def _build(tmp_path, family: str) -> FrozenLM:
    import transformers

    cls_name, extra = SCALED[family]
    tok = train_tokenizer(tmp_path)
    cfg = getattr(transformers, cls_name)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **extra)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    return FrozenLM(model, tok, family)


@pytest.mark.parametrize("family", sorted(SCALED))
def test_logits_loss_and_greedy_equal_the_models_own(tmp_path, family):
    lm = _build(tmp_path, family)
    ids = lm.encode(["the cat is happy", "a dog was born in paris"])
    tgt = lm.encode_targets([" yes", " good bad"])
    torch.manual_seed(1)
    prefix = torch.randn(3, lm.hidden_size) * 0.1
    out = lm(prefix, ids, tgt)
    total, count = 0.0, 0
    for a, b in zip(ids, tgt):
        emb = torch.cat([prefix, lm.embed(torch.tensor(a + b))], 0)[None]
        labels = torch.tensor([[-100] * (3 + len(a)) + b])
        with torch.no_grad():
            ref = lm.model(inputs_embeds=emb, labels=labels).loss
        total, count = total + ref.item() * len(b), count + len(b)
    assert out.loss.item() == pytest.approx(total / count, abs=1e-5)

    layout = lm.layout(prefix, ids[:1])
    with torch.no_grad():
        ours = lm.model_logits(lambda h: h[0], **lm.model_inputs(layout))[0]
        theirs = lm.model(inputs_embeds=layout.inputs_embeds).logits[0].float()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)

    # greedy from token ids equals a plain HF greedy loop (no soft prefix)
    got = lm.generate(None, ids[:1], max_new_tokens=5, do_sample=False)[0][0].token_ids
    seq = torch.tensor(ids[:1])
    with torch.no_grad():
        for _ in range(len(got)):
            nxt = lm.model(input_ids=seq).logits[0, -1].argmax()
            seq = torch.cat([seq, nxt.view(1, 1)], 1)
    assert got == seq[0, len(ids[0]):].tolist()
