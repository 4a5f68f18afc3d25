"""Prefix caching of prompt-tuning prompts (serving.prompt_cache) and the idle
scheduler's admission window (serving.engine)."""
from __future__ import annotations

import asyncio

import torch

from shoulders.backbone.layout import KVPrefix, split_prefix
from shoulders.modules.base import ModuleCapabilities
from shoulders.prompts import PromptTuning, PromptTuningConfig
from shoulders.serving import prompt_cache
from shoulders.serving.kvbatch import DecodeBatch
from shoulders.serving.prompt_cache import PromptKVCache
from tests.serving_inprocess import greedy


def _module(lm, k: int = 6, seed: int = 3) -> PromptTuning:
    return PromptTuning.build(PromptTuningConfig(num_virtual_tokens=k, init="random", seed=seed), lm)


def test_cached_prompt_keys_decode_like_the_soft_prompt(lm):
    """Rows prefilled on the module's cached KV prefix get the logits and greedy tokens of
    rows that run the soft prompt itself, beside a row of another module."""
    mod, other = _module(lm, 6, 3), _module(lm, 2, 4)
    cache = PromptKVCache(lm)
    assert cache.enabled
    ids = lm.encode(["the cat", "a dog was born in paris and", "red"])
    soft = [mod.prompt, mod.prompt, other.prompt]
    cached = cache.rows(mod, [mod.prompt, mod.prompt], ids[:2]) + cache.rows(other, [other.prompt], ids[2:])
    assert all(isinstance(p, KVPrefix) for p in cached)
    with torch.no_grad():
        a, b = DecodeBatch.prefill(lm, soft, ids), DecodeBatch.prefill(lm, cached, ids)
        torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
        assert greedy(b, 8) == greedy(a, 8)


def test_computed_once_per_module_and_again_when_the_prompt_changes(lm):
    mod = _module(lm)
    cache = PromptKVCache(lm)
    ids = lm.encode(["the cat", "red"])
    first = cache.rows(mod, split_prefix(mod.prefix(lm, []), 2), ids)
    assert first[0] is first[1] and cache.rows(mod, [mod.prompt], ids[:1])[0] is first[0]
    with torch.no_grad():
        mod.prompt.add_(1.0)  # an optimizer step would do the same
    again = cache.rows(mod, [mod.prompt], ids[:1])[0]
    assert again is not first[0]
    assert not torch.equal(again.keys[0], first[0].keys[0])


def test_left_alone_where_it_would_not_be_the_same_computation(lm, monkeypatch):
    mod = _module(lm)
    ids = lm.encode(["the cat"])
    # an empty prompt: its next token is read at the prompt's last position
    assert PromptKVCache(lm).rows(mod, [mod.prompt], [[]])[0] is mod.prompt

    class InputDependent(PromptTuning):  # a type that does not declare one shared prompt
        capabilities = ModuleCapabilities(batchable=True)

    other = InputDependent(mod.config, lm.hidden_size)
    assert PromptKVCache(lm).rows(other, [other.prompt], ids)[0] is other.prompt
    monkeypatch.setattr(prompt_cache.kv, "takes_prefix", lambda cache: False)  # recurrent or linear layers
    off = PromptKVCache(lm)
    assert not off.enabled and off.rows(mod, [mod.prompt], ids)[0] is mod.prompt


def test_idle_engine_starts_requests_sent_together_in_one_batch(lm):
    """Five requests arriving 5 ms apart at an idle engine with a 0.2 s window: one prefill,
    so the first decode step already runs all five rows."""
    from shoulders.data.examples import Example
    from shoulders.serving.engine import Engine
    from shoulders.serving.jobs import CompletionJob, EventSink

    class Rows:
        def __init__(self):
            self.steps: list[int] = []

        def observe_batch(self, rows):
            self.steps.append(rows)

        def observe_queue(self, seconds):
            pass

        def add_tokens(self, n):
            pass

    mod = _module(lm)
    seen = Rows()

    async def run():
        engine = Engine(lm, max_batch=8, admit_wait=0.2, metrics=seen)
        engine.start()

        async def one(i):
            await asyncio.sleep(0.005 * i)
            job = CompletionJob(sink=EventSink(), module=mod, prompts=["the cat"], max_tokens=3, ignore_eos=True,
                                token_ids=mod.encode_inputs(lm, [Example(input="the cat", target="")]))
            engine.submit(job)
            while (ev := await job.sink.get())[0] not in ("done", "error"):
                pass
            return ev

        try:
            return await asyncio.gather(*[one(i) for i in range(5)])
        finally:
            engine.stop()

    events = asyncio.run(run())
    assert [e[0] for e in events] == ["done"] * 5
    assert seen.steps[0] == 5 and len({tuple(e[1][0].token_ids) for e in events}) == 1


def test_windowed_attention_configs_are_recognised():
    """A window counted in cache columns would cover other tokens once a KV prefix is padded
    apart from the row's tokens, so those families keep their soft vectors."""
    from transformers import GPTNeoConfig, LlamaConfig, MistralConfig, Qwen2Config

    from shoulders.serving.prompt_cache import local_attention

    assert local_attention(GPTNeoConfig())  # local layers: attention_types / window_size
    assert local_attention(MistralConfig(sliding_window=64))
    assert not local_attention(LlamaConfig())
    assert not local_attention(Qwen2Config(use_sliding_window=False, sliding_window=4096))
