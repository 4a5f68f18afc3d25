"""`POST /v1/completions`, `POST /v1/chat/completions` and `POST /v1/answer`: requests
become scheduler jobs.

Validation happens here, before anything is queued: the model name, the OpenAI fields
this server does not implement, the token budgets. A chat request is a completion whose
one prompt is the conversation rendered by the backbone tokenizer's chat template; the
two differ only in the shape of their responses (`_Shape`). Soft-prompt modules become a
`CompletionJob` (rows in the mixed batch); modules with their own inference (recursion)
and reader answers become a `CallJob`. Waiting is bounded by the request timeout; a
client that leaves (disconnect, timeout) cancels its job, which frees its rows at the
next decode step.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from shoulders.backbone.generation import GenerationConfig
from shoulders.backbone.sampling import SamplingParams
from shoulders.serving.engine import QueueFull
from shoulders.serving.jobs import CallJob, Choice, CompletionJob, EventSink, Job, ServingError
from shoulders.serving.registry import valid_name
from shoulders.serving.schemas import (AnswerRequest, ChatCompletionRequest, ChatMessage, CompletionRequest,
                                       GenerateRequest)

_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def lookup(state, name: str):
    if not valid_name(name):
        raise ServingError(400, f"invalid model name {name[:80]!r}: expected a module directory name "
                                "(letters, digits, '.', '_', '-'; no '/' or '..')", code="invalid_model_name")
    entry = state.registry.get(name)
    if entry is None:
        target = state.registry.aliases.get(name, "")
        why = (f"model {name!r} is an alias of module {target!r}, which is not loaded (GET /admin/modules says why)"
               if target else f"model {name!r} not found (GET /v1/models lists the served modules)")
        raise ServingError(404, why, "not_found_error", "model_not_found")
    return entry


def _submit(state, job: Job) -> None:
    try:
        state.engine.submit(job)
    except QueueFull as e:
        raise ServingError(429, str(e), "rate_limit_error", "queue_full") from None


def _generation_choices(module, backbone, prompts, cfg: GenerationConfig) -> list[Choice]:
    """Run a module's own `generate` (recursion modules) and flatten to OpenAI choices."""
    results = module.generate(backbone, prompts, cfg)
    return [Choice(p * cfg.n + j, g.text, list(g.token_ids), _FINISH.get(g.finish_reason, g.finish_reason))
            for p, gens in enumerate(results) for j, g in enumerate(gens)]


def build_job(state, req: GenerateRequest, sink: EventSink, prompts: list[str]) -> tuple[Job, list[int]]:
    """The job for a validated request, and the prompt token count of each prompt."""
    s, lm = state.settings, state.backbone
    entry = lookup(state, req.model)
    problem = req.unsupported()
    if problem:
        raise ServingError(400, problem, code="unsupported_parameter")
    asked = req.token_budget()
    max_tokens = asked or s.max_new_tokens  # unset: the server's limit, cut to the context by the engine
    if max_tokens > s.max_new_tokens:
        raise ServingError(400, f"max_tokens {max_tokens} is above this server's limit of {s.max_new_tokens}",
                           code="max_tokens_exceeded")
    if len(prompts) * req.n > s.max_batch:
        raise ServingError(400, f"{len(prompts)} prompt(s) x n={req.n} = {len(prompts) * req.n} choices, more than "
                                f"this server's batch of {s.max_batch}", code="too_many_choices")
    if not entry.batched and req.ignore_eos:
        raise ServingError(400, f"ignore_eos is not supported by {entry.module_type} modules (they run their own "
                                "generation)", code="unsupported_parameter")
    if entry.batched:
        from shoulders.data.examples import Example

        ids = entry.module.encode_inputs(lm, [Example(input=p, target="") for p in prompts])
    else:
        ids = lm.encode(prompts)
    for i, t in enumerate(ids):
        if len(t) > s.max_prompt_tokens:
            raise ServingError(400, f"prompt {i} has {len(t)} tokens, more than this server's limit of "
                                    f"{s.max_prompt_tokens}", code="context_length_exceeded")
    sampling = SamplingParams(req.temperature, req.top_p, req.top_k)
    stop = tuple(req.stop or ())
    if entry.batched:
        job = CompletionJob(sink=sink, model=entry.name, module=entry.module, prompts=prompts, token_ids=ids,
                            n=req.n, max_tokens=max_tokens, fit_context=asked is None, sampling=sampling,
                            seed=req.seed, stop=stop, ignore_eos=req.ignore_eos, stream=req.stream)
    else:
        cfg = GenerationConfig(max_new_tokens=max_tokens, do_sample=not sampling.greedy,
                               temperature=req.temperature or 1.0, top_p=req.top_p, top_k=req.top_k, n=req.n,
                               stop=stop, seed=req.seed)
        module = entry.module
        job = CallJob(sink=sink, model=entry.name, fn=lambda: _generation_choices(module, lm, prompts, cfg))
    return job, [len(t) for t in ids]


async def _next(job: Job, request: Request | None, deadline: float) -> tuple:
    """The job's next event; checks every second whether the client left (non-streaming
    only: a streaming response notices a disconnect itself and closes its generator)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServingError(504, "the request timed out before it finished (see --timeout)", "timeout_error",
                               "timeout")
        try:
            return await asyncio.wait_for(job.sink.get(), min(left, 1.0))
        except asyncio.TimeoutError:
            if request is not None and await request.is_disconnected():
                raise ServingError(499, "the client closed the request", code="client_closed") from None


def _usage(prompt_tokens: list[int], choices: list[Choice]) -> dict:
    done = sum(len(c.token_ids) for c in choices)
    return {"prompt_tokens": sum(prompt_tokens), "completion_tokens": done, "total_tokens": sum(prompt_tokens) + done}


@dataclass(frozen=True)
class _Shape:
    """What a response looks like: completions and chat completions differ only here."""

    endpoint: str
    id_prefix: str
    object: str
    chunk_object: str
    choice: Callable[[Choice], dict]  # a whole choice (non-streaming)
    chunk: Callable[[int, str, str | None], dict]  # (index, text delta, finish_reason) of a stream
    opening: Callable[[int], dict] | None = None  # sent first for each choice of a stream


TEXT = _Shape("/v1/completions", "cmpl", "text_completion", "text_completion",
              choice=lambda c: {"text": c.text, "index": c.index, "finish_reason": c.finish_reason, "logprobs": None},
              chunk=lambda i, text, reason: {"text": text, "index": i, "finish_reason": reason, "logprobs": None})
CHAT = _Shape("/v1/chat/completions", "chatcmpl", "chat.completion", "chat.completion.chunk",
              choice=lambda c: {"index": c.index, "message": {"role": "assistant", "content": c.text},
                                "finish_reason": c.finish_reason, "logprobs": None},
              chunk=lambda i, text, reason: {"index": i, "delta": {"content": text} if text else {},
                                             "finish_reason": reason, "logprobs": None},
              opening=lambda i: {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                                 "logprobs": None})


def chat_prompt(lm, messages: list[ChatMessage]) -> str:
    """The conversation as one prompt, through the backbone tokenizer's own chat template
    (ending with the assistant's cue), so a chat model sees the format it was tuned on."""
    from jinja2 import TemplateError

    tok = lm.tokenizer
    if not getattr(tok, "chat_template", None):
        raise ServingError(400, f"the backbone {lm.name_or_path!r} has no chat template (its tokenizer sets no "
                                "chat_template): use /v1/completions with a prompt, or serve a backbone whose "
                                "tokenizer has one", code="no_chat_template")
    try:
        text = tok.apply_chat_template([m.for_template() for m in messages], tokenize=False,
                                       add_generation_prompt=True)
    except (TemplateError, TypeError, ValueError, KeyError) as e:  # e.g. raise_exception("roles must alternate")
        raise ServingError(400, f"the backbone's chat template refused these messages: {e}",
                           code="chat_template_error") from None
    bos = tok.bos_token
    if bos and text.startswith(bos) and lm.encode([""])[0][:1] == [tok.bos_token_id]:
        text = text[len(bos):]  # encoding adds BOS itself: one, not two
    return text


async def completions(state, req: CompletionRequest, request: Request):
    return await _respond(state, req, request, req.prompts, TEXT)


async def chat_completions(state, req: ChatCompletionRequest, request: Request):
    lookup(state, req.model)  # an unknown model is a 404 whatever the template says
    return await _respond(state, req, request, [chat_prompt(state.backbone, req.messages)], CHAT)


async def _respond(state, req: GenerateRequest, request: Request, prompts: list[str], shape: _Shape):
    sink = EventSink()
    job, prompt_tokens = build_job(state, req, sink, prompts)
    deadline = time.monotonic() + state.settings.timeout
    _submit(state, job)
    head = {"id": f"{shape.id_prefix}-{uuid.uuid4().hex}", "object": shape.object, "created": int(time.time()),
            "model": job.model}
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_sse(job, deadline, dict(head, object=shape.chunk_object), prompt_tokens,
                                      include_usage, state, shape, len(prompts) * req.n),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    try:
        while True:
            event = await _next(job, request, deadline)
            if event[0] == "error":
                raise event[1]
            if event[0] == "done":
                choices = event[1]
                break
    finally:
        job.cancel()  # no-op when done; frees the rows on timeout or disconnect
    body = dict(head, choices=[shape.choice(c) for c in choices], usage=_usage(prompt_tokens, choices))
    return JSONResponse(body)


def _chunk(head: dict, choices: list[dict], **extra) -> str:
    return "data: " + json.dumps(dict(head, choices=choices, **extra)) + "\n\n"


async def _sse(job: Job, deadline: float, head: dict, prompt_tokens: list[int],
               include_usage: bool, state, shape: _Shape, n_choices: int):
    """OpenAI's chunks: (chat: a role chunk per choice,) text deltas, one finish chunk per
    choice, [DONE]."""
    status = 499  # unless it ends normally or with an error: the client left mid-stream
    try:
        if shape.opening is not None:
            for i in range(n_choices):
                yield _chunk(head, [shape.opening(i)])
        while True:
            try:
                event = await _next(job, None, deadline)
            except ServingError as e:
                status = e.status
                yield "data: " + json.dumps(e.body()) + "\n\n"
                break
            kind = event[0]
            if kind == "delta":
                yield _chunk(head, [shape.chunk(event[1], event[2], None)])
            elif kind == "finish":
                c = event[2]
                yield _chunk(head, [shape.chunk(c.index, "", c.finish_reason)])
            elif kind == "error":
                status = event[1].status
                yield "data: " + json.dumps(event[1].body()) + "\n\n"
                break
            elif kind == "done":
                choices = event[1]
                if isinstance(job, CallJob):  # generated all at once: one chunk per choice
                    for c in choices:
                        yield _chunk(head, [shape.chunk(c.index, c.text, c.finish_reason)])
                if include_usage:
                    yield _chunk(head, [], usage=_usage(prompt_tokens, choices))
                status = 200
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()
        state.metrics.count_request(job.model, shape.endpoint, status)


async def answer(state, req: AnswerRequest, request: Request):
    entry = lookup(state, req.model)
    module, lm = entry.module, state.backbone
    if not callable(getattr(module, "answer", None)):  # a module that can answer is a reader
        raise ServingError(400, f"model {entry.name!r} is not a reader (module_type {entry.module_type!r})",
                           code="not_a_reader")
    kwargs = {}
    if req.max_tokens is not None:
        if req.max_tokens > state.settings.max_new_tokens:
            raise ServingError(400, f"max_tokens {req.max_tokens} is above this server's limit of "
                                    f"{state.settings.max_new_tokens}", code="max_tokens_exceeded")
        kwargs["config"] = GenerationConfig(max_new_tokens=req.max_tokens)
    job = CallJob(sink=EventSink(), model=entry.name, fn=lambda: module.answer(lm, req.question, **kwargs))
    deadline = time.monotonic() + state.settings.timeout
    _submit(state, job)
    try:
        event = await _next(job, request, deadline)
    finally:
        job.cancel()
    if event[0] == "error":
        raise event[1]
    result = event[1]
    if not isinstance(result, dict) or "answer" not in result:
        raise ServingError(500, f"{entry.name}: answer() must return a dict with 'answer'", "server_error")
    return JSONResponse({"id": f"ans-{uuid.uuid4().hex}", "object": "answer", "created": int(time.time()),
                         "model": entry.name, "answer": result["answer"], "passages": result.get("passages", []),
                         "scores": result.get("scores", []),
                         **{k: v for k, v in result.items() if k not in ("answer", "passages", "scores")}})
