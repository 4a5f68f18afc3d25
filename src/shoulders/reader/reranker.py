"""The re-ranker: a cross-encoder that reads the question and a passage *jointly*.

A retriever scores question and passage separately (BM25 terms, or two embeddings), so
it cannot tell "X was born in Z" from "X once met Y. Y was born in Z". A cross-encoder
attends across both texts at once and can. It is a small encoder of its own (the bundled
all-MiniLM-L6-v2 BERT by default, optionally cut to its first `num_layers` layers) with a
new linear scoring head:

    [CLS] question [SEP] title. passage [SEP] --encoder (joint attention)--> h_1..h_T
    u = mean of the question's h, v = mean of the passage's h       (pooling="segments")
    score = head(u/|u| * v/|v|), the head starting as 20 x cosine(u, v)

Starting from MiniLM's own similarity (it was trained so that mean-pooled vectors of
related texts have a high cosine) makes the re-ranker useful from step 0; the few hundred
steps it gets on a CPU then teach it what the retrievers miss. On toyworld, 60 steps took
BM25's gold recall@1 from 49% to 79% re-ranked, where a [CLS] or whole-pair-mean head
(`pooling="cls"|"mean"`, BERT's usual cross-encoder) was still below BM25 after 60 steps.

Training is listwise: for one question, the positive and k hard negatives (mined from
the retrievers, `mine_negatives`) are scored and the loss is the cross-entropy of the
positive under a softmax over the k+1 scores (InfoNCE).

Data through the common Trainer: an `Example(input=question, target=positive text,
choices=[positive, negative, ...])` -- so a plain JSONL file with `input`, `target` and
`choices` fields trains it (`shoulders train`, `method: reranker`), and dev evaluation
is rank classification over the choices (exact match of the top choice = precision@1).
In-memory examples may carry `meta["negatives"]` instead of choices.

Unlike a prefix module, here the *whole* encoder is trained (it is the re-ranker's own
small model, not the frozen LM), so the weights file holds encoder + head, and
module.json records the encoder it started from. The backbone is never used.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from tqdm.auto import tqdm

from shoulders.data.examples import Example
from shoulders.modules.base import ModuleCapabilities, ModuleConfig, SoftModule
from shoulders.modules.io import ModuleFormatError
from shoulders.prompts.encoders import DEFAULT_ENCODER, resolve_encoder_path
from shoulders.reader.corpus import Passage
from shoulders.reader.retrieval.base import Hit, passage_text
from shoulders.reader.retrieval.hybrid import fuse_minmax
from shoulders.utils.precision import autocast, resolve_precision
from shoulders.utils.progress import bar_disabled

__all__ = ["RerankerConfig", "CrossEncoderReranker"]


class RerankerConfig(ModuleConfig):
    encoder: str = Field(DEFAULT_ENCODER, description="initial encoder: a BERT-family directory or hub id; the "
                         "default is the bundled all-MiniLM-L6-v2 (found offline)")
    num_layers: int | None = Field(None, ge=1, description="keep only the encoder's first N layers (cheaper); "
                                   "null = all")
    max_seq_len: int = Field(128, ge=8, description="word pieces per (question, passage) pair; longer pairs are cut")
    negatives: int = Field(7, ge=1, description="k: hard negatives per question in the listwise loss (sampled anew "
                           "each step when more are given)")
    freeze_embeddings: bool = Field(True, description="keep the word-embedding matrix fixed (half of MiniLM's "
                                    "weights): a few thousand questions cannot improve it, and the optimizer "
                                    "then updates half as many weights; it is saved all the same")
    with_title: bool = Field(True, description="score 'title. text' (as the retrievers index it)")
    score_batch_size: int = Field(64, ge=1, description="pairs per forward pass when scoring")
    pooling: Literal["segments", "mean", "cls"] = Field(
        "segments", description="what the head reads. segments: the question's and the passage's own token "
        "outputs, mean-pooled apart after joint encoding, as u*v of their unit vectors (the head starts as "
        "init_scale x cosine, the similarity MiniLM was trained for, so re-ranking is useful from step 0); "
        "mean: the whole pair's mean; cls: the [CLS] vector (the classic cross-encoder, slowest to train)")
    init_scale: float = Field(20.0, gt=0, description="segments: the head's starting weight (a softmax "
                              "temperature of 1/20 for cosine scores)")
    retriever_weight: float = Field(0.0, ge=0, description="final score = re-ranker score + w x the retriever's "
                                    "score, each min-max normalised over the list being re-ranked (score "
                                    "interpolation, as in monoBERT-style pipelines); 0 = the re-ranker alone")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "fp32", description="the encoder's matmuls in bf16 autocast (training and scoring; pooling and head stay "
        "float32): auto = where the hardware has bf16 units (shoulders.utils.precision), else float32")
    seed: int = Field(0, description="seed of the scoring head's initialisation")


PROGRESS_PAIRS = 2000  # score_pairs shows a progress bar from this many pairs on


def interpolate(hits: Sequence[Hit], rerank_scores: Sequence[float], weight: float) -> list[Hit]:
    """Hits re-scored as minmax(re-ranker) + weight x minmax(retriever) (the hybrid
    retriever's own min-max fusion), best first, ties in the retriever's order; weight 0
    keeps the raw re-ranker scores."""
    rescored = [Hit(h.passage_id, float(r)) for h, r in zip(hits, rerank_scores)]
    if weight == 0:
        return sorted(rescored, key=lambda h: -h.score)
    return fuse_minmax([rescored, hits], [1.0, weight], len(hits))


def _load_encoder(config: RerankerConfig, pretrained: bool):
    """(BertModel-like encoder, tokenizer, resolved path); random init when not `pretrained`
    (the weights are about to be loaded from the module's own file)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_encoder_path(config.encoder)
    try:
        hf_config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"re-ranker encoder {config.encoder!r} could not be loaded from {path!r}: {e}") from None
    if config.num_layers is not None:
        if config.num_layers > hf_config.num_hidden_layers:
            raise ValueError(f"num_layers={config.num_layers}: the encoder has only {hf_config.num_hidden_layers}")
        hf_config.num_hidden_layers = config.num_layers  # from_pretrained then skips the dropped layers
    if pretrained:
        import transformers

        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # dropped layers are "unused weights": expected
        try:
            model = AutoModel.from_pretrained(path, config=hf_config, add_pooling_layer=False)
        finally:
            transformers.logging.set_verbosity(level)
    else:
        model = AutoModel.from_config(hf_config, add_pooling_layer=False)
    return model.float(), tokenizer, path


def _text(p: Passage | str, with_title: bool) -> str:
    return p if isinstance(p, str) else passage_text(p, with_title)


class CrossEncoderReranker(SoftModule):
    module_type = "reranker"
    config_class = RerankerConfig
    capabilities = ModuleCapabilities(backbone_free=True)  # its own encoder; the Trainer loads no LM for it

    def __init__(self, config: RerankerConfig, encoder: nn.Module, tokenizer, resolved_path: str = ""):
        super().__init__(config)
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head = nn.Linear(encoder.config.hidden_size, 1)
        self.resolved_path = resolved_path
        self.requires_grad_(True)
        if config.freeze_embeddings:
            encoder.get_input_embeddings().requires_grad_(False)

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, config: RerankerConfig, backbone=None) -> "CrossEncoderReranker":
        """A fresh re-ranker: pretrained encoder, new head. The backbone is not used."""
        encoder, tokenizer, path = _load_encoder(config, pretrained=True)
        module = cls(config, encoder, tokenizer, path)
        gen = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            module.head.bias.zero_()
            if config.pooling == "segments":  # score = init_scale x cos(u, v) to start with
                module.head.weight.fill_(config.init_scale)
            else:  # std 1/sqrt(d), not BERT's 0.02: a near-zero head passes the encoder almost no gradient
                module.head.weight.normal_(0.0, encoder.config.hidden_size ** -0.5, generator=gen)
        return module

    @classmethod
    def from_saved(cls, config: RerankerConfig, meta: dict, backbone=None) -> "CrossEncoderReranker":
        """Architecture and tokenizer from the recorded encoder path; weights from the module."""
        try:
            encoder, tokenizer, path = _load_encoder(config, pretrained=False)
        except FileNotFoundError as e:
            raise ModuleFormatError(f"{e} (needed for the re-ranker's architecture and tokenizer)") from None
        return cls(config, encoder, tokenizer, path)

    def frozen_components(self) -> dict:
        """Not frozen, but what it started from: the encoder's path and shape."""
        c = self.encoder.config
        return {"encoder": {"name_or_path": self.config.encoder, "resolved_path": self.resolved_path,
                            "model_type": c.model_type, "num_layers": c.num_hidden_layers,
                            "hidden_size": c.hidden_size, "vocab_size": c.vocab_size}}

    # The whole encoder is this module's own model: save all of it (buffers too), not just
    # what happens to require grad, so the file alone rebuilds the scorer exactly.
    def state_to_save(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_saved_state(self, tensors: dict[str, Tensor]) -> None:
        expected = self.state_dict()
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"weights do not match reranker: missing {missing[:5]}, unexpected {unexpected[:5]}")
        bad = [k for k, v in tensors.items() if v.shape != expected[k].shape]
        if bad:
            raise ValueError(f"weight {bad[0]!r} has shape {tuple(tensors[bad[0]].shape)}, the re-ranker expects "
                             f"{tuple(expected[bad[0]].shape)}")
        self.load_state_dict(tensors, strict=True)

    # ------------------------------------------------------------------ scoring
    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _forward(self, questions: Sequence[str], texts: Sequence[str]) -> Tensor:
        """[N] scores of N (question, passage text) pairs, with gradients if enabled."""
        enc = self.tokenizer(list(questions), list(texts), truncation=True, max_length=self.config.max_seq_len,
                             padding=True, return_tensors="pt", return_token_type_ids=True).to(self.device)
        with autocast(resolve_precision(self.config.precision, self.device, "precision"), self.device):
            hidden = self.encoder(**enc).last_hidden_state
        hidden = hidden.float()  # pooling and the head in float32: bf16 scores would tie
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.config.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1)
        else:  # the question's tokens have token type 0, the passage's type 1
            second = enc["token_type_ids"].unsqueeze(-1).to(hidden.dtype) * mask
            first = mask - second
            u = (hidden * first).sum(1) / first.sum(1).clamp(min=1)
            v = (hidden * second).sum(1) / second.sum(1).clamp(min=1)
            pooled = nn.functional.normalize(u, dim=-1) * nn.functional.normalize(v, dim=-1)
        return self.head(pooled).squeeze(-1)

    @torch.no_grad()
    def score_pairs(self, questions: Sequence[str], texts: Sequence[str]) -> list[float]:
        """Scores of (question, text) pairs, batched by length (little padding), in input order."""
        was = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(questions[i]) + len(texts[i]))
        out = [0.0] * len(texts)
        b = self.config.score_batch_size
        # thousands of pairs take minutes on a CPU: show progress then (and only then)
        for s in tqdm(range(0, len(order), b), desc="re-rank pairs", unit="batch", leave=False,
                      disable=bar_disabled() or len(order) < PROGRESS_PAIRS):
            idx = order[s:s + b]
            for i, v in zip(idx, self._forward([questions[i] for i in idx], [texts[i] for i in idx]).tolist()):
                out[i] = v
        self.train(was)
        return out

    def score(self, question: str, passages: Sequence[Passage | str]) -> list[float]:
        """One score per passage (higher = more likely to answer the question)."""
        return self.score_pairs([question] * len(passages), [_text(p, self.config.with_title) for p in passages])

    def rerank(self, question: str, hits: Sequence[Hit], passages: Mapping[str, Passage]) -> list[Hit]:
        """The hits re-scored by the cross-encoder, best first."""
        return self.rerank_batch([question], [hits], passages)[0]

    def rerank_batch(self, questions: Sequence[str], hits: Sequence[Sequence[Hit]],
                     passages: Mapping[str, Passage], cache: dict[tuple[str, str], float] | None = None,
                     weight: float | None = None) -> list[list[Hit]]:
        """Re-rank many hit lists in one batched pass (mixing in each hit's retriever score by
        `weight`, else the config's `retriever_weight`, when > 0). `cache` maps (question,
        passage id) to the cross-encoder's score, so lists from several retrievers that share
        candidates, or several weights tried on one list, score each pair once."""
        cache = {} if cache is None else cache
        todo = list(dict.fromkeys((q, h.passage_id) for q, row in zip(questions, hits) for h in row
                                  if (q, h.passage_id) not in cache))
        if todo:
            scores = self.score_pairs([q for q, _ in todo],
                                      [_text(passages[pid], self.config.with_title) for _, pid in todo])
            cache.update(zip(todo, scores))
        w = self.config.retriever_weight if weight is None else weight
        return [interpolate(row, [cache[(q, h.passage_id)] for h in row], w) for q, row in zip(questions, hits)]

    # ----------------------------------------------------------------- training
    def _negatives(self, ex: Example) -> list[str]:
        negs = ex.meta.get("negatives") if ex.meta else None
        if negs is None:
            negs = [c for c in (ex.choices or []) if c != ex.target]
        k = self.config.negatives
        if len(negs) > k:  # a fresh sample each step (the trainer seeds and checkpoints torch's RNG)
            negs = [negs[i] for i in torch.randperm(len(negs))[:k].tolist()]
        return list(negs)

    def loss(self, backbone, examples: Sequence[Example]) -> Tensor:
        """Listwise softmax (InfoNCE) over 1 positive + k negatives per question; `backbone` unused."""
        questions, texts, groups = [], [], []
        for ex in examples:
            cands = [ex.target, *self._negatives(ex)]
            groups.append(len(cands))
            questions += [ex.input] * len(cands)
            texts += cands
        scores = self._forward(questions, texts)
        width = max(groups)
        table = scores.new_full((len(groups), width), float("-inf"))
        start = 0
        for i, n in enumerate(groups):
            table[i, :n] = scores[start:start + n]
            start += n
        return nn.functional.cross_entropy(table, torch.zeros(len(groups), dtype=torch.long, device=scores.device))

    def choice_logprobs(self, backbone, examples: Sequence[Example]) -> list[list[float]]:
        """Scores of each example's choices (the Trainer's dev metric is then precision@1)."""
        questions = [ex.input for ex in examples for _ in ex.choices]
        scores = self.score_pairs(questions, [c for ex in examples for c in ex.choices])
        out, start = [], 0
        for ex in examples:
            out.append(scores[start:start + len(ex.choices)])
            start += len(ex.choices)
        return out

    def generate(self, backbone, inputs, config=None, **overrides):
        raise NotImplementedError("a re-ranker scores passages; it does not generate (use score/rerank)")
