"""Neural recursion: what trains, what pass 2 receives, the Connector's start, save/load."""
import pytest
import torch

from shoulders.backbone import GenerationConfig
from shoulders.modules import load_module, save_module
from shoulders.recursion import NeuralRecursion, NeuralRecursionConfig, pretrain_connector
from shoulders.recursion.connector import embedding_rms


def _module(lm, **cfg):
    base = {"pass1": {"num_virtual_tokens": 3}, "pass2": {"num_virtual_tokens": 2, "seed": 1}}
    return NeuralRecursion.build(NeuralRecursionConfig(**{**base, **cfg}), lm)


def test_only_prompts_and_connector_get_gradients(lm, examples):
    module = _module(lm, pass1_loss_weight=0.5)
    module.loss(lm, examples).backward()
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in module.named_parameters()}  # prompts + connector, all trainable
    assert module.prompt1.grad.abs().sum() > 0  # through pass 2 and pass 1
    assert module.prompt2.grad.abs().sum() > 0
    assert module.connector.gain.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.connector.parameters())
    assert all(p.grad is None and not p.requires_grad for p in lm.model.parameters())
    frozen = _module(lm, train_prompt1=False)
    assert [n for n, p in frozen.named_parameters() if not p.requires_grad] == ["prompt1"]
    assert set(frozen.state_to_save()) == set(dict(frozen.named_parameters()))  # prompt1 still saved


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_connector_weights_come_from_its_seed_not_from_what_ran_before(lm, kind):
    def weights(seed, noise):
        torch.manual_seed(noise)  # the global RNG in any state: the build must not depend on it
        module = _module(lm, connector={"kind": kind, "layers": 2, "seed": seed})
        return torch.cat([p.detach().flatten() for p in module.connector.parameters()])

    assert torch.equal(weights(3, 0), weights(3, 1))
    assert not torch.equal(weights(3, 0), weights(4, 0))
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    _module(lm, connector={"kind": kind, "layers": 2})
    assert torch.equal(torch.rand(3), before)  # and it leaves the caller's RNG where it was


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_connector_starts_as_rescaled_identity(lm, kind):
    module = _module(lm, connector={"kind": kind, "layers": 2})
    h = torch.randn(2, 5, lm.hidden_size) * 7.0
    out = module.connector(h, torch.ones(2, 5, dtype=torch.bool))
    rms = embedding_rms(lm)
    torch.testing.assert_close(out, h / h.pow(2).mean(-1, keepdim=True).sqrt() * rms, rtol=1e-4, atol=1e-5)
    assert abs(out.pow(2).mean().sqrt().item() - rms) < 1e-3 * max(rms, 1)


@pytest.mark.parametrize("connect,repeat", [("tokens", True), ("last", False)])
def test_pass2_receives_exactly_the_connector_output(lm, examples, connect, repeat):
    module = _module(lm, connect=connect, repeat_question=repeat,
                     connector={"kind": "transformer", "layers": 1}).eval()
    with torch.no_grad():  # make the Connector non-trivial, so the check is not about an identity
        for p in module.connector.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = module.encode_inputs(lm, examples)
    with torch.no_grad():
        h = lm(module.prompt1, ids, return_hidden=True).hidden_states[:, 3:]
        lens = [len(t) for t in ids]
        if connect == "last":
            h = torch.stack([h[i, n - 1] for i, n in enumerate(lens)])[:, None]
            mask = torch.ones(len(ids), 1, dtype=torch.bool)
        else:
            mask = torch.arange(h.shape[1])[None] < torch.tensor(lens)[:, None]
        c = module.connector(h, mask)
    expected = [torch.cat([module.prompt2, c[i, : int(mask[i].sum())]]) for i in range(len(ids))]
    layouts, runs = [], []
    real_layout, real_inputs = lm.layout, lm.model_inputs

    def spy_layout(prefix, tok, pad_side="right"):
        layouts.append((prefix, tok, pad_side))
        return real_layout(prefix, tok, pad_side)

    def spy_inputs(layout, cache=None):  # every layout reaches the model through here
        runs.append(layout)
        return real_inputs(layout, cache)

    lm.layout, lm.model_inputs = spy_layout, spy_inputs
    try:
        module.generate(lm, examples, GenerationConfig(max_new_tokens=2))
    finally:
        lm.layout, lm.model_inputs = real_layout, real_inputs
    assert len(layouts) == 2  # pass 1 (the question), pass 2 (generation's prefill)
    prefix2, tokens2, side = layouts[1]
    assert side == "left" and tokens2 == (ids if repeat else [[] for _ in ids])
    for got, want in zip(prefix2, expected):
        torch.testing.assert_close(got, want)
    layout = runs[1]
    for i, (want, toks) in enumerate(zip(expected, tokens2)):
        n = want.shape[0] + len(toks)
        assert layout.attention_mask[i].tolist() == [0] * (layout.attention_mask.shape[1] - n) + [1] * n
        assert layout.position_ids[i, -n:].tolist() == list(range(n))
        row = layout.inputs_embeds[i, -n:]
        torch.testing.assert_close(row[: want.shape[0]], want.to(row.dtype))
        if toks:
            torch.testing.assert_close(row[want.shape[0]:], lm.embed(torch.tensor(toks)))


def test_save_load_round_trip_gives_same_generations(lm, examples, tmp_path):
    module = _module(lm, connector={"kind": "mlp", "layers": 1})
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_module(module, tmp_path / "m", lm)
    back = load_module(tmp_path / "m", lm)
    for name, value in module.state_dict().items():
        assert torch.equal(value, back.state_dict()[name]), name
    cfg = GenerationConfig(max_new_tokens=4)
    ours = [g.token_ids for gens in module.generate(lm, examples, cfg) for g in gens]
    theirs = [g.token_ids for gens in back.generate(lm, examples, cfg) for g in gens]
    assert ours == theirs


def test_pretrain_connector_changes_only_the_connector(lm):
    module = _module(lm)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    texts = ["the cat was born in paris and the dog in london", "a red bird is happy and the fish is sad"] * 4
    stats = pretrain_connector(module, lm, texts, steps=4, batch_size=4, lr=1e-2, progress=False)
    assert len(stats["losses"]) == 4
    assert torch.equal(before["prompt1"], module.prompt1) and torch.equal(before["prompt2"], module.prompt2)
    assert not torch.equal(before["connector.gain"], module.connector.gain)
    assert module.prompt1.requires_grad and module.prompt2.requires_grad  # flags restored


@pytest.mark.parametrize("repeat", [True, False])
def test_questions_longer_than_the_window_are_cut_to_fit_both_passes(lm, repeat):
    from shoulders.data.examples import Example

    module = _module(lm, repeat_question=repeat, answer_tokens=8)
    long_q = Example(input="the cat sat on the mat and " * 200 + "where was the cat?", target="mat")
    ids = module.encode_inputs(lm, [long_q])[0]
    copies = 2 if repeat else 1
    assert 3 + len(ids) + 8 <= lm.max_context  # pass 1
    assert 2 + copies * len(ids) + 8 <= lm.max_context  # pass 2: prompt2, Connector vectors (+ the question)
    assert len(ids) == min(lm.max_context - 3 - 8, (lm.max_context - 2 - 8) // copies)  # cut no more than needed
    assert torch.isfinite(module.loss(lm, [long_q]))
    out = module.generate(lm, [long_q], GenerationConfig(max_new_tokens=8))
    assert len(out) == 1 and len(out[0]) == 1
