"""A small HTTP load generator for a running server: closed loop, bounded count and time.

`concurrency` clients each send their next request as soon as the previous one is
answered (a closed loop, like users waiting on answers), until `bodies` are used up or
`max_seconds` have passed. Throughput counts generated tokens as reported in `usage`;
latency is per request, end to end, as the client sees it.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # "status: message" -> count
    tokens: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    responses: list[dict | None] = field(default_factory=list)  # per body, in order (None: failed or not sent)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    def summary(self) -> dict:
        return {"requests": self.requests, "errors": sum(self.errors.values()), "tokens": self.tokens,
                "seconds": round(self.seconds, 3), "tokens_per_s": round(self.tokens_per_s, 2),
                "requests_per_s": round(self.requests_per_s, 3),
                **{f"p{q}_s": round(self.percentile(q), 4) for q in (50, 90, 99)}}


async def _run(url: str, bodies: list[dict], concurrency: int, max_seconds: float, headers: dict) -> LoadResult:
    result = LoadResult(responses=[None] * len(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    nxt = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=max_seconds + 60, headers=headers) as client:
        async def worker():
            nonlocal nxt
            while nxt < len(bodies) and time.perf_counter() < deadline:
                i, nxt = nxt, nxt + 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/completions", json=bodies[i])
                except httpx.HTTPError as e:
                    key = f"{type(e).__name__}: {e}"[:200]
                    result.errors[key] = result.errors.get(key, 0) + 1
                    continue
                if r.status_code != 200:
                    key = f"{r.status_code}: {r.text[:150]}"
                    result.errors[key] = result.errors.get(key, 0) + 1
                    continue
                body = r.json()
                result.latencies.append(time.perf_counter() - t0)
                result.requests += 1
                result.tokens += body["usage"]["completion_tokens"]
                result.responses[i] = body

        await asyncio.gather(*[worker() for _ in range(min(concurrency, len(bodies)))])
    result.seconds = time.perf_counter() - start
    return result


def run_load(url: str, bodies: list[dict], *, concurrency: int, max_seconds: float = 300.0,
             api_key: str | None = None) -> LoadResult:
    """Send `bodies` to `url`/v1/completions with `concurrency` clients; see the module doc."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return asyncio.run(_run(url, bodies, concurrency, max_seconds, headers))


def batch_rows(url: str, api_key: str | None = None) -> tuple[float, float]:
    """The server's (sum, count) of rows per decode step so far, from its /metrics: the
    difference of two readings gives the mean rows per step in between."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    text = httpx.get(url + "/metrics", headers=headers).text
    vals = dict(ln.split(" ") for ln in text.splitlines() if ln.startswith(("shoulders_batch_rows_sum",
                                                                             "shoulders_batch_rows_count")))
    return float(vals["shoulders_batch_rows_sum"]), float(vals["shoulders_batch_rows_count"])
