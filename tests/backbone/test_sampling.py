"""The one sampler (`backbone.sampling`) and the one stop-string scanner (`backbone.stops`)
that `FrozenLM.generate` and the server share."""
import torch

from shoulders.backbone.sampling import SamplingParams, make_generator, sample_rows
from shoulders.backbone.stops import cut_at_stop, hits_stop, stop_at, tail_tokens


def test_one_generator_draws_all_rows_in_one_call():
    """`generate`'s path: one seeded stream for the batch, the rows drawn together."""
    torch.manual_seed(0)
    logits = torch.randn(3, 40)
    p = SamplingParams(0.8, 0.9, 10)
    got = sample_rows(logits, [p] * 3, torch.Generator().manual_seed(5))
    again = sample_rows(logits, [p] * 3, torch.Generator().manual_seed(5))
    assert torch.equal(got, again)
    probs = torch.softmax(logits / 0.8, -1)
    for row, tok in enumerate(got.tolist()):  # inside each row's top-k
        assert tok in torch.topk(probs[row], 10).indices.tolist()


def test_greedy_rows_ignore_generators_and_seeded_rows_their_neighbours():
    torch.manual_seed(1)
    logits = torch.randn(3, 40)
    params = [SamplingParams(), SamplingParams(1.0), SamplingParams()]
    out = sample_rows(logits, params, [None, make_generator(3, torch.device("cpu")), None])
    assert out[0] == logits[0].argmax() and out[2] == logits[2].argmax()
    alone = sample_rows(logits[1:2], params[1:2], [make_generator(3, torch.device("cpu"))])
    assert int(alone[0]) == int(out[1])


def test_stop_scanner():
    assert stop_at("a cat sat", ("sat", "cat")) == 2
    assert stop_at("a cat", ("dog",)) is None
    assert cut_at_stop("a cat sat", ("sat",)) == ("a cat ", True)
    assert cut_at_stop("a cat", ()) == ("a cat", False)
    seen = []

    def decode(ids):
        seen.append(len(ids))
        return "".join(chr(96 + i) for i in ids)

    tokens = list(range(1, 27)) * 4  # "ab...z" four times
    assert hits_stop(decode, tokens, ("yz",)) and seen == [tail_tokens(("yz",))]  # only the tail decoded
    assert not hits_stop(decode, tokens, ("zz",))
    assert not hits_stop(decode, tokens, ()) and len(seen) == 2  # no stops: nothing decoded
