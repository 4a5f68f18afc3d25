"""Prometheus metrics in the text exposition format, written by hand.

prometheus_client is not a dependency; the handful of series a server needs fit in this
file: requests by model, endpoint and status; a histogram of rows per decode step; a
histogram of time spent queued; generated tokens (a counter, and a rate over the last
`window` seconds). Model labels are only names of loaded modules (anything else is
counted as "_unknown"), so a client cannot grow the series without bound.
"""
from __future__ import annotations

import bisect
import collections
import threading
import time

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str) -> list[str]:
        out, acc = [], 0
        for bound, count in zip(self.buckets, self.counts):
            acc += count
            out.append(f'{name}_bucket{{le="{bound}"}} {acc}')
        acc += self.counts[-1]
        out += [f'{name}_bucket{{le="+Inf"}} {acc}', f"{name}_sum {self.sum:.6f}", f"{name}_count {acc}"]
        return out


class Metrics:
    def __init__(self, window: float = 10.0):
        self._lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()
        self.batch = _Histogram(BATCH_BUCKETS)
        self.queue = _Histogram(QUEUE_BUCKETS)
        self.tokens = 0
        self.window = window
        self._recent: collections.deque[tuple[float, int]] = collections.deque()

    def count_request(self, model: str, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(model, endpoint, str(status))] += 1

    def observe_batch(self, rows: int) -> None:
        with self._lock:
            self.batch.observe(rows)

    def observe_queue(self, seconds: float) -> None:
        with self._lock:
            self.queue.observe(seconds)

    def add_tokens(self, n: int) -> None:
        if not n:
            return
        now = time.monotonic()
        with self._lock:
            self.tokens += n
            self._recent.append((now, n))
            while self._recent and self._recent[0][0] < now - self.window:
                self._recent.popleft()

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            return sum(n for t, n in self._recent if t >= now - self.window) / self.window

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The exposition text; `gauges` maps a name to (help, value)."""
        rate = self.tokens_per_second()
        with self._lock:
            lines = ["# HELP shoulders_requests_total HTTP requests by model, endpoint and status.",
                     "# TYPE shoulders_requests_total counter"]
            for (model, endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'shoulders_requests_total{{model="{_escape(model)}",endpoint="{_escape(endpoint)}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP shoulders_batch_rows Rows in the batch at each decode step.",
                      "# TYPE shoulders_batch_rows histogram", *self.batch.lines("shoulders_batch_rows")]
            lines += ["# HELP shoulders_queue_seconds Time from arrival to joining the batch.",
                      "# TYPE shoulders_queue_seconds histogram", *self.queue.lines("shoulders_queue_seconds")]
            lines += ["# HELP shoulders_generated_tokens_total Tokens generated.",
                      "# TYPE shoulders_generated_tokens_total counter",
                      f"shoulders_generated_tokens_total {self.tokens}"]
        lines += [f"# HELP shoulders_generated_tokens_per_second Tokens generated per second over the last "
                  f"{self.window:g} s.", "# TYPE shoulders_generated_tokens_per_second gauge",
                  f"shoulders_generated_tokens_per_second {rate:.3f}"]
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
