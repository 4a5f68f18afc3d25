"""The scheduler: one thread owns the backbone and runs continuous, mixed-module batching.

Loop: (1) admit waiting jobs, FIFO, while their rows fit in `max_batch`; their prompts
are prefilled as one left-padded batch, each row with its own module's soft prefix, and
merged into the running batch; (2) every row picks its next token with its own sampling
settings; (3) finished and cancelled rows leave; (4) one decode step for everyone left.
So requests for different modules share every forward pass, a newcomer waits at most one
step to join, and a short answer never waits for a long one.

Admission window: when nothing is running, a newcomer is admitted once `admit_wait`
seconds pass with no further arrival (or the batch is full, or 8 x `admit_wait` have
passed since the first). Requests sent together arrive a few milliseconds apart (each
is parsed and tokenised on the HTTP side first); without the window the first one would
be prefilled alone and decode alone for the many steps the others take to arrive, then
leave early while the rest run on. Triton's dynamic batcher calls this a queue delay.
While rows are running nobody waits: newcomers join at the next step.

A `CallJob` (recursion, reader) runs alone between two steps: its module has its own
inference logic, so it cannot share the batch. With a backbone whose cache cannot be
padded and merged (sliding-window or recurrent layers, or a family that ignores the
attention mask; `backbone.family`), newcomers join only when the batch is empty.
"""
from __future__ import annotations

import collections
import logging
import threading
import time

import torch

from shoulders.backbone.layout import prefix_length, split_prefix
from shoulders.backbone.sampling import make_generator, sample_rows
from shoulders.backbone.stops import cut_at_stop, hits_stop, streamable_prefix
from shoulders.data.examples import Example
from shoulders.serving.jobs import CallJob, Choice, CompletionJob, Job, ServingError
from shoulders.serving.kvbatch import DecodeBatch
from shoulders.serving.prompt_cache import PromptKVCache

log = logging.getLogger(__name__)


# Seconds of quiet before an idle scheduler admits what has arrived (see the module doc):
# measured with `shoulders bench serve` (docs/serving.md, "How the batching works").
ADMIT_WAIT = 0.004


class QueueFull(Exception):
    pass


class _Row:
    """One sample being generated: (job, choice index) plus what it has produced."""

    __slots__ = ("job", "choice", "gen", "tokens", "sent", "reason")

    def __init__(self, job: CompletionJob, choice: int, gen):
        self.job, self.choice, self.gen = job, choice, gen
        self.tokens: list[int] = []
        self.sent = ""  # text already streamed
        self.reason: str | None = None


class Engine:
    def __init__(self, backbone, *, max_batch: int = 32, max_queue: int = 256, admit_wait: float = ADMIT_WAIT,
                 metrics=None):
        self.lm = backbone
        self.max_batch, self.max_queue, self.admit_wait = max_batch, max_queue, admit_wait
        self.metrics = metrics
        self.mergeable = backbone.family.mergeable
        self.prompt_kv = PromptKVCache(backbone)  # the prompts' keys and values, once per module
        if not self.mergeable:
            log.warning("the %s family's cache cannot be merged: newcomers join only when the batch is empty",
                        backbone.family.name)
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._rows: list[_Row] = []
        self._batch: DecodeBatch | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="shoulders-scheduler", daemon=True)

    # ------------------------------------------------------------ public API
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job; raises QueueFull when `max_queue` jobs are already waiting."""
        if job.rows > self.max_batch:  # it could never be admitted, and would block the queue
            raise ServingError(400, f"{job.rows} rows do not fit in a batch of {self.max_batch}",
                               code="too_many_choices")
        with self._cond:
            if self._stopping:
                raise ServingError(503, "the server is shutting down", "server_error", "shutting_down")
            if any(j.cancelled for j in self._waiting):  # clients that left while waiting: forget them now,
                self._waiting = collections.deque(j for j in self._waiting if not j.cancelled)  # memory stays bounded
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting); retry later")
            self._waiting.append(job)
            self._cond.notify()

    @property
    def queue_length(self) -> int:
        return sum(not j.cancelled for j in self._waiting)

    @property
    def running_rows(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------ the loop
    def _run(self) -> None:
        torch.set_grad_enabled(False)  # grad mode is per thread
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not self._rows:
                    self._cond.wait()
                if self._stopping:
                    break
                if not self._rows:
                    self._gather()
                taken = self._take()
            try:
                if len(taken) == 1 and isinstance(taken[0], CallJob):
                    self._run_call(taken[0])
                elif taken:
                    self._admit(taken)
                if self._rows:
                    self._decode_step()
            except Exception as e:  # a bug or OOM: fail the running rows (and newcomers), keep serving
                log.exception("scheduler step failed")
                self._fail_all(ServingError(500, f"generation failed: {type(e).__name__}: {e}", "server_error"), taken)
        err = ServingError(503, "the server is shutting down", "server_error", "shutting_down")
        self._fail_all(err)
        for job in self._waiting:
            job.sink.put(("error", err))

    def _gather(self) -> None:
        """The admission window (called holding the lock, nothing running): wait while
        newcomers keep arriving less than `admit_wait` apart, up to 8 x `admit_wait`, or
        until the batch would be full or a CallJob (which runs alone anyway) is first."""
        if self.admit_wait <= 0:
            return
        deadline = time.monotonic() + 8 * self.admit_wait
        while not self._stopping and self._waiting and not isinstance(self._waiting[0], CallJob):
            if sum(j.rows for j in self._waiting if not j.cancelled) >= self.max_batch:
                return
            left = min(self.admit_wait, deadline - time.monotonic())
            if left <= 0 or not self._cond.wait(left):  # quiet for admit_wait, or out of time
                return

    def _take(self) -> list[Job]:
        """Jobs to admit now (called holding the lock): FIFO, whole jobs only."""
        taken: list[Job] = []
        free = self.max_batch - len(self._rows)
        if not self.mergeable and self._rows:
            return taken
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled:
                self._waiting.popleft()
                continue
            if isinstance(job, CallJob):
                if not taken:
                    taken.append(self._waiting.popleft())
                break
            if job.rows > free:
                break
            free -= job.rows
            taken.append(self._waiting.popleft())
        return taken

    def _observe_queue(self, job: Job) -> None:
        if self.metrics is not None:
            self.metrics.observe_queue(time.monotonic() - job.submitted)

    def _run_call(self, job: CallJob) -> None:
        self._observe_queue(job)
        try:
            job.sink.put(("done", job.fn()))
        except ServingError as e:
            job.sink.put(("error", e))
        except Exception as e:
            log.exception("%s failed", job.model)
            job.sink.put(("error", ServingError(500, f"{job.model}: {type(e).__name__}: {e}", "server_error")))

    def _admit(self, jobs: list[CompletionJob]) -> None:
        prefixes, ids, repeats, rows = [], [], [], []
        for job in jobs:
            self._observe_queue(job)
            try:
                examples = [Example(input=p, target="") for p in job.prompts]
                per_row = self.prompt_kv.rows(job.module, split_prefix(job.module.prefix(self.lm, examples),
                                                                       len(examples)), job.token_ids)
                for p, (pre, tok) in enumerate(zip(per_row, job.token_ids)):
                    used = prefix_length(pre) + len(tok)
                    if used == 0:
                        raise ServingError(400, f"prompt {p} is empty and {job.model} adds no prefix: "
                                                "nothing to continue", code="empty_prompt")
                    if job.fit_context:  # only here is the prefix length known
                        job.max_tokens = max(1, min(job.max_tokens, self.lm.max_context - used))
                    total = used + job.max_tokens
                    if total > self.lm.max_context:
                        raise ServingError(400, f"prompt {p}: soft prefix + prompt + max_tokens = {total} tokens, "
                                                f"more than the backbone's context of {self.lm.max_context}",
                                           code="context_length_exceeded")
                gens = [None if job.sampling.greedy else make_generator(None if job.seed is None else job.seed + j,
                                                                        self.lm.device)
                        for _ in job.prompts for j in range(job.n)]
            except ServingError as e:
                job.sink.put(("error", e))
                continue
            except Exception as e:
                log.exception("%s: computing the prefix failed", job.model)
                job.sink.put(("error", ServingError(500, f"{job.model}: prefix failed: {e}", "server_error")))
                continue
            for p, (pre, tok) in enumerate(zip(per_row, job.token_ids)):
                prefixes.append(pre)
                ids.append(tok)
                repeats.append(job.n)
                for j in range(job.n):
                    rows.append(_Row(job, p * job.n + j, gens[p * job.n + j]))
        if not rows:
            return
        try:
            fresh = DecodeBatch.prefill(self.lm, prefixes, ids, repeats)
        except Exception as e:  # only the newcomers fail; the running batch is untouched
            log.exception("prefill failed")
            err = ServingError(500, f"prefill failed: {type(e).__name__}: {e}", "server_error")
            for job in {id(r.job): r.job for r in rows}.values():
                job.sink.put(("error", err))
            return
        if self._batch is None or not self._rows:
            self._batch = fresh
        else:
            self._batch.merge(fresh)
        self._rows.extend(rows)

    def _decode_step(self) -> None:
        batch, rows = self._batch, self._rows
        if self.metrics is not None:
            self.metrics.observe_batch(len(rows))
        nxt = sample_rows(batch.logits, [r.job.sampling for r in rows], [r.gen for r in rows]).tolist()
        eos = self.lm.eos_token_id
        keep, produced = [], 0
        for j, row in enumerate(rows):
            job, tok = row.job, nxt[j]
            if job.cancelled:
                continue  # the client is gone: drop the row, report nothing
            if eos is not None and tok == eos and not job.ignore_eos:
                row.reason = "stop"
            else:
                row.tokens.append(tok)
                produced += 1
                if hits_stop(self.lm.decode, row.tokens, job.stop):
                    row.reason = "stop"
                elif len(row.tokens) >= job.max_tokens:
                    row.reason = "length"
            if row.reason is not None:
                self._finish(row)
                continue
            if job.stream:
                self._stream(row)
            keep.append(j)
        if self.metrics is not None:
            self.metrics.add_tokens(produced)
        if len(keep) < len(rows):
            self._rows = [rows[j] for j in keep]
            if not keep:
                self._batch = None
                return
            batch.select(keep)
        batch.step(torch.tensor([nxt[j] for j in keep]))

    def _stream(self, row: _Row) -> None:
        text = streamable_prefix(self.lm.decode(row.tokens), row.job.stop)
        if len(text) > len(row.sent) and text.startswith(row.sent):
            row.job.sink.put(("delta", row.choice, text[len(row.sent):]))
            row.sent = text

    def _finish(self, row: _Row) -> None:
        job = row.job
        text, stopped = cut_at_stop(self.lm.decode(row.tokens), job.stop)
        if stopped:
            row.reason = "stop"
        choice = Choice(row.choice, text, row.tokens, row.reason)
        job.choices[row.choice] = choice
        if job.stream:
            tail = text[len(row.sent):] if text.startswith(row.sent) else text  # a tokenizer re-spacing: best effort
            if tail:
                job.sink.put(("delta", row.choice, tail))
            job.sink.put(("finish", row.choice, choice))
        if len(job.choices) == job.rows:
            job.sink.put(("done", [job.choices[i] for i in range(job.rows)]))

    def _fail_all(self, err: ServingError, also: list[Job] = ()) -> None:
        for job in {id(j): j for j in [*(r.job for r in self._rows), *also]}.values():
            job.sink.put(("error", err))
        self._rows, self._batch = [], None
