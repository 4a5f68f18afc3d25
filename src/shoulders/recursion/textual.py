"""Textual recursion: pass 1 samples candidate answers, pass 2 reads them and answers.

Both passes run the same frozen LM, each behind its own learned prompt. Pass 2 reads
`pass2_template` with `{candidates}` (pass 1's samples merged with counts, see
`shoulders.recursion.candidates`) and `{question}` (the question through
`text.template`), e.g. `Candidates: Paris (3); Lyon (1). Q: Where was Ada born? A:`.
Each candidate is written by `candidate_template` ({answer}, {count}, {question}) and
joined by `candidate_separator`, so pass 2 can also read them in a format the backbone
already knows, e.g. one `Q: ... A: Paris` line per candidate (docs/recursion.md).

Training is two runs of the common Trainer, chosen by `stage`:

- `stage: pass1` trains prompt1 alone on (question -> answer): plain prompt tuning;
  inference stops after pass 1, so dev scores during this stage measure pass 1.
- `stage: pass2` (with `init_from:` the stage-1 module, or any prompt_tuning module)
  freezes prompt1 and trains prompt2. Its training data is made by running pass 1 on
  the training questions: each batch's candidates are sampled once (seeded by
  `sampling.seed` and a hash of the questions) and cached for the rest of the run;
  `prepare_candidates` fills the cache for a whole training set up front instead,
  optionally with another pass-1 prompt: *cross-fitting*, where each fold's candidates
  come from a prompt trained without that fold, so pass 2 learns from candidates that
  are as often wrong as at test (prompt1's own samples on the questions it was fitted to
  are right more often than on new questions, and pass 2 would learn to trust them).
  At inference candidates are sampled fresh, seeded by `sampling.seed`.

Pass 2 answers by generating (`answer: generate`), or by choosing (`answer: choose`): each
merged candidate is scored as pass 2's continuation and the most likely one is the answer,
so a backbone that cannot copy one line out of several can still pick among them.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from shoulders.backbone.generation import Generation, GenerationConfig
from shoulders.data.examples import Example
from shoulders.recursion.candidates import (DEFAULT_CANDIDATE, DEFAULT_SEPARATOR, Candidates, SamplingConfig, fill,
                                            sample_candidates)
from shoulders.recursion.common import TwoPassConfig, TwoPassModule, score_continuations

DEFAULT_PASS2 = "Candidates: {candidates}. {question}"


def check_pass2_template(v: str) -> str:
    """A pass-2 template must show the candidates (validates `pass2_template` fields)."""
    if "{candidates}" not in v:
        raise ValueError(f"pass2_template {v!r} has no {{candidates}}: pass 2 would never see pass 1's answers")
    return v


def check_candidate_template(v: str) -> str:
    """A candidate template must show the answer (validates `candidate_template` fields)."""
    if "{answer}" not in v:
        raise ValueError(f"candidate_template {v!r} has no {{answer}}")
    return v


class TextualRecursionConfig(TwoPassConfig):
    stage: Literal["pass1", "pass2"] = Field(
        "pass1", description="pass1: train prompt1 (inference = pass 1 only); pass2: freeze prompt1, train prompt2 "
        "on pass 1's candidates (inference = both passes)")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="how pass 1 samples candidates")
    pass2_template: str = Field(DEFAULT_PASS2, description="pass 2's input; {candidates} and {question} are "
                                "replaced")
    candidate_order: Literal["descending", "ascending"] = Field(
        "descending", description="the merged candidates by count: descending = the most frequent first; "
        "ascending = the most frequent last, nearest the question (docs/recursion.md)")
    candidate_template: str = Field(DEFAULT_CANDIDATE, description="how each merged candidate is written: "
                                    "{answer}, {count}, and {question} (the question through text.template)")
    candidate_separator: str = Field(DEFAULT_SEPARATOR, description="between the written candidates")
    answer: Literal["generate", "choose"] = Field(
        "generate", description="how pass 2 answers: generate = free generation (it may copy a candidate or "
        "write something else); choose = the candidate pass 2 scores most likely (its summed token "
        "log-probability, end of answer included), so pass 2 never has to copy one out of the list "
        "(docs/recursion.md). A question with no candidate is generated")

    @field_validator("pass2_template")
    @classmethod
    def _has_candidates(cls, v: str) -> str:
        return check_pass2_template(v)

    @field_validator("candidate_template")
    @classmethod
    def _has_answer(cls, v: str) -> str:
        return check_candidate_template(v)


class TextualRecursion(TwoPassModule):
    module_type = "textual_recursion"
    config_class = TextualRecursionConfig
    config: TextualRecursionConfig

    def __init__(self, config: TextualRecursionConfig, hidden_size: int):
        super().__init__(config, hidden_size)
        self._train_candidates: dict[str, Candidates] = {}  # pass-2 training data, by question

    def set_trainable(self) -> None:
        self.prompt1.requires_grad_(self.config.stage == "pass1")
        self.prompt2.requires_grad_(self.config.stage == "pass2")

    def recursing(self) -> bool:
        return self.config.stage == "pass2"

    # ------------------------------------------------------------ candidates
    def candidates(self, backbone, examples: Sequence[Example], seed: int | None = None,
                   prompt1: Tensor | None = None) -> list[Candidates]:
        """Pass 1's merged samples per example (inference: seeded by `sampling.seed`);
        `prompt1` replaces the module's own pass-1 prompt (cross-fitting)."""
        prompt = self.prompt1 if prompt1 is None else prompt1.to(self.prompt1)
        return sample_candidates(backbone, prompt, self.encode_inputs(backbone, examples), self.config.sampling, seed)

    def training_candidates(self, backbone, examples: Sequence[Example],
                            prompt1: Tensor | None = None) -> list[Candidates]:
        """Cached candidates of training questions; the missing ones are sampled now, once."""
        missing = list({ex.input: ex for ex in examples if ex.input not in self._train_candidates}.values())
        if missing:
            key = "\n".join(ex.input for ex in missing).encode()
            seed = (self.config.sampling.seed * 1_000_003 + zlib.crc32(key)) % (2**62)
            for ex, c in zip(missing, self.candidates(backbone, missing, seed, prompt1)):
                self._train_candidates[ex.input] = c
        return [self._train_candidates[ex.input] for ex in examples]

    def prepare_candidates(self, backbone, examples: Sequence[Example], batch_size: int = 64,
                           prompt1: Tensor | None = None) -> None:
        """Build pass 2's training data for a whole training set (batches in the given order),
        sampled with `prompt1` if given (a pass-1 prompt [P1, D] trained without these
        questions: cross-fitting) instead of the module's own."""
        if prompt1 is not None and tuple(prompt1.shape) != tuple(self.prompt1.shape):
            raise ValueError(f"prepare_candidates: prompt1 has shape {tuple(prompt1.shape)}, "
                             f"this module's pass-1 prompt is {tuple(self.prompt1.shape)}")
        for i in range(0, len(examples), batch_size):
            self.training_candidates(backbone, examples[i:i + batch_size], prompt1)

    def pass2_text(self, example: Example, candidates: Candidates) -> str:
        question = self.config.text.render(example.input)
        c = self.config
        shown = candidates.text(c.sampling.max_shown, ascending=c.candidate_order == "ascending",
                                template=c.candidate_template, separator=c.candidate_separator, question=question)
        return fill(c.pass2_template, candidates=shown, question=question)  # one pass: an answer's braces stay

    # ---------------------------------------------------------------- passes
    def pass2_inputs(self, backbone, examples, states=None):
        cands = states if states is not None and all(s is not None for s in states) else None
        cands = cands or self.candidates(backbone, examples)
        return self.prompt2, self._encode(backbone, [self.pass2_text(ex, c) for ex, c in zip(examples, cands)])

    def choices(self, candidates: Candidates) -> list[str]:
        """What `answer: choose` picks from: the candidates pass 2 is shown."""
        return [a for a, _ in candidates.shown(self.config.sampling.max_shown)]

    def pass2_generate(self, backbone, examples: Sequence[Example], config: GenerationConfig,
                       states: list | None = None) -> list[list[Generation]]:
        """Pass 2's answers; with `answer: choose`, the most likely of each question's candidates."""
        if self.config.answer == "generate":
            return super().pass2_generate(backbone, examples, config, states)
        cands = states if states is not None and all(s is not None for s in states) else None
        cands = cands or self.candidates(backbone, examples)
        answers = [self.choices(c) for c in cands]
        conts = [self.encode_targets(backbone, a) for a in answers]
        with torch.no_grad():
            prefix, ids = self.pass2_inputs(backbone, examples, cands)
            scores = score_continuations(backbone, prefix, ids, conts)
        out: list[list[Generation] | None] = [None] * len(examples)
        for i, (a, lp) in enumerate(zip(answers, scores)):
            if a:
                best = max(range(len(a)), key=lp.__getitem__)  # ties: the more frequent (listed first)
                out[i] = [Generation(a[best], conts[i][best], [], "eos")]
        empty = [i for i, o in enumerate(out) if o is None]
        if empty:  # nothing to choose from: generate, as pass 2 otherwise would
            gens = super().pass2_generate(backbone, [examples[i] for i in empty], config, [cands[i] for i in empty])
            for i, g in zip(empty, gens):
                out[i] = g
        return out

    def pass1(self, backbone, examples: Sequence[Example], config: GenerationConfig):
        if self.config.gate.confidence == "mean_logprob":
            return super().pass1(backbone, examples, config)
        cands = self.candidates(backbone, examples)
        return [Generation(c.top, [], [], "eos") for c in cands], [c.agreement for c in cands], cands

    def loss(self, backbone, examples: Sequence[Example]) -> Tensor:
        targets = self.encode_targets(backbone, [ex.target for ex in examples])
        if self.config.stage == "pass1":
            return backbone(self.prompt1, self.encode_inputs(backbone, examples), targets).loss
        prefix, ids = self.pass2_inputs(backbone, examples, self.training_candidates(backbone, examples))
        return backbone(prefix, ids, targets).loss
