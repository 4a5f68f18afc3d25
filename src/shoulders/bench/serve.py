"""`shoulders bench serve`: what mixed-module batching buys, measured over real HTTP.

A server *process* (`shoulders serve`) on loopback, a real client (httpx), one run:
1. one request at a time (one client);
2. homogeneous batches: `concurrency` clients, every request for the same module;
3. mixed batches: the same load spread round-robin over `modules` modules (>= 8).
The three run in turn, `repeats` times, in rotating order (a noisy neighbour hurts all
three alike); medians are reported, and the ratios mixed/homogeneous (the cost of mixing
modules in one batch: the claim is >= 0.9) and mixed/one-at-a-time (the gain of batching
at all: >= 3x). Requests are greedy with `ignore_eos`, lengths cycling through
`max_tokens`, so every scenario generates the same tokens.

`load_test=True` adds: `load_requests` requests at once over the modules; none may be
lost or fail, and every answer must equal the same request served alone (sent one at a
time afterwards to the same server).

`vs_generate=True` (the default) adds the server against transformers' own `generate` on
the same backbone, one request alone and 16 concurrent requests over several modules
(`bench.serve_vs_generate`): the claim is >= 1.0x in both.

The default backbone is a randomly initialised Llama (~31M parameters, 8k vocabulary)
with random prompt-tuning modules: sized so that a 2-core CPU finishes in minutes.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import random
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from shoulders.bench.launch import ServerProcess
from shoulders.bench.loadgen import batch_rows, run_load
from shoulders.bench.serve_vs_generate import VsWorkload, run_vs_generate, vs_generate_markdown
from shoulders.utils.fs import atomic_write_json, atomic_write_text

SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def _words(seed: int) -> tuple[random.Random, list[str]]:
    """6,000 pseudo-words, and the generator that drew them (sentences go on drawing from it)."""
    rng = random.Random(seed)
    return rng, ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(6000)]


def _sentences(n: int, seed: int) -> list[str]:
    rng, words = _words(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def build_bench_backbone(out_dir: str | Path, *, hidden: int = 512, layers: int = 8, heads: int = 8,
                         kv_heads: int = 4, intermediate: int = 1376, vocab: int = 8192, seed: int = 0) -> Path:
    """A random Llama with a BPE tokenizer trained here on pseudo-words: offline, ~31M params."""
    import torch
    from transformers import LlamaForCausalLM

    from shoulders.toyworld.tiny_lm import byte_bpe, llama_config

    out_dir = Path(out_dir)
    fast = byte_bpe(_sentences(20000, seed), vocab)
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    cfg = llama_config(fast, hidden=hidden, layers=layers, heads=heads, intermediate=intermediate, max_positions=1024,
                       kv_heads=kv_heads, tied=False)
    LlamaForCausalLM(cfg).save_pretrained(out_dir)
    return out_dir


def build_bench_modules(backbone, out_dir: str | Path, n: int, lengths=(12, 16, 20), name: str = "pt") -> list[str]:
    """`n` random prompt-tuning modules `{name}-00`, ...; prefix lengths cycle through
    `lengths` so mixed batches pay for padding, as they would with real modules."""
    from shoulders.modules import save_module
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    names = []
    for i in range(n):
        cfg = PromptTuningConfig(num_virtual_tokens=lengths[i % len(lengths)], init="random", seed=i)
        save_module(PromptTuning.build(cfg, backbone), Path(out_dir) / f"{name}-{i:02d}", backbone)
        names.append(f"{name}-{i:02d}")
    return names


def _machine() -> dict[str, Any]:
    import torch

    cpu = platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_avg_1m": os.getloadavg()[0], "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def run_serve_bench(*, backbone: str | None = None, work_dir: str | None = None, modules: int = 10,
                    concurrency: int = 32, requests: int | None = None, seq_requests: int = 12,
                    max_tokens: tuple[int, ...] = (16, 32, 48), repeats: int = 2, threads: int | None = None,
                    scenario_seconds: float = 120.0, throughput: bool = True, load_test: bool = False,
                    load_requests: int = 1000, load_seconds: float = 600.0, vs_generate: bool = True,
                    vs: VsWorkload | None = None, command: str = "") -> tuple[dict, str]:
    """Run the benchmark; returns (result dict, markdown section). `threads` (default: this
    process's torch threads) goes to the server as OMP_NUM_THREADS, and to the HF side of
    the comparison with `generate` as torch threads."""
    import torch

    from shoulders.backbone import FrozenLM
    from shoulders.modules import load_module

    if modules < 2:
        raise ValueError("modules must be >= 2 (mixed batches need several modules)")
    threads = threads or torch.get_num_threads()
    vs = vs or VsWorkload(modules=modules)
    tmp = tempfile.TemporaryDirectory(prefix="shoulders-bench-serve-") if work_dir is None else None
    root = Path(work_dir or tmp.name)
    try:
        bb_path = Path(backbone) if backbone else build_bench_backbone(root / "backbone")
        lm = FrozenLM.from_pretrained(bb_path, dtype="float32", device="cpu")
        names = build_bench_modules(lm, root / "modules", modules) if throughput or load_test else []
        # the comparison's modules: all of one prompt length, as HF's one inputs_embeds batch needs
        vs_names = build_bench_modules(lm, root / "modules", vs.modules, (vs.prompt,), "vs") if vs_generate else []
        prompts = _sentences(64, seed=1)
        requests = requests or 4 * concurrency
        result: dict[str, Any] = {
            "command": command, "machine": _machine(), "threads": threads,
            "backbone": {"path": str(bb_path) if backbone else "random Llama (build_bench_backbone)",
                         "params_m": round(lm.num_parameters / 1e6, 1), "vocab": lm.vocab_size,
                         "hidden": lm.hidden_size, "layers": lm.config.num_hidden_layers},
            "modules": modules, "concurrency": concurrency, "max_tokens": list(max_tokens)}
        if not vs_generate:
            del lm
        args = ["--max-batch", str(max(concurrency, vs.concurrency, 64)), "--max-queue", str(load_requests + 256),
                "--max-new-tokens", str(max(*max_tokens, vs.new_tokens, 64)), "--timeout", str(load_seconds + 60),
                "--rescan-interval", "0", "--max-prompt-tokens", "512"]
        with ServerProcess(bb_path, root / "modules", *args, log_path=root / "server.log", threads=threads) as srv:
            url = srv.url

            def bodies(n: int, mods: list[str], offset: int = 0) -> list[dict]:
                return [{"model": mods[i % len(mods)], "prompt": prompts[(i + offset) % len(prompts)],
                         "max_tokens": max_tokens[i % len(max_tokens)], "temperature": 0, "ignore_eos": True}
                        for i in range(n)]

            warm = names or vs_names
            run_load(url, bodies(2, warm) + bodies(16, warm), concurrency=8)  # warm-up
            if vs_generate:
                loaded = {n: load_module(root / "modules" / n, lm) for n in vs_names}
                result["vs_generate"] = run_vs_generate(url, lm, loaded, _words(vs.seed)[1], vs, repeats, threads)
            if throughput:
                result["scenarios"] = _throughput(url, names, bodies, concurrency, requests, seq_requests,
                                                  repeats, scenario_seconds)
            if load_test:
                result["load_test"] = _load_test(url, names, prompts, load_requests, load_seconds)
        result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
        return result, serve_markdown(result)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _throughput(url, names, bodies, concurrency, requests, seq_requests, repeats, seconds) -> dict:
    plan = {"one_at_a_time": (lambda: bodies(seq_requests, names), 1),
            "homogeneous": (lambda: bodies(requests, names[:1]), concurrency),
            "mixed": (lambda: bodies(requests, names), concurrency)}
    runs: dict[str, list[dict]] = {k: [] for k in plan}
    order = list(plan)
    for r in range(repeats):
        for name in order[r % 3:] + order[: r % 3]:  # rotate: no scenario always runs first
            make, conc = plan[name]
            before = batch_rows(url)
            res = run_load(url, make(), concurrency=conc, max_seconds=seconds)
            after = batch_rows(url)
            s = res.summary()
            s["mean_batch_rows"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 2)
            runs[name].append(s)
    out = {}
    for name, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        out[name] = {**med, "runs": rs}
    out["mixed_vs_homogeneous"] = round(out["mixed"]["tokens_per_s"] / out["homogeneous"]["tokens_per_s"], 3)
    out["mixed_vs_one_at_a_time"] = round(out["mixed"]["tokens_per_s"] / out["one_at_a_time"]["tokens_per_s"], 2)
    return out


def _load_test(url, names, prompts, n, seconds) -> dict:
    """`n` requests at once over the modules; each answer must equal the request served alone."""
    distinct = [{"model": names[i % len(names)], "prompt": prompts[i % len(prompts)],
                 "max_tokens": (4, 8, 12, 16)[i % 4], "temperature": 0} for i in range(min(100, n))]
    order = [i % len(distinct) for i in range(n)]
    random.Random(0).shuffle(order)
    before = batch_rows(url)
    res = run_load(url, [distinct[i] for i in order], concurrency=n, max_seconds=seconds)
    after = batch_rows(url)
    alone = run_load(url, distinct, concurrency=1, max_seconds=seconds)
    ref = [r["choices"][0]["text"] if r else None for r in alone.responses]
    answered = [(i, r) for i, r in zip(order, res.responses) if r is not None]
    same = sum(r["choices"][0]["text"] == ref[i] for i, r in answered)
    return {"requests": n, "distinct": len(distinct), "ok": res.requests, "errors": res.errors,
            "lost": n - res.requests - sum(res.errors.values()), "identical_to_alone": same,
            "reference_ok": alone.requests, "seconds": round(res.seconds, 2),
            "tokens_per_s": round(res.tokens_per_s, 1), "p50_s": round(res.percentile(50), 3),
            "p99_s": round(res.percentile(99), 3),
            "mean_batch_rows": round((after[0] - before[0]) / max(after[1] - before[1], 1), 2),
            "passed": res.requests == n and same == n and alone.requests == len(distinct)}


def serve_markdown(result: dict) -> str:
    m, b, sc = result["machine"], result["backbone"], result.get("scenarios")
    mods = f"{result['modules']} prompt-tuning modules; " if sc or result.get("load_test") else ""
    lengths = f"; greedy, `ignore_eos`, max_tokens cycling {result['max_tokens']}." if sc else "."
    busy = (" (above the core count: other jobs shared the CPU)"
            if max(m["load_avg_1m"], m.get("load_avg_1m_end", 0.0)) > m["cores"] else "")
    out = ["## Serving", "", f"Command: `{result['command']}`  " if result["command"] else "",
           f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, threads {result['threads'] or 'default'}; "
           f"{m['date']}; load average (1 min) at start/end {m['load_avg_1m']:.1f} / "
           f"{m.get('load_avg_1m_end', float('nan')):.1f}{busy}.  ",
           f"Backbone: {b['path']}, {b['params_m']}M parameters ({b['layers']} layers, hidden {b['hidden']}, "
           f"vocab {b['vocab']}); {mods}a `shoulders serve` process on loopback, httpx clients{lengths}", ""]
    if sc:
        out += ["| scenario | clients | requests | tokens/s | requests/s | p50 s | p90 s | p99 s | rows/step |",
                "|---|---|---|---|---|---|---|---|---|"]
        for key, label, clients in (("one_at_a_time", "one request at a time", 1),
                                    ("homogeneous", "homogeneous (1 module)", result["concurrency"]),
                                    ("mixed", f"mixed ({result['modules']} modules)", result["concurrency"])):
            s = sc[key]
            out.append(f"| {label} | {clients} | {s['requests']:.0f} | {s['tokens_per_s']:,.1f} | "
                       f"{s['requests_per_s']:.2f} | {s['p50_s']:.2f} | {s['p90_s']:.2f} | {s['p99_s']:.2f} | "
                       f"{s['mean_batch_rows']:.1f} |")
        out += ["", f"Mixed / homogeneous throughput: **{sc['mixed_vs_homogeneous']:.2f}x** (claim: >= 0.9x). "
                    f"Mixed / one at a time: **{sc['mixed_vs_one_at_a_time']:.1f}x** (claim: >= 3x). "
                    f"Medians of {len(sc['mixed']['runs'])} rotating runs.", ""]
    if result.get("vs_generate"):
        out += vs_generate_markdown(result["vs_generate"])
    lt = result.get("load_test")
    if lt:
        out += [f"Load test: {lt['requests']:,} concurrent requests over {result['modules']} modules "
                f"({lt['distinct']} distinct, greedy): {lt['ok']:,} answered, "
                f"{sum(lt['errors'].values()) if isinstance(lt['errors'], dict) else lt['errors']} errors, "
                f"{lt['lost']} lost; {lt['identical_to_alone']:,} / {lt['requests']:,} identical to the same "
                f"request served alone; {lt['seconds']:.1f} s, {lt['tokens_per_s']:,.0f} tokens/s, "
                f"p50 {lt['p50_s']:.1f} s, p99 {lt['p99_s']:.1f} s, {lt['mean_batch_rows']:.1f} rows per decode "
                f"step. **{'PASSED' if lt['passed'] else 'FAILED'}**", ""]
    return "\n".join(line for line in out if line is not None).rstrip() + "\n"


def write_serve_benchmarks(result: dict, markdown: str, root: str | Path = ".") -> tuple[Path, Path]:
    """Replace (or append) the `## Serving` section of BENCHMARKS.md, keeping the others,
    and write benchmarks/serve.json; both atomically."""
    root = Path(root)
    md_path, json_path = root / "BENCHMARKS.md", root / "benchmarks" / "serve.json"
    old = md_path.read_text(encoding="utf-8") if md_path.is_file() else "# Benchmarks\n"
    section = re.compile(r"^## Serving[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    body = markdown.rstrip() + "\n\n"
    new = section.sub(lambda _: body, old, count=1) if section.search(old) else old.rstrip() + "\n\n" + body
    for path, write, data in ((md_path, atomic_write_text, new.rstrip() + "\n"),
                              (json_path, atomic_write_json, result)):
        write(path, data)
        os.chmod(path, 0o644)  # the atomic temp file is private (0600); a results file is not
    return md_path, json_path


def add_serve_bench_args(p) -> None:
    """Flags for `shoulders bench serve` (the bench parser calls this)."""
    p.add_argument("--backbone", help="backbone directory (default: build a random ~31M Llama)")
    p.add_argument("--modules", type=int, default=10, help="prompt-tuning modules for the mixed scenario")
    p.add_argument("--concurrency", type=int, default=32, help="clients in the batched scenarios")
    p.add_argument("--requests", type=int, help="requests per batched scenario (default: 4 x concurrency)")
    p.add_argument("--seq-requests", type=int, default=12, help="requests in the one-at-a-time scenario")
    p.add_argument("--max-tokens", type=int, nargs="+", default=[16, 32, 48], help="lengths, cycled")
    p.add_argument("--repeats", type=int, default=2, help="rotating runs per scenario (median reported)")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the server, torch threads of the HF side of "
                   "the comparison with generate (default: this process's torch threads)")
    p.add_argument("--load-test", action="store_true", help="also: --load-requests at once, checked against alone")
    p.add_argument("--load-only", action="store_true", help="only the load test")
    p.add_argument("--load-requests", type=int, default=1000)
    p.add_argument("--vs-generate-only", action="store_true",
                   help="only the comparison with transformers generate (alone and concurrent)")
    p.add_argument("--no-vs-generate", action="store_true", help="skip the comparison with transformers generate")
    p.add_argument("--vs-new-tokens", type=int, default=32, help="comparison: tokens generated per request")
    p.add_argument("--vs-prompt", type=int, default=20, help="comparison: virtual tokens of its modules")
    p.add_argument("--vs-input-tokens", type=int, default=32, help="comparison: input tokens per request")
    p.add_argument("--vs-concurrency", type=int, default=16,
                   help="comparison: concurrent requests, and generate's batch")
    p.add_argument("--vs-alone-requests", type=int, default=4,
                   help="comparison: requests sent one at a time per round")
    p.add_argument("--work-dir", help="keep the backbone, modules and server log here (default: a temp dir)")
    p.add_argument("--root", default=".", help="where BENCHMARKS.md and benchmarks/ live")
    p.add_argument("--no-write", action="store_true", help="print only")


def run_from_args(args) -> int:
    result, table = run_serve_bench(
        backbone=args.backbone, work_dir=args.work_dir, modules=args.modules, concurrency=args.concurrency,
        requests=args.requests, seq_requests=args.seq_requests, max_tokens=tuple(args.max_tokens),
        repeats=args.repeats, threads=args.threads, throughput=not (args.load_only or args.vs_generate_only),
        load_test=args.load_test or args.load_only, load_requests=args.load_requests,
        vs_generate=args.vs_generate_only or not (args.no_vs_generate or args.load_only),
        vs=VsWorkload(new_tokens=args.vs_new_tokens, prompt=args.vs_prompt, input_tokens=args.vs_input_tokens,
                      concurrency=args.vs_concurrency, alone_requests=args.vs_alone_requests, modules=args.modules),
        command=" ".join([getattr(args, "prog", None) or "shoulders", *sys.argv[1:]]))
    print(table)
    if not args.no_write:
        for path in write_serve_benchmarks(result, table, args.root):
            print(f"wrote {path}")
    ok = result.get("load_test", {}).get("passed", True)
    return 0 if ok else 1
