"""The reader: packing within the backbone's window, the serving contract of `answer()`,
recall in context on the packed text, save/load, `shoulders ask|generate|train`."""
from __future__ import annotations

import json

import pytest
import torch

from shoulders.data.examples import Example
from shoulders.modules import load_module, save_module
from shoulders.reader import pipeline
from shoulders.reader.metrics import has_answer, recall_in_context
from shoulders.reader.reader import Reader, ReaderConfig
from shoulders.reader.retrieval import make_retriever, save_index
from shoulders.reader.retrieval.base import Hit

QUESTIONS = [("What is the capital of France?", "Paris"), ("Which river flows through Africa?", "Nile"),
             ("What is the highest mountain?", "Everest"), ("Who hunts mice?", "cat")]


@pytest.fixture(scope="module")
def bm25(passages):
    r = make_retriever("bm25")
    r.build(passages, show_progress=False)
    return r


@pytest.fixture()
def index_dir(tmp_path, bm25, passages):
    from shoulders.reader.corpus import write_passages

    write_passages(passages, tmp_path / "corpus.jsonl")
    return str(save_index(bm25, tmp_path / "index", tmp_path / "corpus.jsonl"))


def _reader(lm, window=None, **kw) -> Reader:
    cfg = ReaderConfig(packing={"context_window": window, "answer_tokens": 6}, candidates=8,
                       prompt={"type": "prompt_tuning", "num_virtual_tokens": 4}, **kw)
    return Reader.build(cfg, lm)


@pytest.mark.parametrize("window", [None, 128])
def test_packing_respects_window_and_template(lm, bm25, passages, window):
    reader = _reader(lm, window).attach(retriever=bm25, passages=passages)
    limit = window or lm.max_context
    questions = [q for q, _ in QUESTIONS]
    ctxs = reader.contexts(lm, questions)
    ids = reader.encode_inputs(lm, [Example(input=q, target="") for q in questions])
    for ctx, t in zip(ctxs, ids):
        assert ctx.passages, "at least one passage fits"
        assert len(t) == ctx.input_tokens  # the budget is checked on the rendered input itself
        assert reader.prefix_tokens + len(t) + reader.config.packing.answer_tokens <= limit
    if window:  # a small window must have forced the packer to leave candidates out
        assert all(len(c.passages) < reader.config.candidates for c in ctxs)
    # the template's own tokens and the prefix are in the packer's budget
    cfg = reader.packing(lm)
    assert cfg.prompt_tokens == 4 + pipeline.template_tokens(lm.tokenizer, reader.config.template)


def test_answer_contract(lm, bm25, passages):
    reader = _reader(lm).attach(retriever=bm25, passages=passages)
    out = reader.answer(lm, QUESTIONS[0][0])
    assert {"answer", "passages", "scores", "context_tokens"} <= set(out) and isinstance(out["answer"], str)
    assert out["passages"] and set(out["passages"][0]) == {"id", "title", "score"}
    assert out["scores"] == [p["score"] for p in out["passages"]] and out["reranked"] is False
    ctx = reader.contexts(lm, [QUESTIONS[0][0]])[0]
    assert [p["id"] for p in out["passages"]] == [p.id for p, _ in ctx.passages]
    assert all(p.text in ctx.text for p, _ in ctx.passages) and out["context_tokens"] == ctx.n_tokens


def test_recall_in_context_is_measured_on_the_packed_text(lm, passages):
    by_id = {p.id: p for p in passages}
    reader = _reader(lm, 80)
    # the answer-bearing passage (p0, Paris) is ranked last: in an 80-token window it is left out
    hits = [Hit(f"p{i}", 10.0 - rank) for rank, i in enumerate((1, 2, 3, 4, 5, 0))]
    ctx = pipeline.pack_one("capital of France?", hits, by_id, lm.tokenizer, reader.packing(lm),
                            reader.config.template, reader.prefix_tokens)
    assert "p0" not in [p.id for p, _ in ctx.passages] and not has_answer(ctx.text, ["Paris"])
    assert recall_in_context([ctx.text], [["Paris"]]) == 0.0
    reversed_hits = [Hit(h.passage_id, -h.score) for h in hits]
    first = pipeline.pack_one("capital of France?", reversed_hits, by_id, lm.tokenizer, reader.packing(lm),
                              reader.config.template, reader.prefix_tokens)
    assert recall_in_context([first.text], [["Paris"]]) == 1.0


def test_reranker_reorders_the_context(lm, bm25, passages):
    class Fake:  # scores passages by a rule the retriever does not know: prefers Everest
        def rerank_batch(self, questions, hits, passages, cache=None):
            return [sorted((Hit(h.passage_id, 5.0 if h.passage_id == "p6" else 0.0) for h in row),
                           key=lambda h: -h.score) for row in hits]

    reader = _reader(lm).attach(retriever=bm25, passages=passages, reranker=Fake())
    out = reader.answer(lm, "Which mountain or river is highest?")
    assert out["reranked"] and out["passages"][0]["id"] == "p6" and out["scores"][0] == 5.0


def test_save_load_round_trip_and_cli(lm, tiny_dir, index_dir, capsys):
    from shoulders.cli.main import main

    reader = _reader(lm, 128, index_dir=index_dir)
    with torch.no_grad():
        reader.prompt_module.prompt.add_(0.1)
    out_dir = reader_dir = index_dir.replace("index", "reader")
    save_module(reader, out_dir, lm)
    meta = json.loads(open(f"{reader_dir}/module.json").read())
    assert meta["frozen_components"]["index_dir"] == index_dir and meta["trainable_parameters"] == 4 * lm.hidden_size
    loaded = load_module(reader_dir, lm)
    assert torch.equal(loaded.prompt_module.prompt, reader.prompt_module.prompt)
    q = QUESTIONS[1][0]
    assert loaded.answer(lm, q) == reader.answer(lm, q)
    assert main(["ask", reader_dir, q, "--json", "--backbone", str(tiny_dir), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["answer"] == reader.answer(lm, q)["answer"] and printed["passages"]
    assert main(["ask", reader_dir, q, "--backbone", str(tiny_dir), "--device", "cpu"]) == 0
    assert "passage(s)" in capsys.readouterr().out
    args = ["--backbone", str(tiny_dir), "--device", "cpu"]
    assert main(["generate", reader_dir, q, *args, "--max-new-tokens", "3"]) == 0


def test_shoulders_train_method_reader(tiny_dir, index_dir, tmp_path):
    from shoulders.cli.main import main

    rows = "".join(json.dumps({"input": q, "target": a}) + "\n" for q, a in QUESTIONS)
    (tmp_path / "qa.jsonl").write_text(rows)
    (tmp_path / "reader.yaml").write_text(f"""
method: reader
backbone: {{name_or_path: {tiny_dir}, device: cpu}}
module: {{index_dir: {index_dir}, candidates: 5, packing: {{context_window: 128, answer_tokens: 6}},
          prompt: {{type: prompt_tuning, num_virtual_tokens: 4}}}}
tasks: [{{name: qa, train: qa.jsonl, dev: qa.jsonl}}]
train: {{steps: 2, batch_size: 2, eval_every: 2, max_new_tokens: 4}}
output_dir: {tmp_path / 'run'}
""")
    assert main(["train", str(tmp_path / "reader.yaml"), "--no-progress"]) == 0
    assert load_module(tmp_path / "run" / "final").module_type == "reader"


def test_config_rejects_bad_prompt_and_template():
    with pytest.raises(ValueError, match="prompt.type"):
        ReaderConfig(prompt={"type": "lora"})
    with pytest.raises(ValueError, match="question"):
        ReaderConfig(template="{context} Answer:")
    assert ReaderConfig().prompt["num_virtual_tokens"] == 20  # the inner module's defaults are filled in


def test_idpt_reader_reads_the_question(lm, family, bm25, passages, tmp_path):
    if family != "llama":
        pytest.skip("one family is enough: the inner module is the shared ID-PT")
    cfg = ReaderConfig(packing={"context_window": 160, "answer_tokens": 4}, candidates=4,
                       prompt={"type": "idpt", "prompt_length": 3, "encoder_prompt_length": 0, "layers": 1,
                               "hidden_size": 16, "heads": 2, "max_encoder_tokens": 16})
    reader = Reader.build(cfg, lm).attach(retriever=bm25, passages=passages)
    assert reader.prefix_tokens == 3
    examples = [Example(input=q, target=a) for q, a in QUESTIONS[:2]]
    assert reader.prefix(lm, examples).shape[:2] == (2, 3)
    reader.loss(lm, examples).backward()  # the generator learns through the frozen LM
    assert reader.prompt_module.generator.parameters().__next__().grad is not None
    save_module(reader, tmp_path / "idpt_reader", lm)
    loaded = load_module(tmp_path / "idpt_reader", lm).attach(retriever=bm25, passages=passages)
    assert loaded.answer(lm, QUESTIONS[0][0]) == reader.answer(lm, QUESTIONS[0][0])


def test_a_reader_served_through_completions_reads_what_it_retrieves(lm, index_dir):
    """/v1/completions runs a reader as its own job (`_generation_choices`): the prompt is the
    question, and the reader retrieves, packs and reads as /v1/answer does; never the bare question."""
    from shoulders.backbone import GenerationConfig
    from shoulders.serving.completions import _generation_choices
    from shoulders.serving.registry import is_batched

    reader = _reader(lm, 128, index_dir=index_dir)
    assert not is_batched(reader)
    q, cfg = QUESTIONS[0][0], GenerationConfig(max_new_tokens=6)
    ctx = reader.contexts(lm, [q])[0]
    assert ctx.passages and ctx.text
    assert ctx.text in reader.render_inputs(lm, [Example(input=q, target="")])[0]
    served = _generation_choices(reader, lm, [q], cfg)[0]
    read = reader.generate(lm, [Example(input=q, target="", meta={"context": ctx.text})], cfg)[0][0]
    assert served.token_ids == list(read.token_ids)
