"""Greedy context packing: fill the frozen LM's window with the best re-ranked passages.

The window holds the (soft) prompt, the template, the packed passages, the question
and room for the answer. The passage budget is what is left:

    budget = context_window - prompt_tokens - question_tokens - answer_tokens

Passages are taken in descending score and added while they fit, counted in the
backbone tokenizer's own tokens. The policy for the first passage that does not fit:

- "skip" (default): leave it out and keep trying the lower-scored ones; a short
  passage further down may still fit, and fuller windows raise recall in context.
- "truncate": cut that passage to the tokens left (if at least `min_truncated_tokens`)
  and stop: the window is then full to the token.
- "stop": stop at the first passage that does not fit (strict score prefix).

Packed passages are joined in `order`: "descending" puts the best first; "ascending"
puts the best last, nearest the question when the template places the question after
the context (LMs attend most to nearby text). The final text is re-counted as a
whole (token counts of pieces do not always add up exactly under BPE merges), and
the lowest-scored passage is trimmed or dropped until it fits: the budget is never exceeded.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from shoulders.reader.corpus import Passage
from shoulders.utils.strict_model import StrictModel


class PackingStyle(StrictModel):
    """How passages are chosen and rendered, whatever the window: shared by `PackingConfig`
    and the reader module's `packing` section (`reader.ReaderPacking`)."""

    overflow: Literal["skip", "truncate", "stop"] = Field("skip", description="the first passage that does not "
                                                          "fit: skip it and try lower-scored ones | cut it to fit "
                                                          "and stop | stop (module docstring)")
    order: Literal["descending", "ascending"] = Field("descending", description="descending: best first | "
                                                      "ascending: best last, nearest the question")
    passage_template: str = Field("{title}\n{text}", description="how one passage is rendered ({title}, {text})")
    separator: str = Field("\n\n", description="between passages")
    min_truncated_tokens: int = Field(16, ge=0, description="overflow=truncate: a shorter stub is not worth its "
                                      "tokens")


class PackingConfig(PackingStyle):
    context_window: int = Field(2048, gt=0, description="the backbone's maximum sequence length, in tokens")
    prompt_tokens: int = Field(0, ge=0, description="soft-prompt length + the template's own tokens")
    question_tokens: int | None = Field(None, ge=0, description="tokens the question costs; None: count them with "
                                        "the tokenizer")
    answer_tokens: int = Field(32, ge=0, description="tokens reserved for the generated answer")


@dataclass
class PackedContext:
    text: str  # the packed passages, joined by the separator
    passage_ids: list[str]  # in the order they appear in `text`
    n_tokens: int  # tokens of `text` (backbone tokenizer, no special tokens)
    budget: int  # tokens the passages were allowed
    truncated_id: str | None = None  # the passage cut short ("truncate" policy), if any
    skipped_ids: list[str] = field(default_factory=list)  # candidates left out, best first


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def passage_budget(question: str, tokenizer: Any, config: PackingConfig) -> int:
    q = config.question_tokens if config.question_tokens is not None else len(_ids(tokenizer, [question])[0])
    return max(0, config.context_window - config.prompt_tokens - q - config.answer_tokens)


def pack(question: str, scored: Sequence[tuple[Passage, float]], tokenizer: Any,
         config: PackingConfig | None = None) -> PackedContext:
    """Pack `(passage, score)` pairs into the window; see the module docstring for the policy.

    `tokenizer` is the backbone's Hugging Face tokenizer (anything with
    `__call__(texts, add_special_tokens=False)["input_ids"]` and `decode`).
    """
    cfg = config or PackingConfig()
    budget = passage_budget(question, tokenizer, cfg)
    ranked = sorted(scored, key=lambda ps: -ps[1])  # stable: equal scores keep input order
    rendered = [cfg.passage_template.format(title=p.title, text=p.text) for p, _ in ranked]
    piece_ids = _ids(tokenizer, rendered)
    sep = len(_ids(tokenizer, [cfg.separator])[0]) if cfg.separator else 0

    chosen: list[int] = []  # indices into ranked, best first
    pieces: dict[int, str] = {}
    truncated: int | None = None
    used = 0
    for i, ids in enumerate(piece_ids):
        cost = len(ids) + (sep if chosen else 0)
        if used + cost <= budget:
            chosen.append(i)
            pieces[i] = rendered[i]
            used += cost
            continue
        if cfg.overflow == "stop":
            break
        if cfg.overflow == "truncate":
            room = budget - used - (sep if chosen else 0)
            if room >= cfg.min_truncated_tokens:
                chosen.append(i)
                pieces[i] = tokenizer.decode(ids[:room])
                truncated = i
            break

    text, n = _join(chosen, pieces, cfg, tokenizer)
    while n > budget and chosen:  # piece counts can undercount the joined text by a token or two
        last = chosen[-1]
        cur = _ids(tokenizer, [pieces[last]])[0]
        short = len(cur) - (n - budget)
        if last == truncated and short >= cfg.min_truncated_tokens:
            shorter = tokenizer.decode(cur[:short])
            if len(_ids(tokenizer, [shorter])[0]) < len(cur):  # guard: decode/encode must shrink it
                pieces[last] = shorter
                text, n = _join(chosen, pieces, cfg, tokenizer)
                continue
        chosen.pop()
        truncated = None if last == truncated else truncated
        text, n = _join(chosen, pieces, cfg, tokenizer)

    kept = set(chosen)
    in_text = chosen if cfg.order == "descending" else chosen[::-1]
    return PackedContext(
        text=text, passage_ids=[ranked[i][0].id for i in in_text], n_tokens=n, budget=budget,
        truncated_id=ranked[truncated][0].id if truncated is not None else None,
        skipped_ids=[ranked[i][0].id for i in range(len(ranked)) if i not in kept],
    )


def _join(chosen: list[int], pieces: dict[int, str], cfg: PackingConfig, tokenizer: Any) -> tuple[str, int]:
    order = chosen if cfg.order == "descending" else chosen[::-1]
    text = cfg.separator.join(pieces[i] for i in order)
    return text, (len(_ids(tokenizer, [text])[0]) if text else 0)
