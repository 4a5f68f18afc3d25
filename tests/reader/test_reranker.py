"""The cross-encoder re-ranker: it learns, it saves and loads exactly, it trains through
`shoulders train`, and hard-negative mining never returns an answer."""
from __future__ import annotations

import json

import pytest
import torch

from shoulders.data.examples import Example
from shoulders.modules import load_module, save_module
from shoulders.reader.corpus import Passage
from shoulders.reader.reranker import CrossEncoderReranker, RerankerConfig
from shoulders.reader.reranker_data import merge_negatives, mine_negatives, reranker_examples, train_reranker
from shoulders.reader.retrieval.base import Hit

WORDS = [f"w{i}" for i in range(40)] + ["alpha", "beta", "gamma", "delta", "find", "is", "here"]


def build_tiny_bert(path) -> str:
    """A randomly initialised 2-layer BERT and a word-level WordPiece vocabulary, offline."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    BertTokenizerFast(vocab=vocab).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _examples(ks, seed=0):
    """The positive says 'alpha' about the asked word; negatives say something else about it."""
    return [Example(input=f"find w{k}", target=f"w{k} is alpha", choices=[f"w{k} is alpha", f"w{k} is beta",
                                                                         f"w{k} is gamma", f"w{k} is delta"])
            for k in ks]


def _top1(module, examples) -> float:
    scores = module.choice_logprobs(None, examples)
    return sum(max(range(len(s)), key=s.__getitem__) == 0 for s in scores) / len(examples)


def test_learns_to_rank_the_positive_first(tiny_bert):
    cfg = {"encoder": tiny_bert, "negatives": 3, "max_seq_len": 16, "freeze_embeddings": False}
    held_out = _examples(range(30, 40))
    fresh = CrossEncoderReranker.build(RerankerConfig(**cfg))
    before = _top1(fresh, held_out)
    module, losses = train_reranker(_examples(range(30)), cfg, steps=40, batch_size=8, lr=3e-3, warmup=2)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert before < 0.7 and _top1(module, held_out) == 1.0
    # rerank sorts hits by the new scores; score() takes passages or texts
    passages = {"a": Passage("a", "", "w31 is beta"), "b": Passage("b", "", "w31 is alpha")}
    ranked = module.rerank("find w31", [Hit("a", 9.0), Hit("b", 1.0)], passages)
    assert [h.passage_id for h in ranked] == ["b", "a"] and ranked[0].score > ranked[1].score
    assert module.score("find w31", [passages["a"], "w31 is alpha"])[1] > module.score("find w31", ["w31 is beta"])[0]


def test_bundled_minilm_is_the_default():
    cfg = RerankerConfig(num_layers=1)
    assert cfg.encoder == "sentence-transformers/all-MiniLM-L6-v2" and cfg.pooling == "segments"
    module = CrossEncoderReranker.build(cfg)
    assert module.encoder.config.model_type == "bert" and module.encoder.config.num_hidden_layers == 1
    s = module.score("What is the capital of France?", ["Paris is the capital of France.", "Cats hunt mice."])
    assert s[0] > s[1]  # the head starts as a scaled cosine of MiniLM's pooled outputs


def test_save_load_round_trip(tiny_bert, tmp_path):
    module, _ = train_reranker(_examples(range(8)), {"encoder": tiny_bert, "max_seq_len": 16}, steps=2, lr=1e-3)
    save_module(module, tmp_path / "rr")
    meta = json.loads((tmp_path / "rr" / "module.json").read_text())
    assert meta["module_type"] == "reranker" and meta["frozen_components"]["encoder"]["name_or_path"] == tiny_bert
    loaded = load_module(tmp_path / "rr")  # no backbone: a re-ranker does not need one
    texts = ["w1 is alpha", "w2 is beta", "w3 is gamma here"]
    assert loaded.score("find w1", texts) == pytest.approx(module.score("find w1", texts), abs=1e-5)
    assert set(loaded.state_to_save()) == set(module.state_dict())  # encoder + head, frozen embeddings included


def _plain_loop(examples, cfg, *, steps, batch_size, lr, warmup, seed):
    """The re-ranker's own training loop as it was before it moved into the Trainer (kept
    here as the reference the Trainer must reproduce: the demo's numbers may not move)."""
    import random

    from shoulders.train.loop import lr_scheduler, run

    module = CrossEncoderReranker.build(RerankerConfig(**cfg))
    params = list(module.trainable_parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    sched = lr_scheduler(opt, "warmup_times_linear", warmup, steps)
    rng, order = random.Random(seed), []

    def batch_loss(_step):
        nonlocal order
        while len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch, order = [examples[i] for i in order[:batch_size]], order[batch_size:]
        return module.loss(None, batch)

    module.train()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        losses = run(batch_loss, opt, sched, steps, desc="", progress=False, params=params, max_grad_norm=1.0)
    return module, losses


def test_the_trainer_trains_it_exactly_as_the_plain_loop_did(tiny_bert, tmp_path):
    # 11 examples, batch 4: epochs end mid-batch; 5 choices, 3 negatives: negatives are sampled
    examples = [Example(input=ex.input, target=ex.target, choices=[*ex.choices, f"w{k} is here"])
                for k, ex in zip(range(11), _examples(range(11)))]
    cfg = {"encoder": tiny_bert, "negatives": 3, "max_seq_len": 16, "seed": 3}
    torch.manual_seed(123)
    module, losses = train_reranker(examples, cfg, steps=9, batch_size=4, lr=3e-3, warmup=2, seed=5,
                                    output_dir=tmp_path / "run")
    after = torch.get_rng_state()
    torch.manual_seed(123)
    reference, ref_losses = _plain_loop(examples, cfg, steps=9, batch_size=4, lr=3e-3, warmup=2, seed=5)
    assert torch.equal(after, torch.get_rng_state())  # training left the caller's RNG as the plain loop did
    assert losses == ref_losses and len(losses) == 9
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), reference.state_dict().values()))
    assert not module.training and (tmp_path / "run" / "history.json").is_file()
    assert not (tmp_path / "run" / "final").exists()  # save_final off: the module is returned in memory
    assert not (tmp_path / "run" / "checkpoints").exists()  # nor a last-step checkpoint of it


def test_shoulders_train_method_reranker(tiny_bert, tmp_path):
    """No `backbone:` section: the re-ranker reads no LM, and the Trainer loads none."""
    from shoulders.cli.main import main
    from shoulders.data.loaders import write_examples

    write_examples(tmp_path / "train.jsonl", _examples(range(20)))
    write_examples(tmp_path / "dev.jsonl", _examples(range(20, 26)))
    (tmp_path / "rr.yaml").write_text(f"""
method: reranker
module: {{encoder: {tiny_bert}, negatives: 2, max_seq_len: 16}}
tasks: [{{name: rerank, train: train.jsonl, dev: dev.jsonl, metric: exact_match}}]
optim: {{lr: 0.001}}
train: {{steps: 4, batch_size: 4, eval_every: 2}}
output_dir: {tmp_path / 'run'}
""")
    assert main(["train", str(tmp_path / "rr.yaml"), "--no-progress"]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["step"] for e in history["eval"]] == [2, 4] and 0.0 <= history["eval"][-1]["average"] <= 100.0
    module = load_module(tmp_path / "run" / "final")
    assert module.module_type == "reranker" and len(module.score("find w1", ["w1 is alpha"])) == 1
    assert json.loads((tmp_path / "run" / "final" / "module.json").read_text())["backbone"] is None
    from shoulders import load

    loaded, backbone = load(tmp_path / "run" / "final")  # no backbone recorded, none needed
    assert backbone is None and loaded.module_type == "reranker"


def test_a_backbone_free_run_takes_its_device_and_refuses_it_beside_a_backbone(tiny_bert, tmp_path):
    from shoulders.train import ConfigError, load_config

    data = {"method": "reranker", "module": {"encoder": tiny_bert}, "device": "cpu"}
    assert load_config(data=data).device == "cpu"
    with pytest.raises(ConfigError, match="device: for a run with no backbone"):
        load_config(data={**data, "backbone": {"name_or_path": "x"}})


def test_mining_excludes_positives_and_answers():
    class Q:
        question, answers, positive_ids = "where is the cat", ["garden"], ["p0"]

    class FakeRetriever:
        def search(self, queries, k):
            return [[Hit(f"p{i}", 10.0 - i) for i in range(4)] for _ in queries]

    passages = {"p0": Passage("p0", "", "the cat is in the garden"), "p1": Passage("p1", "", "a garden cat"),
                "p2": Passage("p2", "", "the cat sleeps"), "p3": Passage("p3", "", "a dog barks")}
    negs = mine_negatives(FakeRetriever(), [Q()], passages, k=5)
    assert negs == [["p2", "p3"]]  # p0 by id, p1 by answer containment
    assert merge_negatives([["a", "b"]], [["b", "c", "d"]], k=3) == [["a", "b", "c"]]
    ex = reranker_examples([Q()], passages, negs)[0]
    assert ex.target == "the cat is in the garden" and ex.choices == [ex.target, "the cat sleeps", "a dog barks"]


def test_interpolate_mixes_normalised_scores():
    from shoulders.reader.reranker import interpolate

    hits = [Hit("a", 10.0), Hit("b", 5.0), Hit("c", 0.0)]  # the retriever's order
    ce = [0.0, 1.0, 0.9]  # the cross-encoder prefers b, then c
    assert [h.passage_id for h in interpolate(hits, ce, 0.0)] == ["b", "c", "a"]
    assert [h.score for h in interpolate(hits, ce, 0.0)] == [1.0, 0.9, 0.0]  # raw scores when w = 0
    mixed = interpolate(hits, ce, 1.0)  # a: 0 + 1, b: 1 + 0.5, c: 0.9 + 0
    assert [h.passage_id for h in mixed] == ["b", "a", "c"]
    assert [round(h.score, 6) for h in mixed] == [1.5, 1.0, 0.9]
    assert [h.passage_id for h in interpolate(hits, ce, 100.0)] == ["a", "b", "c"]  # the retriever dominates
    assert interpolate([], [], 1.0) == []
    same = interpolate([Hit("x", 1.0), Hit("y", 1.0)], [2.0, 2.0], 0.5)  # constant lists: ties keep order
    assert [h.passage_id for h in same] == ["x", "y"]


def test_retriever_weight_applies_in_rerank_batch(tiny_bert):
    passages = {f"p{i}": Passage(f"p{i}", "", t) for i, t in enumerate(["w1 is alpha", "w2 is beta", "w3 is gamma"])}
    hits = [Hit("p0", 3.0), Hit("p1", 2.0), Hit("p2", 1.0)]
    plain = CrossEncoderReranker.build(RerankerConfig(encoder=tiny_bert), None)
    heavy = CrossEncoderReranker.build(RerankerConfig(encoder=tiny_bert, retriever_weight=1000.0), None)
    heavy.load_state_dict(plain.state_dict())
    assert [h.passage_id for h in heavy.rerank("find w1", hits, passages)] == ["p0", "p1", "p2"]
    cache: dict = {}
    own = plain.rerank_batch(["find w1"], [hits], passages, cache=cache)[0]
    assert sorted(h.score for h in own) == sorted(cache.values())  # w = 0: the cross-encoder's own scores
    forced = plain.rerank_batch(["find w1"], [hits], passages, cache=cache, weight=1000.0)[0]
    assert [h.passage_id for h in forced] == ["p0", "p1", "p2"]  # a weight given overrides the config's
    assert heavy.rerank_batch(["find w1"], [hits], passages, weight=0.0)[0] == own  # ... both ways


class _FixedScores:
    """A stand-in re-ranker: fixed scores per passage id, counting the pairs it scores."""

    def __init__(self, scores):
        self.scores, self.scored = scores, 0

    def rerank_batch(self, questions, hits, passages, cache=None, weight=None):
        from shoulders.reader.reranker import interpolate

        for q, row in zip(questions, hits):
            for h in row:
                if (q, h.passage_id) not in cache:
                    cache[(q, h.passage_id)] = self.scores[h.passage_id]
                    self.scored += 1
        return [interpolate(row, [cache[(q, h.passage_id)] for h in row], weight or 0.0)
                for q, row in zip(questions, hits)]


def test_rerank_top_reranks_the_top_mixes_weights_and_scores_each_pair_once():
    from shoulders.reader.pipeline import rerank_top

    hits = [[Hit("a", 3.0), Hit("b", 2.0), Hit("c", 1.0), Hit("d", 0.5)]]
    fake, cache = _FixedScores({"a": 0.0, "b": 0.2, "c": 1.0, "d": 9.0}), {}
    alone = rerank_top(fake, ["q"], hits, {}, 3, 0.0, cache)[0]
    assert [h.passage_id for h in alone] == ["c", "b", "a", "d"]  # only the top 3 re-ranked; d keeps its place
    mixed = rerank_top(fake, ["q"], hits, {}, 3, 100.0, cache)[0]
    assert [h.passage_id for h in mixed] == ["a", "b", "c", "d"]  # the retriever's order dominates
    assert fake.scored == 3  # the second weight re-used the cached scores


def test_bf16_scores_stay_float32_and_rank_as_fp32_does(tiny_bert):
    """The encoder's matmuls in bf16 autocast: pooling and head stay float32 (bf16 scores
    would tie), and the scores stay close to float32's."""
    cfg = {"encoder": tiny_bert, "max_seq_len": 16}
    exact, fast = (CrossEncoderReranker.build(RerankerConfig(**cfg, precision=p)) for p in ("fp32", "bf16"))
    fast.load_state_dict(exact.state_dict())
    pairs = [f"find w{k}" for k in range(8)], [f"w{k} is alpha" for k in range(8)]
    a, b = exact.score_pairs(*pairs), fast.score_pairs(*pairs)
    assert len(set(b)) == len(b)  # no ties from rounding the scores to bf16
    assert a != b and max(abs(x - y) for x, y in zip(a, b)) < 0.1 * (max(a) - min(a) + 1e-6) + 0.05
    loss = fast.loss(None, _examples(range(4)))
    loss.backward()
    assert loss.dtype == torch.float32 and fast.head.weight.grad is not None
    assert fast.head.weight.dtype == torch.float32  # weights are never cast


def test_a_reranker_saved_before_precision_existed_loads_in_float32(tiny_bert, tmp_path):
    """module.json written before `precision` was a field: it loads, and scores as it was
    trained (float32), whatever the CPU has."""
    module = CrossEncoderReranker.build(RerankerConfig(encoder=tiny_bert, max_seq_len=16, precision="bf16"))
    save_module(module, tmp_path / "rr")
    path = tmp_path / "rr" / "module.json"
    meta = json.loads(path.read_text())
    del meta["config"]["precision"]
    path.write_text(json.dumps(meta))
    loaded = load_module(tmp_path / "rr")
    assert loaded.config.precision == "fp32"
    texts = ["w1 is alpha", "w2 is beta"]
    module.config = module.config.model_copy(update={"precision": "fp32"})
    assert loaded.score("find w1", texts) == pytest.approx(module.score("find w1", texts), abs=1e-5)
