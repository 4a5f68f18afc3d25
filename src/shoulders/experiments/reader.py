"""The frozen-reader experiment on toyworld ODQA (paper Table 2): does re-ranking put the
answer in the LM's window more often, and does the frozen LM then answer more questions?

Design (ours; the paper gives no detail):
- Retrievers: BM25, dense (bundled MiniLM) and hybrid (min-max fusion, alpha 0.5), each
  searched once (no seed involved). recall@k is answer recall (DPR's has_answer).
- One re-ranker per seed (MiniLM's first 2 layers, `segments` head), trained with
  `train_reranker` on the training questions, negatives mined from BM25 and dense. It
  re-ranks each retriever's top `candidates`; the rest keep retriever order. The re-ranked
  score mixes in the retriever's (`interpolate`), with the weight chosen per retriever and
  seed on the *dev* questions: the one that most often ranks the question's own passage
  first (ties: the smaller weight; no LM involved).
- Packing order: the best passage goes last, nearest the question (`order="ascending"`).
  toy-small matches the asked relation better than the asked subject, and given several
  passages with that relation it copies from the nearest; best-first put the re-ranker's
  extra same-relation passages between the best one and the question. Chosen on dev
  (docs/reader.md, "Which passage the reader copies").
- The window: toy passages are ~20 tokens and every retriever's answer recall@10 is ~100%,
  so toy-small's whole 256-token window (~10 passages) puts the answer in context for
  ~99% of questions whatever the ranking. The reader fills `window` = 96 tokens (~3
  passages), the paper's regime where the window holds a small part of the candidates;
  recall in context at the full window is reported beside it (`recall_in_context_full`).
- One reader prompt per seed (prompt tuning through the common Trainer) trained on a
  mixture: each training question packed under one of the six configurations (seeded
  round-robin). That one reader is evaluated under each configuration, so EM differences
  come from the contexts alone. EM is split into in-corpus questions (the backbone may
  know the fact) and unseen ones (answerable only by reading the context), and an oracle
  row reads the question's own positive passages: the most any ranking could give.
"""
from __future__ import annotations

import logging
import random
import statistics
import time
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field

from shoulders.backbone import FrozenLM, GenerationConfig
from shoulders.data.examples import Example, Task
from shoulders.data.metrics import exact_match
from shoulders.reader import pipeline
from shoulders.reader.corpus import Passage
from shoulders.reader.metrics import has_answer, recall_at_k
from shoulders.reader.reader import Reader, ReaderConfig
from shoulders.reader.reranker_data import merge_negatives, mine_negatives, reranker_examples, train_reranker
from shoulders.reader.retrieval.base import Hit
from shoulders.utils.fs import atomic_write_json, atomic_write_text
from shoulders.utils.strict_model import StrictModel

log = logging.getLogger(__name__)

RETRIEVERS = ("bm25", "dense", "hybrid")
CONFIGS = ("bm25", "bm25+rerank", "dense", "dense+rerank", "hybrid", "hybrid+rerank")
PAPER = {"DPR": (77.2, 80.4, 46.6, 48.7)}  # Table 2: recall in context and EM, without -> with re-ranking


class ReaderSettings(StrictModel):
    """Every knob of the experiment; `full()` and `quick()` are the demo's two sizes."""

    window: int = Field(96, ge=8, description="tokens of the LM's window the reader fills (see the module docstring)")
    order: Literal["descending", "ascending"] = Field("ascending", description="packed passages: ascending = the "
                                                      "best last, nearest the question (module docstring)")
    retriever_weights: tuple[Annotated[float, Field(ge=0)], ...] = Field(
        (0.0, 0.5, 1.0, 2.0), min_length=1, description="re-ranked score = re-ranker + w x retriever (min-max); w "
        "chosen per retriever and seed on dev, by the question's own passage ranked first")
    candidates: int = Field(10, ge=1, description="passages retrieved per question and re-ranked")
    template: str = Field("{context}\nQ: {question} A:", description="the toy corpus's own reading format")
    passage_template: str = Field("Passage: {text}", description="how each packed passage is written")
    separator: str = Field("\n", description="between packed passages")
    answer_tokens: int = Field(8, ge=1, description="tokens reserved for (and generated as) the answer")
    prompt_tokens: int = Field(8, ge=1, description="the reader's soft prompt length")
    reranker: dict = Field(default_factory=lambda: {"num_layers": 2, "max_seq_len": 64, "negatives": 4,
                                                    "precision": "auto"},
                           description="RerankerConfig fields of the trained re-ranker (bf16 autocast where the CPU "
                           "has bf16 units: same dev choices, faster; docs/reader.md)")
    mined: int = Field(8, ge=1, description="negatives mined per training question (BM25's and dense's, interleaved)")
    reranker_steps: int = Field(150, ge=1, description="re-ranker training steps (150 x 8 questions: about one "
                                "pass over toyworld's 1064; 60 left it under-trained, docs/reader.md)")
    reranker_batch: int = Field(8, ge=1, description="re-ranker training questions per step")
    reranker_lr: float = Field(3e-4, gt=0, description="re-ranker peak learning rate")
    reader_steps: int = Field(150, ge=1, description="reader (soft prompt) training steps")
    reader_batch: int = Field(16, ge=1, description="reader training questions per step")
    reader_lr: float = Field(0.1, gt=0, description="reader soft prompt learning rate")
    reader_train_questions: int | None = Field(480, ge=1, description="training questions packed for the reader; "
                                               "None = all")
    max_test: int | None = Field(None, ge=1, description="evaluate on at most this many test questions; None = all")
    save_reader: bool = Field(True, description="keep the first seed's reader, re-ranker and hybrid index for "
                              "`shoulders ask`")

    @classmethod
    def full(cls) -> "ReaderSettings":
        return cls()

    @classmethod
    def quick(cls) -> "ReaderSettings":
        return cls(reranker_steps=30, reader_steps=40, reader_train_questions=120, save_reader=False)


def _retrievers(passages: list[Passage], progress: bool):
    from shoulders.reader.retrieval import HybridConfig, HybridRetriever, make_retriever

    bm25, dense = make_retriever("bm25"), make_retriever("dense")
    bm25.build(passages, show_progress=False)
    dense.build(passages, show_progress=progress)
    return {"bm25": bm25, "dense": dense, "hybrid": HybridRetriever(HybridConfig(), bm25, dense)}


def _search(retr: dict, questions: list[str], depth: int = 50) -> dict[str, list]:
    hits = {k: pipeline.retrieve(retr[k], questions, depth) for k in ("bm25", "dense")}
    hits["hybrid"] = [retr["hybrid"].fuse(b, d, depth) for b, d in zip(hits["bm25"], hits["dense"])]
    return {k: [row[:20] for row in v] for k, v in hits.items()}


def _configs(hits: dict, questions: list[str], reranker, passages: dict, depth: int, cache: dict,
             weights: dict[str, float]) -> dict:
    out = dict(hits)
    for name in RETRIEVERS:
        out[f"{name}+rerank"] = pipeline.rerank_top(reranker, questions, hits[name], passages, depth, weights[name],
                                                    cache)
    return out


def _choose_weights(reranker, dev: list, dev_hits: dict, passages: dict, s: "ReaderSettings",
                    cache: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per retriever, the interpolation weight that ranks the question's own passage first
    most often on the dev questions (ties: the smaller weight), and that precision@1 for
    every weight tried (percent)."""
    questions, chosen, table = [q.question for q in dev], {}, {}
    for name in RETRIEVERS:
        chosen[name], table[name] = pipeline.choose_weight(s.retriever_weights, lambda w: own_first(
            dev, pipeline.rerank_top(reranker, questions, dev_hits[name], passages, s.candidates, w, cache)))
    return chosen, table


def own_first(questions: list, ranked: list) -> float:
    """Percent of questions whose own (positive) passage is ranked first."""
    return 100 * statistics.fmean(bool(r) and r[0].passage_id in q.positive_ids for q, r in zip(questions, ranked))


def mined_negatives(odqa, retr: dict, passages: dict, s: "ReaderSettings") -> list[list[str]]:
    """Hard negatives per training question, BM25's and dense's interleaved (no seed involved)."""
    mine = _search(retr, [q.question for q in odqa.train], depth=3 * s.mined + 10)
    return merge_negatives(*[mine_negatives(None, odqa.train, passages, s.mined, hits=mine[k])
                             for k in ("bm25", "dense")], k=s.mined)


def train_reranker_for(odqa, passages: dict, mined: list, s: "ReaderSettings", seed: int, progress: bool):
    """The experiment's re-ranker for one seed. Returns (re-ranker, losses)."""
    examples = reranker_examples(odqa.train, passages, mined, seed=seed)
    return train_reranker(examples, {**s.reranker, "seed": seed}, steps=s.reranker_steps, batch_size=s.reranker_batch,
                          lr=s.reranker_lr, seed=seed, progress=progress)


def reader_examples(questions: list, contexts: dict, seed: int) -> list[Example]:
    """The reader's training mixture: each question packed under one of the six
    configurations, assigned round-robin over a seeded shuffle."""
    order = random.Random(seed).sample(range(len(questions)), len(questions))
    return [Example(input=questions[i].question, target=questions[i].answers[0], answers=questions[i].answers,
                    meta={"context": contexts[CONFIGS[j % len(CONFIGS)]][i].text}) for j, i in enumerate(order)]


def _packed(reader: Reader, lm, questions, ranked: dict, passages: dict, window: int | None = None) -> dict:
    cfg = reader.packing(lm)
    if window:
        cfg.context_window = window
    return {name: pipeline.pack_all(questions, [h[:20] for h in ranked[name]], passages, lm.tokenizer, cfg,
                                    reader.config.template, reader.prefix_tokens) for name in CONFIGS}


def _reader_config(s: ReaderSettings, seed: int) -> ReaderConfig:
    return ReaderConfig(template=s.template, candidates=s.candidates,
                        packing={"context_window": s.window, "answer_tokens": s.answer_tokens, "order": s.order,
                                 "passage_template": s.passage_template, "separator": s.separator},
                        prompt={"type": "prompt_tuning", "num_virtual_tokens": s.prompt_tokens, "seed": seed})


def _train_reader(lm, s: ReaderSettings, seed: int, examples: list[Example], run: Path, progress: bool) -> Reader:
    from shoulders.train import Trainer, load_config

    cfg = load_config(data={
        "method": "reader", "backbone": {"name_or_path": lm.name_or_path, "device": "cpu"},
        "module": _reader_config(s, seed).model_dump(mode="json"),
        "optim": {"lr": s.reader_lr, "warmup_steps": 10},
        "train": {"steps": s.reader_steps, "batch_size": s.reader_batch, "seed": seed, "eval_every": 0,
                  "log_every": 25, "max_new_tokens": s.answer_tokens},
        "output_dir": str(run), "resume": False})
    trainer = Trainer(cfg, backbone=lm, tasks=[Task("odqa_reader", train=examples)], progress=progress)
    trainer.fit()
    return trainer.module.eval()


@torch.no_grad()
def _em(reader: Reader, lm, questions, contexts, batch: int = 64) -> list[float]:
    gen = GenerationConfig(max_new_tokens=reader.config.packing.answer_tokens, stop=("\n",))
    exs = [Example(input=q.question, target="", meta={"context": c.text}) for q, c in zip(questions, contexts)]
    out = []
    for i in range(0, len(exs), batch):
        out += [g[0].text.strip() for g in reader.generate(lm, exs[i:i + batch], gen)]
    return [float(exact_match(p, q.answers)) for p, q in zip(out, questions)]


def _row(questions, ranked, ctx, ctx_full, em, texts) -> dict:
    answers = [q.answers for q in questions]
    ric = [has_answer(c.text, a) for c, a in zip(ctx, answers)]
    unseen = [not q.meta.get("in_corpus", True) for q in questions]
    return {
        "recall_at": {str(k): 100 * v for k, v in recall_at_k(ranked, answers, texts, (1, 5, 20)).items()},
        "recall_in_context": 100 * statistics.fmean(ric),
        "recall_in_context_full": 100 * statistics.fmean(has_answer(c.text, a) for c, a in zip(ctx_full, answers)),
        "gold_in_context": 100 * statistics.fmean(any(p.id in q.positive_ids for p, _ in c.passages)
                                                  for q, c in zip(questions, ctx)),
        "passages_in_context": statistics.fmean(len(c.passages) for c in ctx),
        "em": 100 * statistics.fmean(em),
        "em_in_corpus": 100 * statistics.fmean([e for e, u in zip(em, unseen) if not u] or [float("nan")]),
        "em_unseen": 100 * statistics.fmean([e for e, u in zip(em, unseen) if u] or [float("nan")]),
    }


def _aggregate(rows: list[dict]) -> dict:
    out: dict = {"recall_at": {k: statistics.fmean(r["recall_at"][k] for r in rows) for k in rows[0]["recall_at"]}}
    for key in [k for k in rows[0] if k != "recall_at"]:
        xs = [r[key] for r in rows]
        out[key] = statistics.fmean(xs)
        out[f"{key}_std"] = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return out


def run_reader(odqa, small_path: str, *, seeds: list[int], quick: bool, out_dir: Path, progress: bool = True,
               settings: ReaderSettings | None = None) -> dict:
    """Every retriever with and without re-ranking, each seed; writes reader.md, reader.json and
    reader_recall_in_context.png into out_dir; returns the `reader` section of results.json."""
    torch.set_num_threads(1)
    s = settings or (ReaderSettings.quick() if quick else ReaderSettings.full())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock, cpu = {}, time.process_time()  # wall seconds per phase; CPU seconds in all (a shared machine)
    t = time.perf_counter()
    lm = FrozenLM.from_pretrained(small_path, dtype="float32", device="cpu")
    plist = [Passage(p.id, p.title, p.text) for p in odqa.passages]
    passages, texts = {p.id: p for p in plist}, {p.id: p.text for p in plist}
    retr = _retrievers(plist, progress)
    test = odqa.test[: s.max_test] if s.max_test else odqa.test
    shuffled = random.Random(0).sample(odqa.train, len(odqa.train))
    rtrain = shuffled[: s.reader_train_questions] if s.reader_train_questions else shuffled
    test_hits, train_hits = _search(retr, [q.question for q in test]), _search(retr, [q.question for q in rtrain])
    dev_hits = _search(retr, [q.question for q in odqa.dev]) if len(s.retriever_weights) > 1 and odqa.dev else None
    if len(s.retriever_weights) > 1 and not odqa.dev:
        log.warning("reader: no dev questions to choose a retriever weight on; using the first, %g",
                    s.retriever_weights[0])
    mined = mined_negatives(odqa, retr, passages, s)
    probe = Reader.build(_reader_config(s, 0), lm)
    clock["retrieval_s"] = time.perf_counter() - t
    # The oracle context: the question's own positive passages. Its EM is the most any
    # ranking could give this reader, and separates "not in the window" from "not read".
    gold = [[Hit(pid, 1.0) for pid in q.positive_ids] for q in test]
    oracle = pipeline.pack_all([q.question for q in test], gold, passages, lm.tokenizer, probe.packing(lm),
                               probe.config.template, probe.prefix_tokens)
    rows: dict[str, list[dict]] = {c: [] for c in (*CONFIGS, "oracle")}
    chosen: list[dict[str, float]] = []
    dev_precision: list[dict] = []
    for seed in seeds:
        t = time.perf_counter()
        reranker, losses = train_reranker_for(odqa, passages, mined, s, seed, progress)
        clock["reranker_train_s"] = clock.get("reranker_train_s", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        cache: dict = {}
        weights = {name: s.retriever_weights[0] for name in RETRIEVERS}
        if dev_hits is not None:
            weights, table = _choose_weights(reranker, odqa.dev, dev_hits, passages, s, cache)
            dev_precision.append(table)
        chosen.append(weights)
        ranked = _configs(test_hits, [q.question for q in test], reranker, passages, s.candidates, cache, weights)
        ranked_train = _configs(train_hits, [q.question for q in rtrain], reranker, passages, s.candidates, cache,
                                weights)
        clock["rerank_s"] = clock.get("rerank_s", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        ctx = _packed(probe, lm, [q.question for q in test], ranked, passages)
        ctx_full = _packed(probe, lm, [q.question for q in test], ranked, passages, window=lm.max_context)
        train_ctx = _packed(probe, lm, [q.question for q in rtrain], ranked_train, passages)
        reader = _train_reader(lm, s, seed, reader_examples(rtrain, train_ctx, seed),
                               out_dir / "reader" / "runs" / f"seed{seed}", progress)
        clock["reader_train_s"] = clock.get("reader_train_s", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        for name in CONFIGS:
            em = _em(reader, lm, test, ctx[name])
            rows[name].append(_row(test, ranked[name], ctx[name], ctx_full[name], em, texts))
        rows["oracle"].append(_row(test, gold, oracle, oracle, _em(reader, lm, test, oracle), texts))
        clock["eval_s"] = clock.get("eval_s", 0.0) + time.perf_counter() - t
        if s.save_reader and seed == seeds[0]:
            reranker.config = type(reranker.config).model_validate({**reranker.config.model_dump(),
                                                                   "retriever_weight": weights["hybrid"]})
            _save_for_ask(out_dir / "reader", reader, reranker, retr["hybrid"], plist, lm)
    result: dict = {name: _aggregate(rows[name]) for name in rows}
    result.update(per_seed={n: [r["em"] for r in rows[n]] for n in rows}, seeds=list(seeds),
                  timing={**clock, "cpu_s": time.process_time() - cpu}, settings=s.model_dump(), n_test=len(test),
                  window=s.window, full_window=lm.max_context,
                  retriever_weights={name: [w[name] for w in chosen] for name in RETRIEVERS},
                  dev_precision_at_1=dev_precision)
    figure = out_dir / "reader_recall_in_context.png"
    plot(result, figure)
    result["figure"], result["markdown"] = str(figure), str(out_dir / "reader.md")
    atomic_write_text(out_dir / "reader.md", markdown(result, figure.name))
    atomic_write_json(out_dir / "reader.json", result)
    return result


def _save_for_ask(root: Path, reader: Reader, reranker, hybrid, plist: list[Passage], lm) -> None:
    """Seed 0's reader with what it reads from, so `shoulders ask DIR/reader "..."` works."""
    from shoulders.modules.io import save_module
    from shoulders.reader.corpus import write_passages
    from shoulders.reader.retrieval import save_index

    write_passages(plist, root / "corpus.jsonl")
    save_index(hybrid, root / "index", root / "corpus.jsonl")
    save_module(reranker, root / "reranker")
    reader.config.index_dir, reader.config.reranker_dir = str(root / "index"), str(root / "reranker")
    save_module(reader, root / "reader", lm)


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from shoulders.train.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    x = range(len(RETRIEVERS))
    for ax, key, label in ((axes[0], "recall_in_context", "recall in context (%)"), (axes[1], "em", "EM (%)")):
        for j, (suffix, name) in enumerate((("", "retriever order"), ("+rerank", "re-ranked"))):
            r = [result[f"{k}{suffix}"] for k in RETRIEVERS]
            ax.bar([i + (j - 0.5) * 0.38 for i in x], [v[key] for v in r], 0.38, yerr=[v[f"{key}_std"] for v in r],
                   label=name, capsize=3, color=("tab:gray", "tab:blue")[j])
        ax.set_xticks(list(x), RETRIEVERS)
        ax.set_ylabel(label)
        lo = min(result[c][key] for c in CONFIGS)
        ax.set_ylim(max(0.0, lo - 15), 100)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Toyworld ODQA, {result['window']}-token reader window, mean ± std over seeds {result['seeds']}",
                 fontsize=9)
    save_figure(fig, path)


def markdown(result: dict, figure: str) -> str:
    lines = ["### Frozen reader: retrieve, re-rank, pack, read", "",
             f"Toyworld ODQA test ({result['n_test']} questions), toy-small reading a {result['window']}-token window "
             f"(of its {result['full_window']}); mean ± std over seeds {result['seeds']}. Answer recall@k over the "
             "top 20; recall in context = the packed text contains an answer.", "",
             "| retriever | re-rank | R@1 | R@5 | R@20 | recall in context | EM | EM in-corpus | EM unseen "
             f"| in context at {result['full_window']} |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in CONFIGS:
        r = result[name]
        ret, rr = name.split("+")[0], "yes" if name.endswith("+rerank") else "no"
        lines.append(f"| {ret} | {rr} | {r['recall_at']['1']:.1f} | {r['recall_at']['5']:.1f} | "
                     f"{r['recall_at']['20']:.1f} | {r['recall_in_context']:.1f} ± {r['recall_in_context_std']:.1f} | "
                     f"{r['em']:.1f} ± {r['em_std']:.1f} | {r['em_in_corpus']:.1f} | {r['em_unseen']:.1f} | "
                     f"{r['recall_in_context_full']:.1f} |")
    o = result["oracle"]
    lines.append(f"| gold passages only (oracle) | – | – | – | – | {o['recall_in_context']:.1f} | "
                 f"{o['em']:.1f} ± {o['em_std']:.1f} | {o['em_in_corpus']:.1f} | {o['em_unseen']:.1f} | – |")
    order = "best last, nearest the question" if result["settings"]["order"] == "ascending" else "best first"
    weights = "; ".join(f"{k} {', '.join(f'{w:g}' for w in v)}" for k, v in result["retriever_weights"].items())
    how = ("chosen per seed on the dev questions (the question's own passage ranked first most often)"
           if result["dev_precision_at_1"] else "fixed (no dev questions, or one weight given)")
    lines += ["", f"Passages packed {order}. Re-ranked score = re-ranker + w x retriever (min-max), w {how}: "
              f"{weights}."]
    ric, em = PAPER["DPR"][:2], PAPER["DPR"][2:]
    lines += ["", f"Paper (Table 2, for orientation): with DPR, re-ranking raised recall in context {ric[0]} → "
              f"{ric[1]} and EM {em[0]} → {em[1]}; the gains were larger with Spider+BM25.", "",
              f"![recall in context by retriever]({figure})", ""]
    return "\n".join(lines)
