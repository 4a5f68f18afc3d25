"""SQuAD with the re-ranker: train it on some articles, measure it on the others.

The article split (`split_articles`) keeps every test article unseen: the re-ranker
trains only on questions of the training articles, with hard negatives mined by BM25
and dense retrieval over the whole collection; it is measured on questions of the test
articles, re-ranking each retriever's top `depth` (the rest keep retriever order, so
recall@k for k > depth cannot change) and packing windows from that top `depth`.
Reported per system, with and without the re-ranker: answer recall@1/5/20/100 (DPR
style), gold-paragraph recall, and recall in context for several window sizes, counted
with MiniLM's tokenizer as a stand-in for a backbone tokenizer (2048 tokens hold ~11
SQuAD paragraphs).

With more than one `retriever_weights`, the re-ranked score is interpolated with the
retriever's (see `interpolate` in `shoulders.reader.reranker`), the weight chosen per
retriever on `dev_questions` further questions of the *training* articles (the mean of
answer recall@1 and @5; ties go to the smaller weight), never on the test articles.

    shoulders experiment squad-rerank --out runs/squad_rerank
    shoulders index eval-squad --rerank --cache runs/squad_rerank
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from shoulders.errors import ShouldersError, format_validation_error
from shoulders.utils.strict_model import StrictModel


class SquadRerankSettings(StrictModel):
    """Every knob of the SQuAD re-ranking experiment (`--set KEY=VALUE` sets one)."""

    train_questions: int = Field(800, ge=1, description="sampled from the training articles (one pass over them)")
    test_questions: int | None = Field(400, ge=1, description="sampled from the test articles; None = all (~5k: "
                                       "hours on a CPU)")
    mined: int = Field(7, ge=1, description="hard negatives kept per training question (BM25's and dense's, "
                       "interleaved)")
    negatives: int = Field(3, ge=1, description="k per loss step, sampled from the mined ones")
    num_layers: int | None = Field(3, ge=1, description="MiniLM's first layers kept: 3 of 6 is half the cost "
                                   "(None = all)")
    max_seq_len: int = Field(256, ge=8, description="word pieces per (question, paragraph) pair")
    batch_size: int = Field(8, ge=1, description="re-ranker training questions per step")
    lr: float = Field(3e-4, gt=0, description="re-ranker peak learning rate")
    warmup: int = Field(20, ge=0, description="re-ranker warm-up steps")
    depth: int = Field(20, ge=1, description="re-rank each retriever's top `depth` (and pack from it)")
    alpha: float = Field(0.5, ge=0, le=1, description="hybrid: min-max fusion, dense weight")
    windows: tuple[int, ...] = Field((512, 1024, 2048), min_length=1, description="recall-in-context window sizes "
                                     "(MiniLM tokens)")
    answer_tokens: int = Field(32, ge=0, description="reserved in each window for the answer")
    split_seed: int = Field(0, description="article split")
    seed: int = Field(0, description="question sampling and re-ranker training")
    retriever_weights: tuple[float, ...] = Field((0.0,), min_length=1, description="score interpolation weights "
                                                 "tried on dev (0 = re-ranker alone)")
    dev_questions: int = Field(200, ge=1, description="training-article questions (not trained on) that choose "
                               "the weight")


class _CachedTokenizer:
    """Memoises token ids per text: packing 6 systems x 3 windows re-counts the same paragraphs."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, texts, add_special_tokens=False):
        todo = [t for t in dict.fromkeys(texts) if (t, add_special_tokens) not in self.cache]
        if todo:
            ids = self.tokenizer(todo, add_special_tokens=add_special_tokens)["input_ids"]
            self.cache.update({(t, add_special_tokens): i for t, i in zip(todo, ids)})
        return {"input_ids": [self.cache[(t, add_special_tokens)] for t in texts]}

    def decode(self, ids):
        return self.tokenizer.decode(ids)


def _retrievers(coll, cache: Path, progress: bool) -> dict[str, Any]:
    from shoulders.reader.retrieval import load_index, make_retriever, save_index

    out = {}
    for kind in ("bm25", "dense"):
        where = cache / "index" / kind
        if (where / "index.json").is_file():
            out[kind] = load_index(where)
        else:
            out[kind] = make_retriever(kind)
            out[kind].build(coll.passages, show_progress=progress)
            save_index(out[kind], where, coll.path)
    return out


def evaluate_reranker_on_squad(data_path: str | Path | None = None, out_dir: str | Path = "runs/squad_rerank",
                               settings: SquadRerankSettings | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the re-ranker on training-article questions; report retrieval with and without it
    on test-article questions. Indexes and the trained re-ranker are kept under `out_dir`
    (`index/`, `reranker/`) and reused by a rerun; the report is written to `report.json`."""
    from shoulders.experiments.squad import load_squad, split_articles
    from shoulders.modules.io import load_module, save_module
    from shoulders.reader.metrics import gold_recall_at_k, recall_at_k, recall_in_context
    from shoulders.reader.packing import PackingConfig, pack
    from shoulders.reader.pipeline import choose_weight, rerank_top
    from shoulders.reader.reranker_data import merge_negatives, mine_negatives, reranker_examples, train_reranker
    from shoulders.reader.retrieval import HybridConfig, HybridRetriever, search_batched
    from shoulders.utils.fs import atomic_write_json

    s = settings or SquadRerankSettings()
    out, timing = Path(out_dir), {}
    coll = load_squad(data_path)
    split = split_articles(coll, 0.5, seed=s.split_seed)
    rng = random.Random(s.seed)
    pool = split.questions(coll, "train")
    train_qs = rng.sample(pool, min(s.train_questions, len(pool)))
    taken = {id(q) for q in train_qs}
    rest = [q for q in pool if id(q) not in taken]
    dev_rng = random.Random(s.seed + 1)  # its own stream: the test sample is the same with or without dev
    dev_qs = dev_rng.sample(rest, min(s.dev_questions, len(rest))) if len(s.retriever_weights) > 1 else []
    test_qs = split.questions(coll, "test")
    test_qs = rng.sample(test_qs, s.test_questions) if s.test_questions and s.test_questions < len(test_qs) else test_qs
    passages = {p.id: p for p in coll.passages}

    t = time.perf_counter()
    retr = _retrievers(coll, out, progress)
    timing["indexes_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rr_dir = out / "reranker"
    if (rr_dir / "module.json").is_file():
        reranker = load_module(rr_dir).eval()
        timing["reranker_loaded"] = True
    else:
        mined = [mine_negatives(r, train_qs, passages, s.mined, depth=3 * s.mined + 10) for r in retr.values()]
        examples = reranker_examples(train_qs, passages, merge_negatives(*mined, k=s.mined), seed=s.seed)
        cfg = {"num_layers": s.num_layers, "max_seq_len": s.max_seq_len, "negatives": s.negatives, "seed": s.seed}
        reranker, losses = train_reranker(examples, cfg, batch_size=s.batch_size, lr=s.lr, warmup=s.warmup,
                                          seed=s.seed, progress=progress)
        save_module(reranker, rr_dir, extra={"squad_train_questions": len(examples), "final_loss": losses[-1],
                                             "split_seed": s.split_seed, "seed": s.seed})
        timing["train_questions"] = len(examples)
    timing["reranker_train_s"] = time.perf_counter() - t

    hybrid = HybridRetriever(HybridConfig(fusion="minmax", alpha=s.alpha, depth=100), retr["bm25"], retr["dense"])

    def search(qs):
        found = {k: search_batched(r, qs, 100, show_progress=False) for k, r in retr.items()}
        found["hybrid"] = [hybrid.fuse(b, d, 100) for b, d in zip(found["bm25"], found["dense"])]
        return found

    cache: dict = {}

    def reranked(qs, found, name, weight):
        return rerank_top(reranker, qs, found[name], passages, s.depth, weight, cache)

    t = time.perf_counter()
    weights = {name: s.retriever_weights[0] for name in ("bm25", "dense", "hybrid")}
    dev_choice: dict = {}
    if dev_qs:
        dev_queries, dev_answers = [q.question for q in dev_qs], [q.answers for q in dev_qs]
        dev_hits, dev_texts = search(dev_queries), coll.passage_texts()
        for name in weights:
            def recall(w, name=name):
                r = recall_at_k(reranked(dev_queries, dev_hits, name, w), dev_answers, dev_texts, (1, 5))
                return 100 * (r[1] + r[5]) / 2

            weights[name], dev_choice[name] = choose_weight(s.retriever_weights, recall)
    timing["choose_weight_s"] = time.perf_counter() - t

    t = time.perf_counter()
    queries = [q.question for q in test_qs]
    hits = search(queries)
    timing["search_s"] = time.perf_counter() - t

    t = time.perf_counter()
    for name in ("bm25", "dense", "hybrid"):
        hits[f"{name}+rerank"] = reranked(queries, hits, name, weights[name])
    timing["rerank_s"] = time.perf_counter() - t
    timing["reranked_pairs"] = len(cache)

    t = time.perf_counter()
    answers, golds = [q.answers for q in test_qs], [q.gold_id for q in test_qs]
    texts = coll.passage_texts()
    tokenizer = _CachedTokenizer(reranker.tokenizer)
    systems = {}
    for name in ("bm25", "bm25+rerank", "dense", "dense+rerank", "hybrid", "hybrid+rerank"):
        ric = {}
        for w in s.windows:
            cfg = PackingConfig(context_window=w, answer_tokens=s.answer_tokens)
            ctx = [pack(q, [(passages[h.passage_id], h.score) for h in row[:s.depth]], tokenizer, cfg).text
                   for q, row in zip(queries, hits[name])]
            ric[str(w)] = 100 * recall_in_context(ctx, answers)
        systems[name] = {
            "recall_at": {str(k): 100 * v for k, v in recall_at_k(hits[name], answers, texts, (1, 5, 20, 100)).items()},
            "gold_recall_at": {str(k): 100 * v
                               for k, v in gold_recall_at_k(hits[name], golds, (1, 5, 20, 100)).items()},
            "recall_in_context": ric,
        }
    timing["metrics_s"] = time.perf_counter() - t
    report = {"n_train_questions": len(train_qs), "n_test_questions": len(test_qs), "n_passages": len(passages),
              "test_articles": len(split.test_titles), "train_articles": len(split.train_titles),
              "settings": s.model_dump(), "retriever_weight": weights, "dev_recall_1_5_by_weight": dev_choice,
              "n_dev_questions": len(dev_qs), "systems": systems, "timing": timing}
    atomic_write_json(out / "report.json", report)
    return report


def rerank_table(report: dict[str, Any]) -> str:
    """Markdown: answer recall@k and recall in context per window, each system +/- re-ranker."""
    ws = [str(w) for w in report["settings"]["windows"]]
    head = ["system", "R@1", "R@5", "R@20", "R@100"] + [f"in ctx {w}" for w in ws]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["systems"].items():
        cells = [f"{r['recall_at'][k]:.1f}" for k in ("1", "5", "20", "100")]
        cells += [f"{r['recall_in_context'][w]:.1f}" for w in ws]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_from_pairs(pairs: list[str], **given: Any) -> SquadRerankSettings:
    """Settings from `KEY=VALUE` strings (values parsed as JSON) plus keyword fields."""
    fields = SquadRerankSettings.model_fields
    values = dict(given)
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key not in fields:
            raise ShouldersError(f"--set {key}: expected one of {sorted(fields)}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            raise ShouldersError(f"--set {pair}: the value must be JSON (a number, null, a list)") from None
    for key in ("windows", "retriever_weights"):
        if key in values:
            values[key] = tuple(values[key]) if isinstance(values[key], (list, tuple)) else (values[key],)
    try:
        return SquadRerankSettings(**values)
    except ValidationError as err:
        raise ShouldersError(f"--set: {format_validation_error(err, '', SquadRerankSettings)}") from None


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(prog="shoulders experiment squad-rerank",
                                description="SQuAD retrieval with and without the trained re-ranker")
    p.add_argument("--data", help="squad-v1.1-dev.json (default: $SHOULDERS_DATA or ../shared/data)")
    p.add_argument("--out", default="runs/squad_rerank", help="indexes, re-ranker and report.json go here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a SquadRerankSettings field")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = evaluate_reranker_on_squad(args.data, args.out, settings_from_pairs(args.set))
    print(rerank_table(report))
    print(json.dumps(report["timing"]))
    return 0
