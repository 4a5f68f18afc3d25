"""The checks of issue #23 that need a GPU, in one short script: `python -m tests.gpu_checks --out DIR`.

- matrix/float32/FAMILY: the architecture matrix's CI families (tests/backbone/test_matrix.py)
  on CUDA in float32 with every check the CPU runs and its tolerance (logits and loss within
  1e-4 of the model's own, greedy equal to a plain HF loop, batched equal to alone with an
  early finisher, n=2, serving, save/load). TF32 is off, so float32 means float32.
- matrix/bfloat16/FAMILY: the same tiny models in bf16: logits and loss within BF16_ATOL +
  BF16_RTOL * max|logit| of the model's own bf16 forward, gradients reach the prompt, and
  greedy (alone, with and without a prompt, and four rows batched) equal to the reference
  except where the two part at a near tie (the reference's logits for the two tokens within
  the same tolerance: bf16 rounding may pick either; the steps are recorded as notes).
- fsdp/DTYPE: the tiny FSDP prompt-tuning run (tests/train/test_fsdp.py's config) as one
  process under torchrun (FSDP2 over NCCL on CUDA, gloo on the CPU: the backbone sharded
  over one process) against the same config run without a launcher (whole backbone):
  losses within FSDP_TOL[dtype] at every step, the same dev scores, final prompts within
  the same tolerance, and the history recording one process holding every parameter.

Each check is pass / fail (a mismatch) / error (an exception), with its message and
seconds; DIR/gpu_checks.json is rewritten after every check (a run cut short keeps what
finished). Exit status 1 if any check did not pass. `--device cpu` runs the same checks
on the CPU (how this script is tested without a GPU: tests/test_gpu_checks.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from tests.backbone.matrix import Mismatch, _close, _expect, _rows, _timed, check_logits, hf_logits
from tests.backbone.test_matrix import CI_FAMILIES

BF16_ATOL, BF16_RTOL = 0.02, 0.02  # bf16 keeps 8 bits of mantissa: a logit near 2 moves in steps of 1/64
FSDP_TOL = {"float32": 1e-5, "bfloat16": 1e-2}
FSDP_TRAIN = "steps: 6, batch_size: 8, eval_every: 3, eval_max_examples: 4, max_new_tokens: 4, log_every: 1"
FAMILY_LIMIT_S = 120


# ------------------------------------------------------------------ bf16 matrix checks
def _parted(got: list[int], ref: list[int], next_logits, eos: int | None, what: str) -> str | None:
    """None when `got` equals `ref`; a note when they part at a near tie (the reference's
    logits after ref[:k] for the two tokens within the bf16 tolerance); else a Mismatch."""
    if got == ref:
        return None
    k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    a = got[k] if k < len(got) else eos
    b = ref[k] if k < len(ref) else eos
    _expect(a is not None and b is not None, f"{what}: {got} != {ref} (lengths differ, no EOS)")
    logits = next_logits(ref[:k]).float()
    gap = float(logits[b] - logits[a])
    _expect(abs(gap) <= BF16_ATOL + BF16_RTOL * float(logits.abs().max()),
            f"{what}: {got} != {ref}: parts at step {k} where the reference prefers {b} over {a} by {gap:.3g}")
    return f"{what}: near tie at step {k} ({gap:.2g})"


def bf16_checks(lm, model, tmp: Path, steps: int = 8) -> list[str]:
    """Logits and loss within the bf16 tolerance; decoding equal up to near ties. Returns notes."""
    check_logits(lm, model, atol=BF16_ATOL, rtol=BF16_RTOL)
    prompts, ids = _rows(lm)
    eos, notes = lm.eos_token_id, []

    def reference(prompt, row):
        """HF's own logits where it takes the prompt as inputs_embeds, else the backbone's
        whole-sequence forward (what check_logits just compared with HF's)."""
        if prompt is None or not lm.family.needs_ids:
            return lambda seq: hf_logits(model, lm.embed, row + seq, prompt)
        return lambda seq: lm.last_logits(lm.layout(prompt, [row + seq]))[0]

    def greedy(prompt, row):
        out: list[int] = []
        for _ in range(steps):
            tok = int(reference(prompt, row)(out).argmax())
            if tok == eos:
                break
            out.append(tok)
        return out

    cases = [(None, ids[2], "greedy without a prompt")]
    if not lm.family.needs_ids:
        cases.append((prompts[0], ids[0], "greedy with a prompt"))
    for prompt, row, what in cases:
        got = lm.generate(prompt if prompt is None else [prompt], [row], max_new_tokens=steps)[0][0].token_ids
        notes.append(_parted(got, greedy(prompt, row), reference(prompt, row), eos, what))
    alone = [lm.generate([p], [i], max_new_tokens=steps)[0][0].token_ids for p, i in zip(prompts, ids)]
    together = [g[0].token_ids for g in lm.generate(prompts, ids, max_new_tokens=steps)]
    for r, (got, ref) in enumerate(zip(together, alone)):
        notes.append(_parted(got, ref, reference(prompts[r], ids[r]), eos, f"batched row {r} vs alone"))
    return [n for n in notes if n]


# ------------------------------------------------------------------------- FSDP check
def _train(cmd: list[str], cfg: Path, device: str, dtype: str, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd + ["-m", "shoulders", "train", str(cfg), "--no-progress",
                                 "--set", f"backbone.device={device}", "--set", f"backbone.dtype={dtype}",
                                 "--set", f"output_dir={out}"],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-4:])} train exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return json.loads((out / "history.json").read_text())


def check_fsdp(device: str, dtype: str, tmp: Path, port: int) -> list[str]:
    """One process under torchrun (the FSDP path) against no launcher (the whole backbone)."""
    from shoulders.backbone import FrozenLM
    from shoulders.modules import load_module
    from tests.helpers import build_tiny_backbone
    from tests.tasks_fixture import write_keyword_config

    llama = build_tiny_backbone(tmp / "llama", "llama", hidden=64, layers=2)
    cfg = write_keyword_config(tmp, llama, "run", init="vocab", fsdp=True, train=FSDP_TRAIN)
    one = _train([sys.executable], cfg, device, dtype, tmp / "single")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", str(port)]
    fsdp = _train(torchrun, cfg, device, dtype, tmp / "fsdp")
    tol = FSDP_TOL[dtype]
    shards = fsdp.get("fsdp")
    _expect(shards is not None and shards["processes"] == 1, f"the torchrun run did not shard: {shards}")
    _expect(shards["local_parameters"] == [shards["backbone_parameters"]], f"one process holds all: {shards}")
    _expect("fsdp" not in one, "the run without a launcher sharded")
    losses = [[e["loss"] for e in h["train"]] for h in (one, fsdp)]
    _expect(len(losses[1]) == 6, f"{len(losses[1])} steps logged, not 6")
    _close(torch.tensor(losses[1]), torch.tensor(losses[0]), "FSDP loss curve vs no FSDP", atol=tol)
    evals = [[e["average"] for e in h["eval"]] for h in (one, fsdp)]
    _expect(evals[0] == evals[1], f"dev scores {evals[1]} != {evals[0]}")
    lm = FrozenLM.from_pretrained(llama, dtype=dtype, device="cpu")
    a, b = (load_module(tmp / run / "final", lm).prompt for run in ("single", "fsdp"))
    _close(b, a, "FSDP final prompt vs no FSDP", atol=tol)
    diff = max(abs(x - y) for x, y in zip(*losses))
    return [f"loss curves differ by at most {diff:.2g}; {shards['backbone_parameters']} parameters on one process"]


# ---------------------------------------------------------------------------- running
class Report:
    """The results so far, written to DIR/gpu_checks.json after each check."""

    def __init__(self, out: Path, device: str):
        import accelerate
        import transformers

        self.path = out / "gpu_checks.json"
        self.data = {
            "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "device_type": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "python": platform.python_version(), "host": platform.node(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": 0.0, "checks": [],
        }
        self.start = time.time()

    def add(self, name: str, result: str, message: str = "", seconds: float = 0.0, notes=()) -> None:
        self.data["checks"].append({"name": name, "result": result, "message": message,
                                    "seconds": round(seconds, 2), "notes": list(notes)})
        self.data["seconds"] = round(time.time() - self.start, 1)
        self.data["summary"] = {k: sum(c["result"] == k for c in self.data["checks"]) for k in ("pass", "fail", "error")}
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")
        print(f"{name:34s} {result:5s} {seconds:6.1f}s {message}", flush=True)

    def ok(self) -> bool:
        return all(c["result"] == "pass" for c in self.data["checks"])


def run_matrix(report: Report, families: list[str], device: str, dtypes: list[str], tmp: Path) -> None:
    from tests.helpers import train_tokenizer

    tok = train_tokenizer(tmp / "tok")
    for dtype in dtypes:
        for family in families:
            notes: list[str] = []

            def bf16(lm, model, where):
                notes.extend(bf16_checks(lm, model, where))

            where = tmp / f"{family}-{dtype}"
            where.mkdir()
            kw = {} if dtype == "float32" else {"checks": bf16}
            r = _timed(family, tok, where, FAMILY_LIMIT_S, device=device, dtype=getattr(torch, dtype), **kw)
            expected = CI_FAMILIES.get(family, "pass")
            if r.result == expected:
                result, message = "pass", r.reason
            else:
                result = "fail" if r.reason.startswith(Mismatch.__name__) or r.result != "fail" else "error"
                message = f"{r.result} (expected {expected}): {r.reason}"
            report.add(f"matrix/{dtype}/{family}", result, message, r.seconds, r.notes + notes)


def run_fsdp(report: Report, device: str, dtypes: list[str], tmp: Path) -> None:
    for i, dtype in enumerate(dtypes):
        start = time.time()
        where = tmp / f"fsdp-{dtype}"
        where.mkdir()
        try:
            notes = check_fsdp(device, dtype, where, 29561 + i)
            report.add(f"fsdp/{dtype}", "pass", "", time.time() - start, notes)
        except Mismatch as e:
            report.add(f"fsdp/{dtype}", "fail", str(e), time.time() - start)
        except Exception as e:  # noqa: BLE001 - recorded, the other checks still run
            report.add(f"fsdp/{dtype}", "error", f"{type(e).__name__}: {e}"[:1000], time.time() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.gpu_checks", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="directory for gpu_checks.json")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--families", nargs="+", default=sorted(CI_FAMILIES), help="default: the CI subset")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    p.add_argument("--checks", nargs="+", default=["matrix", "fsdp"], choices=["matrix", "fsdp"])
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu to check the script itself")
    import transformers

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 stays float32
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest (as the matrix runs)
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out, args.device)
    print(f"{report.data['device']} ({args.device}): torch {torch.__version__}, "
          f"transformers {report.data['transformers']}", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if "matrix" in args.checks:
                run_matrix(report, args.families, args.device, args.dtypes, Path(tmp))
            if "fsdp" in args.checks:
                run_fsdp(report, args.device, args.dtypes, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    s = report.data["summary"] if report.data["checks"] else {}
    print(f"{len(report.data['checks'])} checks in {report.data['seconds']:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in s.items()) + f"; written to {report.path}")
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
