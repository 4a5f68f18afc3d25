"""The OpenAI-compatible API of a real server process: completions, streaming, the
`openai` client, and the core promise: a request in a mixed batch gets exactly what it
gets alone."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import MODULE_KINDS, PER_KIND

NAMES = [f"{kind}-{i}" for kind in MODULE_KINDS for i in range(PER_KIND)]


def complete(server, **body) -> dict:
    r = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def stream(server, **body) -> list:
    events = []
    with httpx.stream("POST", server.url + "/v1/completions", json=dict(body, stream=True), timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return events


def test_models_lists_matching_modules_and_explains_skips(server):
    ids = {m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
    assert set(NAMES) <= ids and "gpt2-module" not in ids and "empty-dir" not in ids
    skipped = httpx.get(server.url + "/admin/modules").json()["skipped"]
    assert "backbone" in skipped["gpt2-module"] and "module.json" in skipped["empty-dir"]
    card = httpx.get(server.url + f"/v1/models/{NAMES[0]}").json()
    assert card["id"] == NAMES[0] and card["object"] == "model" and card["batched"]


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_greedy_completion_equals_local_generate(server, local_modules, backbone, kind):
    name = f"{kind}-1"
    out = complete(server, model=name, prompt="the cat", max_tokens=8, temperature=0)
    assert out["object"] == "text_completion" and out["model"] == name and out["id"].startswith("cmpl-")
    assert isinstance(out["created"], int)
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] in ("stop", "length")
    ref = local_modules[name].generate(backbone, ["the cat"], max_new_tokens=8)[0][0]
    assert choice["text"] == ref.text
    assert out["usage"]["completion_tokens"] == len(ref.token_ids)
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + len(ref.token_ids)


def test_prompt_list_n_and_seeded_sampling(server, local_modules, backbone):
    body = dict(model=NAMES[0], prompt=["the cat", "a red dog"], n=2, max_tokens=6, temperature=1.2, top_p=0.9,
                seed=11)
    a, b = complete(server, **body), complete(server, **body)
    assert [c["index"] for c in a["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]  # seeded: reproducible
    ref = local_modules[NAMES[0]].generate(backbone, ["a red dog"], max_new_tokens=6, do_sample=True,
                                           temperature=1.2, top_p=0.9, seed=11)[0][0]
    assert a["choices"][2]["text"] == ref.text  # choice 0 of a prompt uses the seed itself


def test_stream_equals_non_stream(server):
    body = dict(model=NAMES[1], prompt=["the cat", "where is paris"], max_tokens=10, temperature=0)
    whole = complete(server, **body)
    events = stream(server, **body, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    texts, reasons = {0: "", 1: ""}, {}
    for c in chunks[:-1]:
        (ch,) = c["choices"]
        texts[ch["index"]] += ch["text"]
        if ch["finish_reason"]:
            reasons[ch["index"]] = ch["finish_reason"]
    assert [texts[0], texts[1]] == [c["text"] for c in whole["choices"]]
    assert [reasons[0], reasons[1]] == [c["finish_reason"] for c in whole["choices"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_stop_string_cuts_the_text(server):
    free = complete(server, model=NAMES[2], prompt="the dog", max_tokens=12, temperature=0)["choices"][0]
    text = free["text"]
    if len(text.strip()) < 4:
        pytest.skip("the random backbone stopped too early to pick a stop string")
    stop = text[2:4]
    cut = complete(server, model=NAMES[2], prompt="the dog", max_tokens=12, temperature=0, stop=[stop])["choices"][0]
    assert cut["finish_reason"] == "stop" and cut["text"] == text[: text.find(stop)]


def test_mixed_batch_identical_to_alone(server, local_modules, backbone):
    """Concurrent requests for different modules, prompts and lengths share batches; each
    greedy answer equals the same request served alone and the local `generate`."""
    prompts = ["the cat", "a dog was born in paris and", "red", "who is the actor of this film", "yes"]
    batched = {m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"] if m["batched"]}
    reqs = [dict(model=NAMES[i % len(NAMES)], prompt=prompts[i % len(prompts)], max_tokens=4 + 3 * (i % 5),
                 temperature=0, ignore_eos=i % 3 == 0 and NAMES[i % len(NAMES)] in batched) for i in range(15)]
    before = _batch_rows(server)
    with ThreadPoolExecutor(len(reqs)) as pool:
        together = list(pool.map(lambda b: complete(server, **b), reqs))
    after = _batch_rows(server)
    assert after[1] - before[1] > 0 and (after[0] - before[0]) / (after[1] - before[1]) > 1.0, "never batched"
    for body, got in zip(reqs, together):
        alone = complete(server, **body)
        assert got["choices"][0]["text"] == alone["choices"][0]["text"]
        if not body["ignore_eos"]:
            ref = local_modules[body["model"]].generate(backbone, [body["prompt"]], max_new_tokens=body["max_tokens"])
            assert got["choices"][0]["text"] == ref[0][0].text


def test_prefix_tuning_shares_batches_with_prompt_tuning_and_idpt(server, local_modules, backbone):
    """Rows with per-layer KV prefixes (prefix tuning) beside rows with soft vectors of
    other lengths (prompt tuning, ID-PT): every greedy answer equals the request alone."""
    names = [f"{kind}-{i}" for i in range(PER_KIND) for kind in ("prefix_tuning", "prompt_tuning", "idpt")]
    prompts = ["the cat", "a dog was born in paris and", "red", "who is the actor of this film"]
    reqs = [dict(model=name, prompt=prompts[i % len(prompts)], max_tokens=3 + 2 * (i % 4), temperature=0,
                 ignore_eos=True) for i, name in enumerate(names * 2)]
    before = _batch_rows(server)
    with ThreadPoolExecutor(len(reqs)) as pool:
        together = list(pool.map(lambda b: complete(server, **b), reqs))
    after = _batch_rows(server)
    assert (after[0] - before[0]) / (after[1] - before[1]) > 1.0, "never batched"
    for body, got in zip(reqs, together):
        alone = complete(server, **body)
        assert got["choices"][0]["text"] == alone["choices"][0]["text"], body
        assert got["usage"]["completion_tokens"] == body["max_tokens"]


def _batch_rows(server) -> tuple[float, float]:
    """(sum, count) of the rows-per-decode-step histogram."""
    text = httpx.get(server.url + "/metrics").text
    values = dict(line.split(" ") for line in text.splitlines() if line.startswith("shoulders_batch_rows_s")
                  or line.startswith("shoulders_batch_rows_c"))
    return float(values["shoulders_batch_rows_sum"]), float(values["shoulders_batch_rows_count"])


def test_openai_client(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    out = client.completions.create(model=NAMES[0], prompt="the cat", max_tokens=5, temperature=0)
    assert out.choices[0].finish_reason in ("stop", "length") and out.usage.total_tokens > 0
    text = "".join(c.choices[0].text for c in client.completions.create(
        model=NAMES[0], prompt="the cat", max_tokens=5, temperature=0, stream=True) if c.choices)
    assert text == out.choices[0].text
    assert NAMES[0] in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-module", prompt="x", max_tokens=2)


def _metric(server, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in httpx.get(server.url + "/metrics").text.splitlines()
               if line.startswith(prefix))


def test_client_leaving_mid_stream_frees_its_rows(server):
    import time

    left = 'shoulders_requests_total{model="prompt_tuning-0",endpoint="/v1/completions",status="499"}'
    before, tokens = _metric(server, left), _metric(server, "shoulders_generated_tokens_total")
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60, json=dict(
            model=NAMES[0], prompt="the cat", max_tokens=240, temperature=0, ignore_eos=True, stream=True)) as r:
        next(r.iter_lines())  # one chunk, then hang up
    deadline = time.monotonic() + 20
    while (httpx.get(server.url + "/health").json()["running_rows"] or _metric(server, left) == before) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(server.url + "/health").json()["running_rows"] == 0
    assert _metric(server, left) == before + 1  # the server saw the client leave
    assert _metric(server, "shoulders_generated_tokens_total") - tokens < 240  # and stopped generating for it
    assert complete(server, model=NAMES[0], prompt="a", max_tokens=2)["choices"]


def test_new_module_directory_is_served_without_restart(server, modules_dir, backbone):
    from shoulders.modules import save_module
    from tests.serving.conftest import _prompt_tuning

    import shutil
    import time

    try:
        save_module(_prompt_tuning(backbone, 7, modules_dir), modules_dir / "added-now", backbone)
        assert "added-now" in httpx.post(server.url + "/admin/rescan").json()["modules"]
        assert complete(server, model="added-now", prompt="a", max_tokens=2)["model"] == "added-now"
        save_module(_prompt_tuning(backbone, 8, modules_dir), modules_dir / "added-later", backbone)
        deadline = time.monotonic() + 20  # the periodic rescan (every 0.5 s) picks this one up
        while httpx.get(server.url + "/v1/models/added-later").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.get(server.url + "/v1/models/added-later").status_code == 200
    finally:
        shutil.rmtree(modules_dir / "added-now", ignore_errors=True)
        shutil.rmtree(modules_dir / "added-later", ignore_errors=True)
    # gone after a rescan (the explicit one, or the periodic one that may have run first)
    assert "added-now" not in httpx.post(server.url + "/admin/rescan").json()["modules"]
    assert httpx.get(server.url + "/v1/models/added-now").status_code == 404


def test_health_and_metrics(server):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["modules"] >= len(NAMES)
    text = httpx.get(server.url + "/metrics").text
    for series in ("shoulders_requests_total{", "shoulders_batch_rows_bucket{", "shoulders_queue_seconds_count",
                   "shoulders_generated_tokens_total", "shoulders_generated_tokens_per_second"):
        assert series in text
    assert 'model="_unknown"' in text or "status=\"200\"" in text
