"""`shoulders bench precision`: float32 against bf16 autocast, side by side, on this CPU.

Why: `precision: auto` (the re-ranker's `RerankerConfig.precision`, the toy backbones'
`PretrainConfig.precision`) runs the matmuls in bf16 autocast where the CPU has bf16 units
(AVX512-BF16 or AMX, `shoulders.utils.precision.cpu_has_bf16`) and in float32 elsewhere,
because emulated bf16 is slower. Whether that holds, and by how much, depends on the
machine and on the shapes: this bench measures it on the workloads the switch is used for,
and what bf16 changes in the re-ranker's scores.

Rows, each measured both ways in one run, alternating round by round (`timing.alternate`)
so that a drift of the machine's load hits both alike; the speedup is the median of the
per-round ratios fp32 / bf16 (above 1: bf16 is faster):
- the re-ranker's training step: `CrossEncoderReranker.loss` on `questions` x (1 positive
  + `negatives`) synthetic pairs, backward, AdamW step (one module per precision, built
  alike: the bundled MiniLM cut to 2 layers, the encoder alone under autocast);
- the re-ranker's scoring: `score_pairs` over `score_questions` x (1 + `negatives`) pairs,
  both modules holding the same weights (the float32 one's after its training steps), plus
  the largest |score difference| and the share of questions whose top-1 candidate agrees;
- one pre-training step (`shoulders.toyworld.pretrain.train_step`: document-masked packed
  rows, gradient clipping, AdamW) of each backbone shape asked for (toy-small, toy-large).

CPU only: the question is the CPU's bf16 units (on CUDA, bf16 is simply the default dtype).
Weights, optimizer state and updates stay float32 either way.
"""
from __future__ import annotations

import random
import time

import torch
from pydantic import Field, model_validator

from shoulders.bench.timing import alternate, median, paired_ratio, release
from shoulders.utils.strict_model import StrictModel

VARIANTS = ("fp32", "bf16")
COMPILED = "bf16+compile"  # pre-training rows only
# Common English words, each one word piece in MiniLM's (BERT's uncased) vocabulary, so a
# text of n words is n word pieces.
WORDS = (
    "city river king queen house school water music paper garden market church north south east west "
    "village island bridge castle forest mountain valley lake farm road station harbour tower field "
    "born lived worked wrote built founded married studied moved died won lost taught sold played "
    "father mother brother sister son daughter friend teacher doctor painter author singer player "
    "year month week night morning winter summer spring autumn century war peace story book song film "
    "red blue green black white old new small large long short first last early late young great "
    "stone iron gold silver glass wood bread wine salt horse bird fish tree flower apple"
).split()
WH = ("where", "when", "who", "what", "which")


class PrecisionWorkload(StrictModel):
    """What each row of the precision bench runs."""

    questions: int = Field(8, ge=1, description="questions per re-ranker training step")
    negatives: int = Field(4, ge=1, description="negatives per question (training and scoring)")
    question_words: int = Field(10, ge=2, description="word pieces per synthetic question")
    passage_words: int = Field(35, ge=4, description="word pieces per synthetic passage")
    score_questions: int = Field(100, ge=1, description="questions scored, each with 1 + negatives candidates")
    reranker_layers: int = Field(2, ge=1, description="MiniLM layers the re-ranker keeps")
    max_seq_len: int = Field(64, ge=8, description="the re-ranker's word pieces per pair")
    batch: int = Field(8, ge=1, description="rows per pre-training step")
    seq_len: int = Field(256, ge=8, description="tokens per pre-training row")
    seed: int = Field(0, description="seeds the synthetic texts, the token rows and the initialisations")
    compile: bool = Field(True, description="pre-training rows also time the bf16 step through torch.compile "
                          "(what `PretrainConfig.compile` turns on), where a C++ compiler is found")

    @model_validator(mode="after")
    def _texts_fit(self):
        # a question's content words are distinct words of WORDS, and the positive holds all of them
        if self.question_words - 2 > len(WORDS):
            raise ValueError(f"question_words={self.question_words}: at most {len(WORDS) + 2} (a wh-word, "
                             f"{len(WORDS)} distinct content words, '?')")
        if self.passage_words < self.question_words - 1:
            raise ValueError(f"passage_words={self.passage_words}: at least question_words - 1 = "
                             f"{self.question_words - 1}, so the positive holds every content word and its '.'")
        return self


def synthetic_examples(n: int, w: PrecisionWorkload, seed: int):
    """`n` re-ranker Examples: a question of `question_words` words (a wh-word, content
    words, "?"), a positive passage of `passage_words` holding all of the question's content
    words among random ones, and `negatives` passages of as many words holding two of them
    (hard negatives share some words too). The untrained MiniLM re-ranker ranks the positive
    first for most questions, so scores are spread as on real data, not near-ties."""
    from shoulders.data.examples import Example

    rng = random.Random(seed)
    out = []
    for i in range(n):
        content = rng.sample(WORDS, w.question_words - 2)
        question = " ".join([rng.choice(WH), *content]) + " ?"

        def passage(shared: int) -> str:
            words = rng.sample(content, min(shared, len(content)))
            words += [rng.choice(WORDS) for _ in range(w.passage_words - len(words) - 1)]
            rng.shuffle(words)
            return " ".join(words) + " ."

        positive = passage(len(content))
        negs = [passage(2) for _ in range(w.negatives)]
        out.append(Example(input=question, target=positive, task="bench", id=f"q{i}", meta={"negatives": negs}))
    return out


def build_rerankers(w: PrecisionWorkload) -> dict:
    """One re-ranker per precision, alike but for `precision`."""
    from shoulders.reader.reranker import CrossEncoderReranker, RerankerConfig

    modules = {}
    for p in VARIANTS:
        cfg = RerankerConfig(num_layers=w.reranker_layers, max_seq_len=w.max_seq_len, negatives=w.negatives,
                             precision=p, seed=w.seed)
        torch.manual_seed(w.seed)
        modules[p] = CrossEncoderReranker.build(cfg).train()
    return modules


def reranker_rows(w: PrecisionWorkload, repeats: int, warmup: int, clock: str, progress=print) -> list[dict]:
    """The training-step row, then the scoring row (same modules, weights made equal)."""
    from shoulders.train.loop import step

    device = torch.device("cpu")
    modules = build_rerankers(w)
    train = synthetic_examples(w.questions, w, w.seed)
    opts = {p: torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=3e-4)
            for p, m in modules.items()}
    losses: dict[str, list[float]] = {p: [] for p in VARIANTS}

    def train_step(p):
        return lambda: losses[p].append(step(modules[p].loss(None, train), opts[p]))

    progress(f"bench precision: re-ranker training step ({w.questions} x {1 + w.negatives} pairs)")
    times = alternate({p: train_step(p) for p in VARIANTS}, device, repeats, warmup, clock)
    enc = modules["fp32"].encoder.config
    tok = modules["fp32"].tokenizer
    pair_len = [len(tok(ex.input, t)["input_ids"]) for ex in train for t in (ex.target, *ex.meta["negatives"])]
    rows = [_row("reranker_train", f"re-ranker training step ({w.questions} questions x {1 + w.negatives} "
                 f"passages, MiniLM {enc.num_hidden_layers} layers)", times,
                 params=sum(q.numel() for q in modules["fp32"].parameters()), pairs=len(pair_len),
                 mean_pair_tokens=sum(pair_len) / len(pair_len), first_loss={p: v[0] for p, v in losses.items()},
                 last_loss={p: v[-1] for p, v in losses.items()})]

    # scoring compares the two precisions at the same weights: the trained float32 ones
    modules["bf16"].load_state_dict(modules["fp32"].state_dict())
    scored = synthetic_examples(w.score_questions, w, w.seed + 1)
    questions = [ex.input for ex in scored for _ in range(1 + w.negatives)]
    texts = [t for ex in scored for t in (ex.target, *ex.meta["negatives"])]
    scores: dict[str, list[float]] = {}

    def score(p):
        def run():
            scores[p] = modules[p].score_pairs(questions, texts)
        return run

    progress(f"bench precision: re-ranker scoring ({len(texts)} pairs)")
    times = alternate({p: score(p) for p in VARIANTS}, device, repeats, warmup, clock)
    k = 1 + w.negatives
    a, b = (torch.tensor(scores[p]).view(-1, k) for p in VARIANTS)
    rows.append(_row("reranker_score", f"re-ranker scoring ({len(texts)} pairs, {w.score_questions} questions x "
                     f"{k} candidates)", times, pairs=len(texts),
                     max_abs_score_diff=(a - b).abs().max().item(), max_abs_score=a.abs().max().item(),
                     top1_agreement=(a.argmax(1) == b.argmax(1)).float().mean().item(),
                     positive_first={"fp32": (a.argmax(1) == 0).float().mean().item(),
                                     "bf16": (b.argmax(1) == 0).float().mean().item()}))
    del modules, opts
    release(device)
    return rows


class _Vocab:
    """What `ModelConfig.build` and `copy_rows` read of a tokenizer: a size and special ids."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def pretrain_shape(name: str):
    """(ModelConfig, vocabulary size) of a backbone name: the toyworld presets (toy-small,
    toy-large), or a Llama-family name of `shoulders.bench.backbones.SPECS` (e.g. `tiny`, for
    tests) built as a toy backbone of its width, depth, heads and MLP width."""
    from shoulders.bench.backbones import SPECS, TOY_VOCAB
    from shoulders.errors import ShouldersError
    from shoulders.toyworld.pretrain import TOY_LARGE, TOY_SMALL, ModelConfig

    presets = {m.name: m for m in (TOY_SMALL, TOY_LARGE)}
    if name in presets:
        return presets[name], TOY_VOCAB
    spec = SPECS.get(name)
    if spec is None or spec.family != "llama":
        llamas = ", ".join(n for n, s in SPECS.items() if s.family == "llama")
        raise ShouldersError(f"precision bench: {name!r} is not a toy backbone or a Llama-family name of "
                             f"shoulders.bench.backbones.SPECS ({llamas})")
    return ModelConfig(name=name, hidden_size=spec.hidden, num_layers=spec.layers, num_heads=spec.heads,
                       intermediate_size=spec.intermediate), spec.vocab


def pretrain_rows(models: list, vocab: int, batch: int = 8, seq_len: int = 256, repeats: int = 3, warmup: int = 1,
                  clock: str = "wall", seed: int = 0, progress=print, compile: bool = False) -> list[dict]:
    """One row per `ModelConfig`: a pre-training step (`toyworld.pretrain.train_step` on
    packed, document-masked rows of `copy_rows`) in fp32 and in bf16 autocast, one model
    per precision from the same initialisation, on the same batch; with `compile` (and a
    C++ compiler), also the bf16 step through `torch.compile` (compiled by the gradient comparison, before
    any timed round)."""
    from shoulders.toyworld.pretrain import copy_rows, resolve_compile, step_loss, train_step

    device, tok = torch.device("cpu"), _Vocab(vocab)
    data = copy_rows(tok, batch, seq_len, torch.Generator().manual_seed(seed))
    variants = (*VARIANTS, COMPILED) if compile and resolve_compile("auto") else VARIANTS
    rows = []
    for cfg in models:
        cfg = cfg.model_copy(update={"max_positions": max(cfg.max_positions, seq_len)})
        built, opts, losses = {}, {}, {p: [] for p in variants}
        for p in variants:
            torch.manual_seed(seed)
            built[p] = cfg.build(tok).train()
            opts[p] = torch.optim.AdamW(built[p].parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        steppers = {p: torch.compile(m, dynamic=False) if p == COMPILED else m for p, m in built.items()}
        # What bf16 (and compiling) does to the numbers: one step's gradient at the same
        # initial weights and batch, against float32's, before any update.
        grads = {}
        for p, m in steppers.items():
            step_loss(m, data, tok, doc_mask=True, bf16=p != "fp32")[0].backward()
            grads[p] = torch.cat([q.grad.flatten() for q in built[p].parameters()])
            opts[p].zero_grad(set_to_none=True)
        ref = grads["fp32"]
        grad_diff = {p: ((g - ref).norm() / ref.norm()).item() for p, g in grads.items() if p != "fp32"}

        def one(p):
            return lambda: losses[p].append(train_step(steppers[p], opts[p], data, tok, doc_mask=True,
                                                       bf16=p != "fp32", grad_clip=1.0)[0])

        progress(f"bench precision: pre-training step of {cfg.name} ({batch} x {seq_len} tokens)")
        times = alternate({p: one(p) for p in variants}, device, repeats, warmup, clock)
        rows.append(_row(f"pretrain:{cfg.name}", f"pre-training step, {cfg.name} (hidden {cfg.hidden_size}, "
                         f"{cfg.num_layers} layers, MLP {cfg.intermediate_size}; {batch} x {seq_len} tokens)", times,
                         backbone=cfg.name, hidden=cfg.hidden_size, layers=cfg.num_layers,
                         intermediate=cfg.intermediate_size, vocab=vocab,
                         params=sum(q.numel() for q in built["fp32"].parameters()),
                         first_loss={p: v[0] for p, v in losses.items()},
                         last_loss={p: v[-1] for p, v in losses.items()}, grad_rel_diff_vs_fp32=grad_diff))
        del built, opts
        release(device)
    return rows


def _row(key: str, what: str, times: dict[str, list[float]], **extra) -> dict:
    row = {"key": key, "what": what, "step_s": {p: median(t) for p, t in times.items()}, "times": times,
           "speedup": paired_ratio(times["fp32"], times["bf16"]), **extra}
    if COMPILED in times:  # what compiling adds on top of bf16
        row["compile_speedup"] = paired_ratio(times["bf16"], times[COMPILED])
    return row


def run_precision_bench(sizes: list[str], w: PrecisionWorkload, repeats: int, warmup: int, clock: str = "wall",
                        progress=print) -> dict:
    """The re-ranker's rows, then one pre-training row per name of `sizes`."""
    from shoulders.bench.report import _cpu_model
    from shoulders.utils.precision import cpu_has_bf16

    shapes = [pretrain_shape(s) for s in sizes]  # every name checked before anything runs
    t0 = time.perf_counter()
    rows = reranker_rows(w, repeats, warmup, clock, progress)
    for cfg, vocab in shapes:
        rows += pretrain_rows([cfg], vocab, w.batch, w.seq_len, repeats, warmup, clock, w.seed, progress, w.compile)
    from shoulders.toyworld.pretrain import resolve_compile

    # the compiled rows run only where a compiler is found: record what ran, not what was asked
    workload = {**w.model_dump(), "compile": w.compile and resolve_compile("auto")}
    return {"workload": workload, "sizes": sizes, "repeats": repeats, "warmup": warmup, "clock": clock,
            "cpu": _cpu_model(), "cpu_has_bf16": cpu_has_bf16(), "rows": rows,
            "measure_s": round(time.perf_counter() - t0, 1)}


def precision_markdown(result: dict, header_lines: list[str]) -> str:
    from shoulders.bench.report import fmt_ratio, table

    w = result["workload"]
    units = "**yes**" if result["cpu_has_bf16"] else "**no** (bf16 is emulated: `precision: auto` keeps float32 here)"
    out = header_lines + [
        f"bf16 units (AVX512-BF16 or AMX) on this CPU ({result['cpu']}): {units}.", "",
        "Float32 against bf16 autocast (`torch.autocast(\"cpu\", dtype=torch.bfloat16)`, what `precision: bf16` "
        "turns on; weights, optimizer state and updates stay float32), each row measured both ways in one run, "
        f"alternating: median of {result['repeats']} rounds after {result['warmup']} warm-up round(s), each "
        "variant once per round in rotating order; the speedup is the median of the per-round ratios fp32 / bf16 "
        "(above 1: bf16 is faster). Re-ranker: `CrossEncoderReranker` (the bundled MiniLM cut to "
        f"{w['reranker_layers']} layers, max {w['max_seq_len']} word pieces, only the encoder under autocast), "
        f"synthetic questions of {w['question_words']} and passages of {w['passage_words']} word pieces; a "
        f"training step = `loss` on {w['questions']} questions x (1 positive + {w['negatives']} negatives) + "
        "backward + AdamW step; scoring = `score_pairs` with both modules holding the same weights, compared on "
        f"each question's {1 + w['negatives']} candidates. Pre-training: `toyworld.pretrain.train_step` "
        f"(document-masked packed rows, gradient clipping, AdamW) of a Llama of the toy backbone's shape, batch "
        f"{w['batch']} x {w['seq_len']} tokens.", ""]
    rows = []
    for r in result["rows"]:
        diff = f"{r['max_abs_score_diff']:.2g} (of {r['max_abs_score']:.3g})" if "max_abs_score_diff" in r else "-"
        agree = f"{r['top1_agreement']:.0%}" if "top1_agreement" in r else "-"
        compiled = (f"{r['step_s'][COMPILED]:.3f} ({fmt_ratio(r['compile_speedup'])})"
                    if "compile_speedup" in r else "-")
        rows.append([r["what"], f"{r['step_s']['fp32']:.3f}", f"{r['step_s']['bf16']:.3f}", fmt_ratio(r["speedup"]),
                     compiled, diff, agree])
    out += table(["what", "fp32 median s", "bf16 median s", "speedup", "bf16 + torch.compile median s (over bf16)",
                  "max \\|score diff\\| (max \\|score\\|)", "top-1 agrees"], rows)
    if any("compile_speedup" in r for r in result["rows"]):
        out += ["", "bf16 + torch.compile: the same bf16 step with the model run through `torch.compile` (inductor's "
                "C++ kernels for the CPU; compiled before the timed rounds), what `PretrainConfig.compile` turns on; "
                "its ratio is the median of the per-round ratios bf16 / compiled."]
    grads = [r for r in result["rows"] if "grad_rel_diff_vs_fp32" in r]
    if grads:
        out += ["", "Pre-training numerics: one step's gradient at the same initial weights and batch, against float32's "
                "(relative difference, |g - g_fp32| / |g_fp32|): " + "; ".join(
                    f"{r['backbone']} " + ", ".join(f"{p} {d:.2%}" for p, d in r["grad_rel_diff_vs_fp32"].items())
                    for r in grads) + "."]
    scoring = [r for r in result["rows"] if r["key"] == "reranker_score"]
    if scoring:
        r = scoring[0]
        out += ["", f"Scoring: the positive (which holds all of the question's content words) came first for "
                f"{r['positive_first']['fp32']:.0%} of the questions in fp32 and {r['positive_first']['bf16']:.0%} "
                f"in bf16; top-1 agrees = the share of the {r['pairs'] // (1 + w['negatives'])} questions whose "
                "best-scored candidate is the same both ways."]
    return "\n".join(out) + "\n"
