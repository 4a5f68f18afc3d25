"""Pass 1's sampled answers, merged with counts: what textual recursion's pass 2 reads.

The format, which tests pin down: samples are stripped; empty ones are dropped;
duplicates are merged by their SQuAD-normalised form (case, punctuation, articles) and
shown in their first-seen spelling; the merged answers are ordered by count (most
first), ties by first appearance, and written `Paris (3); Lyon (1)` by default (the
`template` and `separator` of `format_candidates` write them otherwise). (An answer that
normalises to nothing, such as "A", is keyed by its lower-cased text instead.) No answer at all
is written `none`. With `include_greedy`, pass 1's greedy answer is one more vote, cast
first (so it wins ties): the candidates then always hold the single pass's own answer.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field

from shoulders.backbone.generation import GenerationConfig
from shoulders.backbone.layout import Prefix
from shoulders.data.metrics import normalize_answer
from shoulders.modules.base import StrictModel


DEFAULT_CANDIDATE = "{answer} ({count})"
DEFAULT_SEPARATOR = "; "


@lru_cache(maxsize=None)
def _field_pattern(names: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\{(" + "|".join(map(re.escape, names)) + r")\}")


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` of `values` replaced in one pass, so braces inside a
    value (an answer, a question) stay as they are; other braces are left alone."""
    return _field_pattern(tuple(values)).sub(lambda m: values[m.group(1)], template)


class SamplingConfig(StrictModel):
    """How pass 1 samples its candidate answers."""

    n: int = Field(5, gt=0, description="samples per question")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling mass")
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens; 0 = off")
    max_new_tokens: int = Field(16, gt=0, description="token budget per sample")
    seed: int = Field(0, description="seed of inference-time sampling (training samples use seed + a batch hash)")
    max_shown: int | None = Field(None, gt=0, description="merged candidates shown to pass 2 at most; null = all")
    include_greedy: bool = Field(False, description="add pass 1's greedy answer as one more vote, cast first")


@dataclass
class Candidates:
    merged: list[tuple[str, int]]  # (answer, count), most frequent first
    n: int  # samples drawn
    tokens: int = 0  # tokens generated over all n samples (for cost accounting)

    @property
    def top(self) -> str:
        return self.merged[0][0] if self.merged else ""

    @property
    def agreement(self) -> float:
        """Share of samples that agree with the top answer, in [0, 1]."""
        return self.merged[0][1] / self.n if self.merged else 0.0

    def shown(self, max_shown: int | None = None) -> list[tuple[str, int]]:
        """The `max_shown` most frequent (all with None), most frequent first: what pass 2 sees."""
        return self.merged[:max_shown] if max_shown else self.merged

    def text(self, max_shown: int | None = None, ascending: bool = False, template: str = DEFAULT_CANDIDATE,
             separator: str = DEFAULT_SEPARATOR, question: str = "") -> str:
        """The `max_shown` most frequent, most frequent first (`ascending`: last), each
        written by `template` (see `format_candidates`)."""
        shown = self.shown(max_shown)
        return format_candidates(shown[::-1] if ascending else shown, template, separator, question)


def merge_candidates(texts: Sequence[str]) -> list[tuple[str, int]]:
    """Merge duplicate answers: [(first spelling, count)], most frequent first."""
    counts: dict[str, list] = {}  # normalised -> [spelling, count, first index]
    for i, raw in enumerate(texts):
        text = raw.strip()
        if not text:
            continue
        key = normalize_answer(text) or text.lower()  # an answer that is all article/punctuation stays
        if key in counts:
            counts[key][1] += 1
        else:
            counts[key] = [text, 1, i]
    ordered = sorted(counts.values(), key=lambda v: (-v[1], v[2]))
    return [(spelling, count) for spelling, count, _ in ordered]


def format_candidates(merged: Sequence[tuple[str, int]], template: str = DEFAULT_CANDIDATE,
                      separator: str = DEFAULT_SEPARATOR, question: str = "") -> str:
    """Each (answer, count) written by `template` ({answer}, {count} and {question} are
    filled in one pass, so braces inside an answer stay as they are), joined by
    `separator`; `none` when there is no answer."""
    if not merged:
        return "none"
    return separator.join(fill(template, answer=a, count=str(c), question=question) for a, c in merged)


def sample_candidates(backbone, prefix: Prefix, ids: list[list[int]], cfg: SamplingConfig,
                      seed: int | None = None) -> list[Candidates]:
    """Sample `cfg.n` answers per row from [prefix ; ids] and merge them (no gradients)."""
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature,
                           top_p=cfg.top_p, top_k=cfg.top_k, n=cfg.n, stop=("\n",),
                           seed=cfg.seed if seed is None else seed)
    rows = backbone.generate(prefix, ids, gen)
    if cfg.include_greedy:
        greedy = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=False, n=1, stop=("\n",))
        rows = [g + s for g, s in zip(backbone.generate(prefix, ids, greedy), rows)]
    return [Candidates(merge_candidates([g.text for g in gens]), len(gens), sum(len(g.token_ids) for g in gens))
            for gens in rows]
