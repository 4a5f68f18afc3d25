"""Refusals: every error is a JSON body {"error": {message, type, code}} with the right status,
and no request can name a path outside the modules directory."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import start_server

GOOD = "prompt_tuning-0"


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"} and err["message"]
    return err


def post(server, body=None, **kw) -> httpx.Response:
    return httpx.post(server.url + "/v1/completions", json=body, timeout=60, **kw)


def test_unknown_module_is_404(server):
    err = error(post(server, {"model": "no-such-module", "prompt": "x"}), 404)
    assert err["code"] == "model_not_found" and "no-such-module" in err["message"]
    error(httpx.get(server.url + "/v1/models/no-such-module"), 404)
    error(httpx.get(server.url + "/no/such/route"), 404)


@pytest.mark.parametrize("name", ["../x", "..", "%2e%2e", "%2e%2e%2fetc", "/etc/passwd", "a/b", "..\\x",
                                  "gpt2-module/../prompt_tuning-0", ".hidden", "", "x" * 200, "a\x00b"])
def test_path_like_model_names_are_refused(server, name):
    err = error(post(server, {"model": name, "prompt": "x"}), 400)
    assert err["code"] == "invalid_model_name"


@pytest.mark.parametrize("path", ["%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"])
def test_path_like_names_in_the_url_never_resolve(server, path):
    r = httpx.get(f"{server.url}/v1/models/{path}")
    assert r.status_code in (400, 404) and "error" in r.json()


def test_malformed_json_and_bad_fields_are_422(server):
    err = error(post(server, content=b'{"model": "x", "prompt": ', headers={"content-type": "application/json"}), 422)
    assert err["code"] == "invalid_json"
    for body in ({"model": GOOD}, {"model": GOOD, "prompt": "x", "max_tokens": 0},
                 {"model": GOOD, "prompt": "x", "temperature": -1}, {"model": GOOD, "prompt": []},
                 {"model": GOOD, "prompt": "x", "stop": ["a", "b", "c", "d", "e"]},
                 {"model": GOOD, "prompt": "x", "max_tokenz": 3}):
        assert error(post(server, body), 422)["code"] == "invalid_parameters"


def test_oversized_body_is_413(server):
    err = error(post(server, {"model": GOOD, "prompt": "x" * 70_000}), 413)
    assert err["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit must still hold
        yield b'{"model": "prompt_tuning-0", "prompt": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    error(httpx.post(server.url + "/v1/completions", content=chunks(), timeout=60), 413)


def test_unsupported_and_out_of_range_requests_are_400(server):
    assert error(post(server, {"model": GOOD, "prompt": "x", "echo": True}), 400)["code"] == "unsupported_parameter"
    assert error(post(server, {"model": GOOD, "prompt": "x", "logprobs": 2}), 400)["code"] == "unsupported_parameter"
    assert error(post(server, {"model": GOOD, "prompt": "x", "max_tokens": 100_000}), 400)["code"] == \
        "max_tokens_exceeded"
    assert error(post(server, {"model": GOOD, "prompt": "x", "n": 17}), 400)["code"] == "too_many_choices"
    # an empty prompt is fine when the module supplies a soft prefix
    assert post(server, {"model": GOOD, "prompt": "", "max_tokens": 2}).status_code == 200
    # 256-position backbone: soft prefix + prompt + 250 new tokens does not fit
    assert error(post(server, {"model": GOOD, "prompt": "the cat is here", "max_tokens": 250}), 400)["code"] == \
        "context_length_exceeded"


def test_answer_needs_a_reader(server):
    err = error(httpx.post(server.url + "/v1/answer", json={"model": GOOD, "question": "who?"}), 400)
    assert err["code"] == "not_a_reader" and "not a reader" in err["message"]
    error(httpx.post(server.url + "/v1/answer", json={"model": "nope", "question": "who?"}), 404)


# ------------------------------------------------ a second server: key and tight limits
@pytest.fixture(scope="module")
def tight(tiny_dirs, modules_dir, tmp_path_factory):
    srv = start_server(tiny_dirs, modules_dir, tmp_path_factory, "--max-batch", "1", "--max-queue", "1",
                       "--max-prompt-tokens", "8", "--max-body-bytes", "1000", "--rescan-interval", "0",
                       env={"SHOULDERS_API_KEY": "s3cret"})
    yield srv
    srv.stop()


def test_api_key_from_env_is_enforced(tight):
    body = {"model": GOOD, "prompt": "x", "max_tokens": 2}
    assert error(httpx.post(tight.url + "/v1/completions", json=body), 401)["type"] == "authentication_error"
    error(httpx.post(tight.url + "/v1/completions", json=body, headers={"Authorization": "Bearer wrong"}), 401)
    error(httpx.get(tight.url + "/v1/models", headers={"Authorization": "s3cret"}), 401)
    error(httpx.get(tight.url + "/metrics"), 401)
    ok = httpx.post(tight.url + "/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert httpx.get(tight.url + "/health").status_code == 200  # probes need no key
    # no key, no body read: a huge unauthenticated body is refused with 401, not 413
    error(httpx.post(tight.url + "/v1/completions", content=b"x" * 5000), 401)
    r = httpx.post(tight.url + "/v1/completions", content=b"x" * 5000, headers={"Authorization": "Bearer s3cret"})
    error(r, 413)


def test_prompt_token_limit(tight):
    r = httpx.post(tight.url + "/v1/completions", headers={"Authorization": "Bearer s3cret"},
                   json={"model": GOOD, "prompt": "the cat and the dog were born in paris", "max_tokens": 2})
    assert error(r, 400)["code"] == "context_length_exceeded"


def test_full_queue_is_429(tight):
    """One row running, one request waiting: the others are refused at once with 429."""
    body = {"model": GOOD, "prompt": "a", "max_tokens": 240, "ignore_eos": True, "temperature": 0}
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda _: httpx.post(tight.url + "/v1/completions", json=body, timeout=120,
                                                headers={"Authorization": "Bearer s3cret"}), range(8)))
    codes = sorted(r.status_code for r in rs)
    assert 429 in codes and 200 in codes and set(codes) <= {200, 429}, codes
    refused = next(r for r in rs if r.status_code == 429)
    assert error(refused, 429)["code"] == "queue_full" and refused.headers["retry-after"]
