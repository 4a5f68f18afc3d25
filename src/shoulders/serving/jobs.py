"""What the HTTP side hands the scheduler, and how results travel back.

The scheduler thread owns the backbone; request handlers live on the asyncio loop. A
job carries an `EventSink` (an asyncio.Queue fed with `call_soon_threadsafe`), so the
scheduler never blocks on a slow client and a handler never touches the backbone.

Events: `("delta", choice, text)` (streaming only), `("finish", choice, Choice)`,
`("done", result)`, `("error", ServingError)`.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoulders.backbone.sampling import SamplingParams


class ServingError(Exception):
    """An error with the HTTP status, OpenAI error type and code it should be reported as."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


class EventSink:
    """Thread-safe one-way channel from the scheduler thread to one request's handler."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()

    def put(self, event: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server is shutting down, nobody listens
            pass

    async def get(self) -> tuple:
        return await self.queue.get()


@dataclass
class Choice:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str  # OpenAI's: "stop" (EOS or a stop string) | "length"


@dataclass
class Job:
    """Base: what every queued job has. `cancel()` may be called from any thread."""

    sink: EventSink
    model: str = ""
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True  # a plain flag: the scheduler reads it between steps

    @property
    def rows(self) -> int:
        return 0


@dataclass
class CompletionJob(Job):
    """Rows that join the mixed batch: one per (prompt, sample)."""

    module: Any = None  # a SoftPromptModule
    prompts: list[str] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)  # per prompt, after the module's template
    n: int = 1
    max_tokens: int = 16
    fit_context: bool = False  # max_tokens was not asked for: cut it to what the context leaves, do not refuse
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    stream: bool = False
    choices: dict[int, Choice] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.token_ids) * self.n


@dataclass
class CallJob(Job):
    """Work the batch cannot share (recursion, reader): `fn()` runs alone on the scheduler
    thread between decode steps; its return value is the `done` payload."""

    fn: Callable[[], Any] | None = None
