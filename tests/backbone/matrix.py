"""The architecture matrix: every causal-LM family, tiny and random, against its own HF model.

`check(family, tok, tmp)` loads a tiny model of the family (tests/backbone/families.py)
as a FrozenLM and compares, in float32 on the CPU (`device`, `dtype` and `checks` move it
elsewhere: tests/gpu_checks.py runs it on CUDA, in float32 and bf16):

- logits: with no prompt, equal to `model(input_ids)`; with a soft prompt (families that
  take `inputs_embeds` alone), equal to `model(inputs_embeds=[prompt ; embed(ids)])`
  (1e-4); the training loss equal to HF's with labels; gradients reach the prompt;
- greedy: `lm.generate` equal to a plain HF greedy loop that recomputes the whole
  sequence each step (with and without a prompt);
- batched: four rows (two of one length) decoded together equal each alone, with EOS
  set to a token one row reaches early so that it finishes before the others; n=2;
- serving: staggered requests for two prompt-tuning modules and the bare backbone
  through the serving engine (in-process) equal each request alone;
- save/load: a prompt-tuning module saved and loaded gives the same loss.

A family refused at load (a one-line `ShouldersError` naming it) is a result too.
`python -m tests.backbone.matrix [FAMILY ...]` prints the table; with `--write PAGE`
it replaces the table between the markers of docs/families.md.
"""
from __future__ import annotations

import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tests.backbone.families import NOT_BUILT, n_params, tiny_model

ATOL = 1e-4
MARK_START, MARK_END = "<!-- matrix:start -->", "<!-- matrix:end -->"


@dataclass
class Result:
    family: str
    result: str  # "pass" | "refused" (at load, one line naming it) | "fail" | "not built" | "no tiny config"
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    params: int = 0
    seconds: float = 0.0


class Mismatch(AssertionError):
    pass


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise Mismatch(what)


def _close(a, b, what: str, atol: float = ATOL, rtol: float = 0.0) -> None:
    """Within atol + rtol * max|b| (float32 checks: 1e-4 absolute)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    _expect(a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}")
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    bound = atol + rtol * (float(b.abs().max()) if b.numel() else 0.0)
    _expect(diff <= bound, f"{what}: off by {diff:.2g} (bound {bound:.2g})")


@torch.no_grad()
def hf_logits(model, embed, seq: list[int], prompt):
    """The model's own next-token logits [V] after [prompt ; seq], no cache."""
    x = torch.tensor([seq], device=model.device)
    if prompt is None:
        return model(input_ids=x, use_cache=False).logits[0, -1]
    return model(inputs_embeds=torch.cat([prompt, embed(x)[0]])[None], use_cache=False).logits[0, -1]


@torch.no_grad()
def hf_greedy(model, embed, ids: list[int], prompt, steps: int, eos: int | None) -> list[int]:
    """A plain HF greedy loop: the whole sequence every step, no cache."""
    seq, out = list(ids), []
    for _ in range(steps):
        tok = int(hf_logits(model, embed, seq, prompt).argmax())
        if tok == eos:
            break
        out.append(tok)
        seq.append(tok)
    return out


def _rows(lm):
    torch.manual_seed(1)
    d = lm.hidden_size
    texts = ["the cat is happy", "a dog was born", "red blue green", "what is the river of rome and paris"]
    ids = [lm.encode([t], add_special_tokens=False)[0] for t in texts]
    ids[1] = ids[1][: len(ids[0])]  # rows 0 and 1: the same length (one group where padding is not exact)
    while len(ids[1]) < len(ids[0]):
        ids[1].append(ids[1][-1])
    scale = float(lm.input_embeddings.weight.float().std())
    prompts = [torch.randn(3, d) * scale, torch.randn(3, d) * scale, None, torch.randn(5, d) * scale]
    return [p if p is None else p.to(lm.device, lm.dtype) for p in prompts], ids


def _set_eos(lm, token: int) -> None:
    tok = lm.tokenizer
    tok.eos_token = tok.convert_ids_to_tokens(token)
    assert lm.eos_token_id == token


def _early_eos(alone: list[list[int]]) -> int | None:
    """A token that one row produces at step k >= 1 (not before) and another row does not
    produce in its first k + 3 steps: as EOS it ends the first row early."""
    for k in range(1, 6):
        for r, seq in enumerate(alone):
            if len(seq) <= k or seq[k] in seq[:k]:
                continue
            t = seq[k]
            if any(len(o) > k + 2 and t not in o[: k + 3] for i, o in enumerate(alone) if i != r):
                return t
    return None


@torch.no_grad()
def _nll(logits, start: int, target: list[int]) -> float:
    """Summed NLL of `target` placed at `start` (each token predicted by the position before:
    HF's labels loss, computed from the model's own logits because some families' labels
    path does not shift)."""
    lp = torch.log_softmax(logits[start - 1: start - 1 + len(target)].float(), -1)
    return -float(lp.gather(-1, torch.tensor(target, device=lp.device)[:, None]).sum())


def check_logits(lm, model, atol: float = ATOL, rtol: float = 0.0) -> None:
    prompts, ids = _rows(lm)
    dev = model.device
    tgt = [lm.encode([" yes"], add_special_tokens=False)[0] + [5], [7, 8], [9], [10, 11, 12]]
    embed = lm.embed
    # no prompt: logits and loss equal model(input_ids)
    layout = lm.layout(None, ids[3:4])
    ours = lm.model_logits(lambda h: h[0], **lm.model_inputs(layout))[0]
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(ids[3:4], device=dev), use_cache=False).logits[0]
    _close(ours, theirs, "logits without a prompt vs model(input_ids)", atol, rtol)
    out = lm(None, ids, tgt)
    count = sum(len(b) for b in tgt)
    total = sum(_nll(model(input_ids=torch.tensor([a + b], device=dev), use_cache=False).logits[0], len(a), b)
                for a, b in zip(ids, tgt))
    _close(out.loss, torch.tensor(total / count), "loss without a prompt vs HF's logits", atol, rtol)
    # a soft prompt: gradients reach it; where inputs_embeds is the whole input, logits and loss equal HF's
    prompt = prompts[0].clone().requires_grad_(True)
    loss = lm(prompt, ids, tgt).loss
    loss.backward()
    _expect(prompt.grad is not None and bool(torch.isfinite(prompt.grad).all()) and bool(prompt.grad.any()),
            "no finite, non-zero gradient reaches the soft prompt")
    _expect(lm.base is not lm.model and lm.run(lm.layout(prompts[0], ids[:1])).shape[-1] == lm.hidden_size,
            "the body (lm.base) or its hidden states")
    if lm.family.needs_ids:
        return
    p = prompts[0]
    layout = lm.layout(p, ids[3:4])
    ours = lm.model_logits(lambda h: h[0], **lm.model_inputs(layout))[0]
    with torch.no_grad():
        theirs = model(inputs_embeds=layout.inputs_embeds, use_cache=False).logits[0]
    _close(ours, theirs, "logits with a prompt vs model(inputs_embeds)", atol, rtol)
    total = sum(_nll(model(inputs_embeds=torch.cat([p, embed(torch.tensor(a + b))])[None], use_cache=False).logits[0],
                     3 + len(a), b) for a, b in zip(ids, tgt))
    _close(lm(p, ids, tgt).loss, torch.tensor(total / count), "loss with a prompt vs HF's logits", atol, rtol)


def check_generation(lm, model, steps: int = 8) -> int | None:
    """Greedy vs HF, batched vs alone with an early finisher; returns the EOS used."""
    prompts, ids = _rows(lm)
    eos = lm.eos_token_id
    got = lm.generate(None, ids[2:3], max_new_tokens=steps)[0][0].token_ids
    _expect(got == hf_greedy(model, lm.embed, ids[2], None, steps, eos), "greedy (no prompt) vs a plain HF loop")
    if not lm.family.needs_ids:
        got = lm.generate(prompts[0], ids[:1], max_new_tokens=steps)[0][0].token_ids
        _expect(got == hf_greedy(model, lm.embed, ids[0], prompts[0], steps, eos),
                "greedy with a prompt vs a plain HF loop")
    alone = [lm.generate([p], [i], max_new_tokens=steps)[0][0].token_ids for p, i in zip(prompts, ids)]
    early = _early_eos(alone)
    _expect(early is not None, f"no token makes one row finish early (alone: {alone})")
    _set_eos(lm, early)
    alone = [lm.generate([p], [i], max_new_tokens=steps)[0][0].token_ids for p, i in zip(prompts, ids)]
    together = [g[0].token_ids for g in lm.generate(prompts, ids, max_new_tokens=steps)]
    _expect(together == alone, f"batched {together} != alone {alone} (eos {early})")
    pairs = lm.generate(prompts[:2], ids[:2], max_new_tokens=steps, n=2)
    _expect([[g.token_ids for g in gens] for gens in pairs] == [[a, a] for a in alone[:2]], "n=2 samples != alone")
    return early


def check_serving(lm, tmp: Path) -> None:
    from shoulders.prompts import PromptTuning, PromptTuningConfig
    from tests.serving_inprocess import serve_staggered

    mods = [PromptTuning.build(PromptTuningConfig(num_virtual_tokens=k, init="random", seed=k), lm) for k in (2, 5)]
    prompts = ["the cat", "a dog was born in paris and", "red", "what is the river of rome"]
    rng = random.Random(0)
    reqs = [(mods[i % 2], prompts[i % 4], (3, 6, 9)[i % 3], rng.random() * 0.01) for i in range(6)]
    for (event, ref), (_, prompt, _, _) in zip(serve_staggered(lm, reqs, max_batch=4, max_queue=16), reqs):
        _expect(event[0] == "done", f"serving: {event}")
        got = event[1][0]
        _expect(got.token_ids == ref.token_ids, f"served {got.token_ids} != alone {ref.token_ids} ({prompt!r})")


def check_save_load(lm, tmp: Path) -> None:
    from shoulders.data.examples import Example
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=4, init="random", seed=3), lm)
    examples = [Example(input="the cat is", target=" happy"), Example(input="red", target=" blue green")]
    with torch.no_grad():
        before = float(module.loss(lm, examples))
    module.save_pretrained(tmp / "pt", lm)
    loaded = PromptTuning.from_pretrained(tmp / "pt", lm)
    with torch.no_grad():
        after = float(loaded.loss(lm, examples))
    _expect(before == after, f"loss after save/load {after} != {before}")


def strict_checks(lm, model, tmp: Path) -> None:
    """The float32 checks, in order: logits, save/load, generation, serving."""
    check_logits(lm, model)
    check_save_load(lm, tmp)
    check_generation(lm, model)
    check_serving(lm, tmp)


def check(family: str, tok, tmp: Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
          checks=strict_checks) -> Result:
    """`checks(lm, model, tmp)` on one family's tiny model on `device` in `dtype`; the first
    mismatch (or error) is the reason."""
    from shoulders.backbone import FrozenLM
    from shoulders.errors import ShouldersError

    start = time.time()
    if family in NOT_BUILT:
        return Result(family, "not built", NOT_BUILT[family])
    torch.manual_seed(0)
    try:
        model = tiny_model(family, tok)
    except Exception as e:  # noqa: BLE001 - a config this file cannot shrink yet
        return Result(family, "no tiny config", _line(e), seconds=time.time() - start)
    size = n_params(model)
    model.to(device, dtype)
    try:
        lm = FrozenLM(model, _fresh(tok), family)
    except ShouldersError as e:
        msg = str(e)
        ok = "\n" not in msg and family in msg
        return Result(family, "refused" if ok else "fail", msg if ok else f"refusal not one line naming it: {msg}",
                      params=size, seconds=time.time() - start)
    notes = lm.family.notes()
    try:
        checks(lm, model, tmp)
    except Exception as e:  # noqa: BLE001 - the table records it
        return Result(family, "fail", _line(e), notes, size, time.time() - start)
    return Result(family, "pass", "", notes, size, time.time() - start)


def _timed(family: str, tok, tmp: Path, limit: int, **kw) -> Result:
    """`check` with a time limit (a family whose tiny config is still too big)."""
    import signal

    def stop(*_):
        raise TimeoutError(f"over {limit} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(limit)
    try:
        return check(family, tok, tmp, **kw)
    except TimeoutError as e:
        return Result(family, "fail", str(e), seconds=limit)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _fresh(tok):
    import copy

    return copy.deepcopy(tok)


def _line(e: Exception) -> str:
    return f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:160]


def all_families() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def table(results: list[Result]) -> str:
    rows = ["| family | result | how it runs / reason |", "|---|---|---|"]
    for r in results:
        why = r.reason or ", ".join(r.notes) or "plain path"
        rows.append(f"| {r.family} | {r.result} | {why.replace('|', '/')} |")
    counts = {k: sum(r.result == k for r in results) for k in ("pass", "refused", "not built", "fail", "no tiny config")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    import transformers

    return (f"{len(results)} families of transformers {transformers.__version__}: {summary}.\n\n"
            + "\n".join(rows) + "\n")


def write_table(page: Path, text: str) -> None:
    doc = page.read_text()
    pattern = re.compile(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{page}: no {MARK_START} ... {MARK_END} markers to put the table between")
    page.write_text(pattern.sub(lambda _: f"{MARK_START}\n{text}{MARK_END}", doc))


def main(argv: list[str]) -> int:
    import tempfile
    import warnings

    import transformers

    from tests.helpers import train_tokenizer

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    write = None
    if "--write" in argv:
        i = argv.index("--write")
        write, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    families = argv or all_families()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tok = train_tokenizer(Path(tmp) / "tok")
        for fam in families:
            (Path(tmp) / fam).mkdir()
            r = _timed(fam, tok, Path(tmp) / fam, limit=120)
            results.append(r)
            print(f"{fam:28s} {r.result:8s} {r.seconds:5.1f}s {r.reason or ', '.join(r.notes)}", flush=True)
    text = table(results)
    print(text.splitlines()[0])
    if write is not None:
        write_table(write, text)
    return 0 if all(r.result in ("pass", "refused", "not built") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
