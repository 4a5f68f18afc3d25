"""Modules that cannot join the mixed batch (their own `generate`, or a reader's `answer`)
run as their own job; in-process app (TestClient), fake modules."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from shoulders.modules import registry, save_module
from shoulders.serving import ServeSettings, create_app
from tests.serving.fakes import FakeConfig, FakeReader, FakeRecursion


@pytest.fixture(scope="module")
def client(backbone, tmp_path_factory):
    registry.register("fake_recursion", "tests.serving.fakes:FakeRecursion")
    registry.register("fake_reader", "tests.serving.fakes:FakeReader")
    root = tmp_path_factory.mktemp("call_modules")
    save_module(FakeRecursion(FakeConfig()), root / "rec", backbone)
    save_module(FakeReader(FakeConfig()), root / "reader", backbone)
    save_module(FakeReader(FakeConfig(delay=3.0)), root / "slow-reader", backbone)
    settings = ServeSettings(modules_dir=root, timeout=1.0, rescan_interval=0)
    with TestClient(create_app(settings, backbone)) as c:
        yield c
    for name in ("fake_recursion", "fake_reader"):
        registry.MODULE_TYPES.pop(name, None)


def test_own_generate_module_is_served_through_completions(client):
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert cards["rec"]["batched"] is False
    out = client.post("/v1/completions", json={"model": "rec", "prompt": ["ab", "cd"], "n": 2, "max_tokens": 4})
    assert out.status_code == 200, out.text
    assert [(c["index"], c["text"]) for c in out.json()["choices"]] == [(0, "ab|ab"), (1, "ab|ab"), (2, "cd|cd"),
                                                                        (3, "cd|cd")]
    with client.stream("POST", "/v1/completions", json={"model": "rec", "prompt": "xy", "stream": True}) as r:
        lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]" and json.loads(lines[0])["choices"][0]["text"] == "xy|xy"


def test_reader_answers(client):
    r = client.post("/v1/answer", json={"model": "reader", "question": "capital of france?", "max_tokens": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "answer" and body["answer"] == "paris" and body["scores"] == [0.9]
    assert body["passages"] == ["passage about capital of france?"] and body["max_new_tokens"] == 5
    r = client.post("/v1/answer", json={"model": "rec", "question": "x"})
    assert r.status_code == 400 and "not a reader" in r.json()["error"]["message"]


def test_request_timeout_is_504(client):
    r = client.post("/v1/answer", json={"model": "slow-reader", "question": "x"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"


def test_cors_is_off_unless_asked(client, backbone, tmp_path):
    r = client.get("/health", headers={"Origin": "https://ui.example"})
    assert "access-control-allow-origin" not in r.headers
    settings = ServeSettings(modules_dir=tmp_path, rescan_interval=0, api_key="k",
                             cors_origins=["https://ui.example"])
    with TestClient(create_app(settings, backbone)) as c:
        pre = c.options("/v1/completions", headers={"Origin": "https://ui.example",
                                                    "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://ui.example"
        denied = c.get("/v1/models", headers={"Origin": "https://ui.example"})  # no key: 401 the browser can read
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://ui.example"
        other = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_module_directories_outside_the_root_are_not_loaded(backbone, tmp_path):
    from shoulders.prompts import PromptTuning, PromptTuningConfig
    from shoulders.serving import ModuleRegistry

    outside = tmp_path / "outside"
    save_module(PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2), backbone), outside / "m", backbone)
    root = tmp_path / "root"
    save_module(PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2), backbone), root / "ok", backbone)
    (root / "link").symlink_to(outside / "m")
    (root / "bad name!").mkdir()
    reg = ModuleRegistry(root, backbone)
    summary = reg.rescan()
    assert summary["modules"] == ["ok"]
    assert "outside" in summary["skipped"]["link"] and "invalid name" in summary["skipped"]["bad name!"]
    assert reg.get("../outside/m") is None and reg.get("link") is None


def test_a_reader_is_never_encoded_on_the_event_loop():
    """A reader's encode_inputs retrieves and re-ranks: it must run as its own job, on the
    scheduler thread, not inside the request handler."""
    from shoulders.prompts import PromptTuning
    from shoulders.reader.reader import Reader
    from shoulders.serving.registry import is_batched

    assert not is_batched(Reader.__new__(Reader))
    assert is_batched(PromptTuning.__new__(PromptTuning))
