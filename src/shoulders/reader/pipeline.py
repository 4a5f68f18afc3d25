"""Retrieve -> re-rank -> pack: what the frozen LM reads, as functions shared by the reader
module, the experiment and the CLI.

The pieces stay separate so the experiment can search once and re-use the hits for
every configuration (with and without re-ranking), and re-rank each (question,
passage) pair once however many retrievers proposed it.

The one budget rule (in backbone tokens), checked after rendering, never assumed:

    soft prefix + template(context, question) + answer_tokens <= context window

`pack` counts the passages alone; BPE may merge across the template's seams, so the
rendered input is re-counted and, if it is still over, re-packed with a smaller budget.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shoulders.reader.corpus import Passage
from shoulders.reader.packing import PackedContext, PackingConfig, pack
from shoulders.reader.retrieval.base import Hit


@dataclass
class ReaderContext:
    """One question's packed context and where it came from."""

    question: str
    text: str  # the packed passages (what recall in context is measured on)
    passages: list[tuple[Passage, float]]  # the passages in the text, in text order, with their scores
    n_tokens: int  # tokens of `text`
    input_tokens: int  # tokens of the whole rendered input (template, context and question)
    budget: int  # tokens the passages were allowed
    reranked: bool


def render(template: str, context: str, question: str) -> str:
    """The LM's input: `template` with {context} and {question} filled in."""
    return template.replace("{context}", context).replace("{question}", question)


def template_tokens(tokenizer, template: str) -> int:
    """Tokens the template itself costs (special tokens included), with empty slots."""
    return len(tokenizer(render(template, "", ""))["input_ids"])


def retrieve(retriever, questions: Sequence[str], k: int) -> list[list[Hit]]:
    from shoulders.reader.retrieval import search_batched

    return search_batched(retriever, list(questions), k, show_progress=False)


def rerank(reranker, questions: Sequence[str], hits: Sequence[Sequence[Hit]], passages: Mapping[str, Passage],
           cache: dict | None = None) -> list[list[Hit]]:
    """Hits re-scored by the cross-encoder, best first (`cache`: see `rerank_batch`)."""
    return reranker.rerank_batch(questions, hits, passages, cache=cache)


def rerank_top(reranker, questions: Sequence[str], hits: Sequence[Sequence[Hit]], passages: Mapping[str, Passage],
               depth: int, weight: float, cache: dict) -> list[list[Hit]]:
    """Each hit list with its top `depth` re-ranked, the re-ranker's score mixed with the
    retriever's by `weight` (`shoulders.reader.reranker.interpolate`; 0 = the re-ranker
    alone), the rest in retriever order. `cache` holds (question, passage id) -> re-ranker
    score, so trying several weights, or several retrievers' lists, scores each pair once."""
    tops = reranker.rerank_batch(questions, [row[:depth] for row in hits], passages, cache=cache, weight=weight)
    return [with_reranked_top(row, top) for row, top in zip(hits, tops)]


def choose_weight(weights: Sequence[float], score) -> tuple[float, dict[str, float]]:
    """The weight whose `score(w)` (higher is better; computed on dev) is highest, ties to the
    smaller weight, and every weight's score keyed by its `%g` text."""
    scored = {w: score(w) for w in sorted(weights)}
    best = max(scored, key=lambda w: (scored[w], -w))
    return best, {f"{w:g}": v for w, v in scored.items()}


def with_reranked_top(hits: Sequence[Hit], top: Sequence[Hit]) -> list[Hit]:
    """A re-ranked top followed by the rest of `hits` in retriever order, scores kept
    descending (so recall@k past the re-ranked depth is the retriever's own)."""
    seen = {h.passage_id for h in top}
    floor = min((h.score for h in top), default=0.0)
    rest = [Hit(h.passage_id, floor - 1.0 - i) for i, h in enumerate(x for x in hits if x.passage_id not in seen)]
    return list(top) + rest


def pack_one(question: str, hits: Sequence[Hit], passages: Mapping[str, Passage], tokenizer, config: PackingConfig,
             template: str, prefix_tokens: int = 0, reranked: bool = False) -> ReaderContext:
    """Pack one question's hits so that prefix + rendered input + answer fits the window.

    `config.prompt_tokens` must already hold prefix + template tokens (see `Reader.packing`).
    """
    scored = [(passages[h.passage_id], h.score) for h in hits]
    score_of = {h.passage_id: h.score for h in hits}
    limit = config.context_window - prefix_tokens - config.answer_tokens
    cfg = config
    for _ in range(8):  # over by a token or two at most: one re-pack nearly always suffices
        packed: PackedContext = pack(question, scored, tokenizer, cfg)
        n_input = len(tokenizer(render(template, packed.text, question))["input_ids"])
        if n_input <= limit or not packed.passage_ids:
            break
        cfg = PackingConfig(**{**cfg.model_dump(), "context_window": cfg.context_window - (n_input - limit)})
    by_id = {p.id: p for p, _ in scored}
    return ReaderContext(question=question, text=packed.text,
                         passages=[(by_id[i], score_of[i]) for i in packed.passage_ids], n_tokens=packed.n_tokens,
                         input_tokens=n_input, budget=packed.budget, reranked=reranked)


def pack_all(questions: Sequence[str], hits: Sequence[Sequence[Hit]], passages: Mapping[str, Passage], tokenizer,
             config: PackingConfig, template: str, prefix_tokens: int = 0, reranked: bool = False,
             ) -> list[ReaderContext]:
    return [pack_one(q, h, passages, tokenizer, config, template, prefix_tokens, reranked)
            for q, h in zip(questions, hits)]
