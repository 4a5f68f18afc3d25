"""The frozen reader (paper section 2): retrieve -> re-rank -> pack -> a prompt-tuned frozen LM reads.

A `Reader` is a prefix module whose learned part is an inner prompt module (prompt tuning
by default, or ID-PT reading the question); everything else it uses is either frozen or
not a weight at all:

    question --retriever (index_dir)--> top `candidates` hits
             --re-ranker (reranker_dir, optional)--> re-scored, best first
             --greedy packing (pipeline.pack_one)--> context within the window
             --template--> "{context}\\nQuestion: {question}\\nAnswer:"
             --[soft prompt ; tokens] through the frozen LM--> answer

The window is the backbone's own (`packing.context_window` may cap it lower): the soft
prompt, the template, the question and `packing.answer_tokens` are subtracted first, and
passages fill the rest, counted in the backbone's tokens.

Training examples are (question, answer). An example may carry its packed context in
`meta["context"]` (the experiment packs offline, once); otherwise the reader builds it
live, once per question (cached), so `shoulders train` with `method: reader` on a plain
question/answer JSONL works. Saved: the inner prompt's weights only; module.json records
the index and re-ranker it reads with (they are loaded on first use, not at load time).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from shoulders.backbone.generation import GenerationConfig
from shoulders.data.examples import Example
from shoulders.modules.base import ModuleCapabilities, ModuleConfig, SoftPromptModule
from shoulders.modules.registry import module_class, types_with
from shoulders.reader import pipeline
from shoulders.reader.packing import PackingConfig, PackingStyle


class ReaderPacking(PackingStyle):
    """How passages fill the window (see `shoulders.reader.packing`); the rest of the
    window (soft prompt, question) the reader counts itself."""

    context_window: int | None = Field(None, gt=0, description="window the reader fills, in backbone tokens; "
                                       "null = the backbone's max_context (a larger value is capped to it)")
    answer_tokens: int = Field(16, ge=1, description="tokens reserved for the generated answer")


class ReaderConfig(ModuleConfig):
    """`text.target_prefix` separates input and answer; the input itself is `template`."""

    index_dir: str | None = Field(None, description="retriever index built by `shoulders index build` (needed "
                                  "for questions that come without a packed context)")
    corpus: str | None = Field(None, description="passages JSONL/TSV; null = the corpus recorded in index.json")
    reranker_dir: str | None = Field(None, description="trained re-ranker module directory; null = retriever order")
    candidates: int = Field(20, ge=1, description="passages retrieved per question (all re-ranked, then packed)")
    template: str = Field("{context}\nQuestion: {question}\nAnswer:", description="the LM's input; must hold "
                          "{context} and {question}")
    packing: ReaderPacking = Field(default_factory=ReaderPacking)
    prompt: dict[str, Any] = Field(default_factory=lambda: {"type": "prompt_tuning", "num_virtual_tokens": 20},
                                   description="the inner prompt module: type (any type whose capabilities declare "
                                   "reader_prompt: prompt_tuning, idpt, prefix_tuning) and its fields")
    cache_size: int = Field(100_000, ge=0, description="packed contexts remembered per question (training reads "
                            "each question's context once)")

    @field_validator("index_dir", "corpus", "reranker_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        # Recorded in module.json: an existing relative path is made absolute so that the
        # saved reader works from any working directory.
        return str(Path(v).expanduser().resolve()) if v and Path(v).expanduser().exists() else v

    @field_validator("template")
    @classmethod
    def _slots(cls, v: str) -> str:
        missing = [s for s in ("{context}", "{question}") if s not in v]
        if missing:
            raise ValueError(f"template must contain {missing}")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: dict[str, Any]) -> dict[str, Any]:
        kind = v.get("type", "prompt_tuning")
        try:
            usable = module_class(kind).capabilities.reader_prompt
        except (ValueError, TypeError, AttributeError):  # not a registered module type
            usable = False
        if not usable:
            raise ValueError(f"prompt.type {kind!r}: expected one of {tuple(types_with('reader_prompt'))}")
        inner = module_class(kind).config_class.model_validate({k: x for k, x in v.items() if k != "type"})
        return {"type": kind, **inner.model_dump(mode="json")}  # every default visible in module.json

    def inner(self):
        kind = self.prompt["type"]
        return kind, module_class(kind).config_class.model_validate({k: x for k, x in self.prompt.items()
                                                                    if k != "type"})


class Reader(SoftPromptModule):
    module_type = "reader"
    config_class = ReaderConfig
    capabilities = ModuleCapabilities(prompt_embeds=True)  # when its inner prompt's type declares it too

    def __init__(self, config: ReaderConfig, prompt_module):
        super().__init__(config)
        self.prompt_module = prompt_module  # the only child: its weights are the reader's
        self._parts: dict[str, Any] = {}  # retriever, passages, reranker: used, never trained or saved
        self._contexts: OrderedDict[str, pipeline.ReaderContext] = OrderedDict()

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, config: ReaderConfig, backbone) -> "Reader":
        kind, inner = config.inner()
        return cls(config, module_class(kind).build(inner, backbone))

    @classmethod
    def from_saved(cls, config: ReaderConfig, meta: dict, backbone) -> "Reader":
        kind, inner = config.inner()
        inner_meta = {"frozen_components": (meta.get("frozen_components") or {}).get("prompt", {}),
                      "backbone": meta.get("backbone")}
        return cls(config, module_class(kind).from_saved(inner, inner_meta, backbone))

    def frozen_components(self) -> dict:
        rr = self.config.reranker_dir
        return {"prompt": self.prompt_module.frozen_components(), "index_dir": self.config.index_dir,
                "reranker": {"dir": rr, "sha256": _weights_sha(rr)} if rr else None}

    def attach(self, *, retriever=None, passages=None, reranker=None) -> "Reader":
        """Use these in-memory parts instead of loading them from the config's paths."""
        for name, value in (("retriever", retriever), ("passages", passages), ("reranker", reranker)):
            if value is not None:
                self._parts[name] = {p.id: p for p in value} if name == "passages" and not hasattr(value, "keys") \
                    else value
        self._contexts.clear()
        return self

    # ------------------------------------------------------------ pipeline parts
    def _part(self, name: str):
        if name not in self._parts:
            self._parts[name] = self._load_part(name)
        return self._parts[name]

    def _load_part(self, name: str):
        from shoulders.errors import ShouldersError

        c = self.config
        if name == "reranker":
            if not c.reranker_dir:
                return None
            from shoulders.modules.io import load_module

            # beside the reader's own weights (the backbone's device), not left on the CPU
            device = next((p.device for p in self.parameters()), None)
            return load_module(c.reranker_dir, None, device=device).eval()
        if not c.index_dir:
            raise ShouldersError("reader: this question has no packed context and the reader has no index_dir "
                                 "(set module.index_dir, or pass --index)")
        from shoulders.reader.retrieval import load_index
        from shoulders.reader.retrieval.index import read_index_meta

        if name == "retriever":
            return load_index(c.index_dir)
        corpus = c.corpus or read_index_meta(c.index_dir).get("corpus")
        if not corpus:
            raise ShouldersError(f"{c.index_dir}/index.json records no corpus: set the reader's `corpus`")
        from shoulders.reader.corpus import load_passages

        return {p.id: p for p in load_passages(corpus)}

    @property
    def prefix_tokens(self) -> int:
        return self.prompt_module.prefix_length()

    def packing(self, backbone) -> PackingConfig:
        """The packer's budget for `backbone`: its window less the soft prompt and the template."""
        p = self.config.packing
        window = min(p.context_window or backbone.max_context, backbone.max_context)
        return PackingConfig(context_window=window,
                             prompt_tokens=self.prefix_tokens + pipeline.template_tokens(backbone.tokenizer,
                                                                                         self.config.template),
                             answer_tokens=p.answer_tokens, **p.model_dump(include=set(PackingStyle.model_fields)))

    def contexts(self, backbone, questions: Sequence[str]) -> list[pipeline.ReaderContext]:
        """Retrieve, re-rank and pack each question (cached per question)."""
        todo = list(dict.fromkeys(q for q in questions if q not in self._contexts))
        if todo:
            passages, reranker = self._part("passages"), self._part("reranker")
            hits = pipeline.retrieve(self._part("retriever"), todo, self.config.candidates)
            if reranker is not None:
                hits = pipeline.rerank(reranker, todo, hits, passages)
            for ctx in pipeline.pack_all(todo, hits, passages, backbone.tokenizer, self.packing(backbone),
                                         self.config.template, self.prefix_tokens, reranked=reranker is not None):
                self._contexts[ctx.question] = ctx
            while len(self._contexts) > self.config.cache_size:
                self._contexts.popitem(last=False)
        return [self._contexts[q] for q in questions]

    # --------------------------------------------------------- module protocol
    def render_inputs(self, backbone, examples: Sequence[Example]) -> list[str]:
        """The LM's input text per example: its `meta["context"]` if given, else built live."""
        live = [ex.input for ex in examples if "context" not in (ex.meta or {})]
        built = {c.question: c.text for c in self.contexts(backbone, live)} if live else {}
        return [pipeline.render(self.config.template, (ex.meta or {}).get("context", built.get(ex.input, "")),
                                ex.input) for ex in examples]

    def encode_inputs(self, backbone, examples: Sequence[Example]) -> list[list[int]]:
        return backbone.encode(self.render_inputs(backbone, examples))

    def prefix(self, backbone, examples: Sequence[Example]):
        # The inner module sees the question alone: an ID-PT generator then reads what is asked.
        return self.prompt_module.prefix(backbone, [Example(input=ex.input, target="") for ex in examples])

    def answer(self, backbone, question: str, config: GenerationConfig | None = None) -> dict:
        """The serving contract: the answer and the passages it was read from."""
        ctx = self.contexts(backbone, [question])[0]
        cfg = config or GenerationConfig(max_new_tokens=self.config.packing.answer_tokens, stop=("\n",))
        gen = self.generate(backbone, [Example(input=question, target="", meta={"context": ctx.text})], cfg)[0][0]
        return {
            "answer": gen.text.strip().split("\n")[0].strip(),
            "passages": [{"id": p.id, "title": p.title, "score": float(s)} for p, s in ctx.passages],
            "scores": [float(s) for _, s in ctx.passages],
            "context_tokens": ctx.n_tokens,
            "input_tokens": ctx.input_tokens,
            "reranked": ctx.reranked,
        }


def _weights_sha(directory: str) -> str | None:
    from shoulders.modules.io import CONFIG_NAME

    try:
        import json

        return json.loads((Path(directory) / CONFIG_NAME).read_text())["weights"]["sha256"]
    except (OSError, ValueError, KeyError):
        return None
