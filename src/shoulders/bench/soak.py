"""`shoulders bench soak`: a bounded soak of the HTTP server, with its memory watched.

A `shoulders serve` process on a tiny random Llama with a few random prompt-tuning
modules (built as `shoulders bench serve` builds them), `concurrency` httpx clients in a
closed loop, and a seeded mix of requests until `requests` are sent or `seconds` have
passed, whichever comes first: plain and sampled completions, several prompts with n=2,
streams read to `[DONE]`, streams closed after their first event, completions abandoned
mid-generation, oversized bodies, malformed bodies and names that try to leave the
modules directory. Every request has the outcomes it may have (a 200 with its tokens, a
413, a 4xx JSON error, a planned close); anything else is *lost* (a transport error, a
5xx, a 429, a malformed answer).

The server's RSS is sampled at the start, every `sample_every` seconds, after the
warm-up (the first tenth of the requests) and at the end, once the server reports no
running rows and an empty queue. Results go to the `## Soak` section of BENCHMARKS.md and
`benchmarks/soak.json` (`shoulders.bench.report`).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from shoulders.bench import report
from shoulders.bench.launch import ServerProcess
from shoulders.bench.serve import _sentences, build_bench_backbone, build_bench_modules

MAX_BODY = 65536  # the server's --max-body-bytes: oversized bodies stay cheap to send
# kind: share of the mix (percent)
MIX = {"plain": 44, "sampled": 10, "multi": 4, "stream": 14, "stream_closed": 8, "abandoned": 5,
       "oversized": 5, "malformed": 6, "bad_name": 4}
MALFORMED = [b'{"model": "pt-00", "prompt": ', b'{"model": "pt-00", "prompt": "\xff\xfe"}', b"[1, 2, 3]", b"",
             b'{"model": "pt-00", "prompt": "a\\ud800"}', b'{"model": "pt-00", "prompt": "x", "temperature": NaN}',
             b'{"model": "pt-00", "prompt": "x", "max_tokenz": 3}', b"[" * 3000 + b"]" * 3000]
BAD_NAMES = ["../pt-00", "%2e%2e", "/etc/passwd", "pt-00\x00", "x" * 300, "no-such-module", "pt-00/../../x", ".."]


def _plan(n: int, names: list[str], prompts: list[str], max_tokens: int, seed: int) -> list[dict]:
    """`n` requests: (kind, body) drawn from MIX, reproducible from `seed`."""
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    plan = []
    for i, kind in enumerate(kinds):
        body: dict[str, Any] = {"model": rng.choice(names), "prompt": rng.choice(prompts),
                                "max_tokens": rng.randint(2, max_tokens), "temperature": 0}
        if kind in ("sampled", "multi"):
            body.update(temperature=0.8, top_p=0.9, seed=i)
        if kind == "multi":
            body.update(prompt=[rng.choice(prompts) for _ in range(2)], n=2)
        if kind in ("stream", "stream_closed"):
            body.update(stream=True, stream_options={"include_usage": True})
        if kind in ("stream_closed", "abandoned"):
            body.update(max_tokens=max_tokens, ignore_eos=True)  # still generating when the client leaves
        raw = None
        if kind == "oversized":
            raw = json.dumps(dict(body, prompt="x" * (MAX_BODY + rng.randint(1, 4 * MAX_BODY)))).encode()
        elif kind == "malformed":
            raw = rng.choice(MALFORMED)
        elif kind == "bad_name":
            body["model"] = rng.choice(BAD_NAMES)
        plan.append({"kind": kind, "body": body, "raw": raw})
    return plan


async def _one(client: httpx.AsyncClient, item: dict) -> str:
    """Send one request; return its outcome: an HTTP status, 'closed' (a planned disconnect),
    or 'lost: ...' when the outcome is not one this kind of request may have."""
    kind, body = item["kind"], item["body"]
    try:
        if kind in ("stream", "stream_closed"):
            async with client.stream("POST", "/v1/completions", json=body) as r:
                if r.status_code != 200:
                    return f"lost: {r.status_code} {(await r.aread())[:120]!r}"
                events = []
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        if kind == "stream_closed":
                            return "closed"  # leaving the block closes the connection mid-stream
                chunks = [json.loads(e) for e in events[:-1]]
                finishes = [c for chunk in chunks for c in chunk.get("choices", []) if c["finish_reason"]]
                if events[-1:] != ["[DONE]"] or any("error" in c for c in chunks) or len(finishes) != 1 \
                        or not chunks[-1].get("usage"):
                    return f"lost: bad stream {events[-3:]!r}"[:200]
                return "200"
        if kind == "abandoned":
            try:
                r = await client.post("/v1/completions", json=body, timeout=httpx.Timeout(30, read=0.05))
            except httpx.ReadTimeout:
                return "closed"  # the client gave up: httpx closes that connection
        elif item["raw"] is not None:
            r = await client.post("/v1/completions", content=item["raw"], headers={"content-type": "application/json"})
        else:
            r = await client.post("/v1/completions", json=body)
    except httpx.HTTPError as e:
        return f"lost: {type(e).__name__}: {e}"[:200]
    expected = {"oversized": {413}, "malformed": {400, 422}, "bad_name": {400, 404}}.get(kind, {200})
    if r.status_code not in expected:
        return f"lost: {r.status_code} {r.text[:120]}"
    try:
        data = r.json()
    except ValueError:
        return f"lost: {r.status_code} not JSON"
    if r.status_code != 200:
        return str(r.status_code) if set(data.get("error", {})) == {"message", "type", "code"} else \
            f"lost: {r.status_code} not an error object"
    want = len(body["prompt"]) * body.get("n", 1) if isinstance(body["prompt"], list) else 1
    choices, usage = data.get("choices", []), data.get("usage") or {}
    if len(choices) != want or any(c.get("finish_reason") not in ("stop", "length") for c in choices) \
            or not 0 <= usage.get("completion_tokens", -1) <= want * body["max_tokens"]:  # 0: EOS came first
        return f"lost: 200 with a malformed answer: {r.text[:120]}"
    return "200"


async def _drive(url: str, plan: list[dict], *, concurrency: int, seconds: float, sample_every: float, pid: int,
                 warmup: int) -> dict:
    import psutil

    proc = psutil.Process(pid)
    outcomes: list[tuple[str, str]] = []
    samples: list[dict] = []
    warm: dict | None = None
    start = time.perf_counter()
    deadline = start + seconds
    nxt = 0

    def sample() -> dict:
        s = {"t_s": round(time.perf_counter() - start, 2), "requests": len(outcomes),
             "rss_mb": round(proc.memory_info().rss / 2**20, 1), "fds": proc.num_fds()}
        samples.append(s)
        return s

    sample()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker():
            nonlocal nxt, warm
            while nxt < len(plan) and time.perf_counter() < deadline:
                item, nxt = plan[nxt], nxt + 1
                outcomes.append((item["kind"], await _one(client, item)))
                if warm is None and len(outcomes) >= warmup:
                    warm = sample()

        async def sampler():
            while True:
                await asyncio.sleep(sample_every)
                sample()

        ticker = asyncio.create_task(sampler())
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        ticker.cancel()
    return {"outcomes": outcomes, "samples": samples, "warm": warm, "seconds": time.perf_counter() - start}


def _settle(url: str, seconds: float = 30.0) -> dict:
    """/health once no row runs and nothing waits (or when `seconds` are up)."""
    deadline = time.monotonic() + seconds
    while True:
        h = httpx.get(url + "/health", timeout=10).json()
        if (h["running_rows"] == 0 and h["queue"] == 0) or time.monotonic() > deadline:
            return h
        time.sleep(0.1)


def _server_counts(url: str) -> dict[str, int]:
    """Requests the server counted, by status (its /metrics)."""
    counts: Counter = Counter()
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("shoulders_requests_total{"):
            counts[line.split('status="')[1].split('"')[0]] += int(float(line.rsplit(" ", 1)[1]))
    return dict(sorted(counts.items()))


def _slope_mb_per_1000(samples: list[dict]) -> float | None:
    """Least-squares RSS growth per 1,000 requests over the samples given."""
    pts = [(s["requests"], s["rss_mb"]) for s in samples]
    if len(pts) < 3 or pts[-1][0] == pts[0][0]:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return round(1000 * sum((x - mx) * (y - my) for x, y in pts) / var, 2) if var else None


def run_soak(*, requests: int = 3000, seconds: float = 120.0, concurrency: int = 16, modules: int = 4,
             max_tokens: int = 32, sample_every: float = 2.0, threads: int | None = 1, backbone: str | None = None,
             work_dir: str | None = None, seed: int = 0, max_growth_mb: float = 64.0,
             command: str = "") -> tuple[dict, str]:
    """Run the soak; returns (result dict, markdown section)."""
    from shoulders.backbone import FrozenLM

    tmp = tempfile.TemporaryDirectory(prefix="shoulders-bench-soak-") if work_dir is None else None
    root = Path(work_dir or tmp.name)
    try:
        t0, machine = time.perf_counter(), report.machine_info()  # date and load average at the start
        bb_path = Path(backbone) if backbone else build_bench_backbone(
            root / "backbone", hidden=128, layers=2, heads=4, kv_heads=2, intermediate=344, vocab=2048, seed=seed)
        lm = FrozenLM.from_pretrained(bb_path, dtype="float32", device="cpu")
        names = build_bench_modules(lm, root / "modules", modules, lengths=(4, 8, 12))
        info = {"path": str(bb_path) if backbone else "random Llama (build_bench_backbone, hidden 128, 2 layers)",
                "params_m": round(lm.num_parameters / 1e6, 2), "vocab": lm.vocab_size, "hidden": lm.hidden_size,
                "layers": lm.config.num_hidden_layers}
        del lm
        plan = _plan(requests, names, _sentences(64, seed=seed + 1), max_tokens, seed)
        warmup = max(1, min(max(requests // 10, 10), requests // 2))
        server_args = ["--max-batch", "16", "--max-queue", str(max(64, 2 * concurrency)), "--max-new-tokens",
                       str(max(64, max_tokens)), "--max-prompt-tokens", "256", "--max-body-bytes", str(MAX_BODY),
                       "--timeout", "60"]
        with ServerProcess(bb_path, root / "modules", *server_args, log_path=root / "server.log",
                           threads=threads) as srv:
            run = asyncio.run(_drive(srv.url, plan, concurrency=concurrency, seconds=seconds,
                                     sample_every=sample_every, pid=srv.proc.pid, warmup=warmup))
            after = _settle(srv.url)
            import psutil

            proc = psutil.Process(srv.proc.pid)
            end = {"t_s": round(run["seconds"], 2), "requests": len(run["outcomes"]),
                   "rss_mb": round(proc.memory_info().rss / 2**20, 1), "fds": proc.num_fds()}
            run["samples"].append(end)
            counted = _server_counts(srv.url)
            alive = httpx.post(srv.url + "/v1/completions", timeout=60, json={
                "model": names[0], "prompt": "soak over", "max_tokens": 2, "temperature": 0}).status_code == 200
            server_exit = srv.proc.poll()
        sent = len(run["outcomes"])
        by_kind: dict[str, Counter] = {k: Counter() for k in MIX}
        for kind, outcome in run["outcomes"]:
            by_kind[kind][outcome if not outcome.startswith("lost") else "lost"] += 1
        lost_examples = Counter(o for _, o in run["outcomes"] if o.startswith("lost"))
        statuses = Counter(o for _, o in run["outcomes"] if not o.startswith("lost"))
        start_s, warm_s = run["samples"][0], run["warm"] or run["samples"][0]
        after_warm = [s for s in run["samples"] if s["requests"] >= warm_s["requests"]]
        growth = round(end["rss_mb"] - warm_s["rss_mb"], 1)
        lost = sum(lost_examples.values())
        result: dict[str, Any] = {
            "command": command or report.command_line(), "machine": machine, "device": "cpu",
            "dtype": "float32", "threads": threads, "backbone": info, "modules": modules, "concurrency": concurrency,
            "max_tokens": max_tokens, "server_args": server_args, "mix_percent": MIX, "seed": seed,
            "limits": {"requests": requests, "seconds": seconds},
            "requests_sent": sent, "requests_planned": len(plan),
            "stopped_by": "count" if sent == len(plan) else "time",
            "duration_s": round(run["seconds"], 1), "requests_per_s": round(sent / run["seconds"], 1),
            "outcomes": dict(sorted(statuses.items())), "by_kind": {k: dict(v) for k, v in by_kind.items() if v},
            "lost": lost, "lost_examples": dict(lost_examples.most_common(5)),
            "rss_mb": {"start": start_s["rss_mb"], "after_warmup": warm_s["rss_mb"],
                       "warmup_requests": warm_s["requests"],
                       "end": end["rss_mb"], "max": max(s["rss_mb"] for s in run["samples"]),
                       "growth_after_warmup": growth, "growth_from_start": round(end["rss_mb"] - start_s["rss_mb"], 1),
                       "slope_mb_per_1000_requests": _slope_mb_per_1000(after_warm)},
            "fds": {"start": start_s["fds"], "end": end["fds"]}, "server_counted": counted,
            "samples": run["samples"], "after": {"running_rows": after["running_rows"], "queue": after["queue"],
                                                 "still_answering": alive, "server_exited": server_exit is not None},
            "max_growth_mb": max_growth_mb, "load_avg_1m_end": os.getloadavg()[0],
            "total_s": round(time.perf_counter() - t0, 1)}
        result["passed"] = bool(lost == 0 and alive and server_exit is None and after["running_rows"] == 0
                                and after["queue"] == 0 and growth <= max_growth_mb)
        return result, soak_markdown(result)
    finally:
        if tmp is not None:
            tmp.cleanup()


def soak_markdown(result: dict) -> str:
    b, r, a = result["backbone"], result["rss_mb"], result["after"]
    closed = result["outcomes"].get("closed", 0)
    errors = ", ".join(f"{k}: {v:,}" for k, v in result["outcomes"].items() if k not in ("200", "closed")) or "none"
    slope = r["slope_mb_per_1000_requests"]
    lines = report.header("Soak", result)
    lines += [f"A `shoulders serve` process (`{' '.join(result['server_args'])}`, OMP threads "
              f"{result['threads'] or 'inherited'}) on {b['path']}, {b['params_m']}M parameters, with "
              f"{result['modules']} random prompt-tuning modules; {result['concurrency']} httpx clients in a closed "
              f"loop over loopback, until {result['limits']['requests']:,} requests or "
              f"{result['limits']['seconds']:g} s, whichever came first (here: the "
              f"{result['stopped_by']}). The seeded mix (percent): "
              + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result["mix_percent"].items()) + ".", ""]
    lines += report.table(
        ["requests sent", "duration s", "requests/s", "200", "errors by status", "planned closes", "lost"],
        [[f"{result['requests_sent']:,}", f"{result['duration_s']:.1f}", f"{result['requests_per_s']:.1f}",
          f"{result['outcomes'].get('200', 0):,}", errors, f"{closed:,}", f"**{result['lost']}**"]])
    lines += [""]
    lines += report.table(
        ["server RSS", "start", f"after warm-up ({r['warmup_requests']:,} requests)", "end", "max",
         "growth after warm-up", "per 1,000 requests (fit)"],
        [["MB", f"{r['start']:.1f}", f"{r['after_warmup']:.1f}", f"{r['end']:.1f}", f"{r['max']:.1f}",
          f"{r['growth_after_warmup']:+.1f}", "-" if slope is None else f"{slope:+.2f}"]])
    counted = ", ".join(f"{k}: {v:,}" for k, v in result["server_counted"].items())
    lines += ["", f"The server's own count (/metrics, completions that reached the app): {counted} (499: the "
                  "client left before the end).", ""]
    lines += [f"{len(result['samples'])} RSS samples (every few seconds, in benchmarks/soak.json). Open "
                  f"descriptors {result['fds']['start']} at the start, {result['fds']['end']} at the end. "
                  f"Afterwards: {a['running_rows']} running rows, {a['queue']} waiting, "
                  f"{'still answering' if a['still_answering'] else 'NOT answering'}; 1-minute load average "
                  f"{result.get('load_avg_1m_end', float('nan')):.1f} at the end. Lost = a transport error, a "
                  f"5xx, a 429 or an answer of the wrong shape; planned closes are streams closed after their first "
                  f"event and completions abandoned mid-generation. "
                  f"**{'PASSED' if result['passed'] else 'FAILED'}** (no request lost, server idle and answering "
                  f"afterwards, RSS growth after warm-up <= {result['max_growth_mb']:g} MB).", ""]
    if result["lost_examples"]:
        lines += ["Lost, most common: " + "; ".join(f"{k} (x{v})" for k, v in result["lost_examples"].items()), ""]
    return "\n".join(lines).rstrip() + "\n"


def add_soak_bench_args(p) -> None:
    """Flags for `shoulders bench soak` (the bench parser calls this)."""
    p.add_argument("--requests", type=int, default=3000, help="requests to send at most")
    p.add_argument("--seconds", type=float, default=120.0, help="stop sending after this long")
    p.add_argument("--concurrency", type=int, default=16, help="clients in the closed loop")
    p.add_argument("--modules", type=int, default=4, help="random prompt-tuning modules to serve")
    p.add_argument("--max-tokens", type=int, default=32, help="the longest completion asked for")
    p.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server (0: inherited)")
    p.add_argument("--max-growth-mb", type=float, default=64.0, help="RSS growth after warm-up that fails the run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", help="backbone directory (default: build a tiny random Llama)")
    p.add_argument("--work-dir", help="keep the backbone, modules and server log here (default: a temp dir)")
    p.add_argument("--root", default=".", help="where BENCHMARKS.md and benchmarks/ live")
    p.add_argument("--no-write", action="store_true", help="print only")


def run_from_args(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random backbone only: never reach for the hub
    result, text = run_soak(requests=args.requests, seconds=args.seconds, concurrency=args.concurrency,
                            modules=args.modules, max_tokens=args.max_tokens, sample_every=args.sample_every,
                            threads=args.threads or None, backbone=args.backbone, work_dir=args.work_dir,
                            seed=args.seed, max_growth_mb=args.max_growth_mb)
    print(text)
    if not args.no_write:
        for path in report.write_section(args.root, "Soak", text, "soak", result):
            print(f"wrote {path}")
    return 0 if result["passed"] else 1
