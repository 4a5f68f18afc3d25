"""Staggered requests through the serving engine in-process, each beside the same request
decoded alone.

The serving tests and the architecture matrix ask the same question (does sharing a
decode batch with other modules' rows change anyone's answer?), so they share the loop
that asks it; each keeps its own way of saying no (assert, or a matrix row).
"""
from __future__ import annotations

import asyncio


def greedy(batch, steps: int) -> list[list[int]]:
    """`steps` greedy tokens for every row of a `DecodeBatch` (no row leaves)."""
    out = [[] for _ in range(len(batch))]
    for _ in range(steps):
        nxt = batch.logits.argmax(-1)
        for i, t in enumerate(nxt.tolist()):
            out[i].append(t)
        batch.step(nxt)
    return out


def serve_staggered(lm, reqs, *, max_batch: int, max_queue: int) -> list[tuple[tuple, object]]:
    """`reqs`: (module, prompt, max_tokens, delay in seconds) each. Returns, per request in
    order, the job's last event (`("done", [generation])` or `("error", ...)`) and the
    generation of `module.generate` on the prompt alone."""
    from shoulders.data.examples import Example
    from shoulders.serving.engine import Engine
    from shoulders.serving.jobs import CompletionJob, EventSink

    async def run():
        engine = Engine(lm, max_batch=max_batch, max_queue=max_queue)
        engine.start()

        async def one(module, prompt, max_tokens, delay):
            await asyncio.sleep(delay)
            job = CompletionJob(sink=EventSink(), module=module, prompts=[prompt], max_tokens=max_tokens,
                                token_ids=module.encode_inputs(lm, [Example(input=prompt, target="")]))
            engine.submit(job)
            while (ev := await job.sink.get())[0] not in ("done", "error"):
                pass
            return ev

        try:
            return await asyncio.gather(*[one(*r) for r in reqs])
        finally:
            engine.stop()

    events = asyncio.run(run())
    return [(ev, module.generate(lm, [prompt], max_new_tokens=max_tokens)[0][0])
            for ev, (module, prompt, max_tokens, _) in zip(events, reqs)]
