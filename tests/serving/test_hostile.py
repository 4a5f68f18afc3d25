"""The server under hostility, over raw sockets and httpx against a real process with tight
limits (`hostile_server`: 2 rows, 4 waiting, 4 s per request, 4 KB bodies).

Malformed and oversized bodies, clients that trickle or withhold their body, clients that
vanish (before, during and after sending), a stream closed after its first event, floods
beyond the queue, and names that try to leave the modules directory. Every answer the
application gives is a JSON error with the right status, the server keeps serving, its
batch rows and queue go back to 0 and its memory and file descriptors stay bounded.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

GOOD, OTHER = "pt-0", "pt-1"
LONG = {"model": GOOD, "prompt": "the cat", "max_tokens": 200, "ignore_eos": True, "temperature": 0}


# ------------------------------------------------------------------ helpers
def connect(srv, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request_head(path: str, length: int | None = None, *, chunked: bool = False, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    elif length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode()


def post_bytes(body: bytes, path: str = "/v1/completions") -> bytes:
    return request_head(path, len(body)) + body


def read_response(s: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response (Content-Length or read-to-close bodies)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        while chunk := s.recv(65536):
            body += chunk
    return status, headers, body


def json_error(status: int, body: bytes, expected: set[int]) -> dict:
    assert status in expected, (status, body[:300])
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "code"} and err["message"], err
    return err


def health(srv) -> dict:
    return httpx.get(srv.url + "/health", timeout=10).json()


def settled(srv, seconds: float = 10.0) -> dict:
    """/health once no row runs and nothing waits (fails after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        h = health(srv)
        if (h["running_rows"], h["queue"]) == (0, 0) or time.monotonic() > deadline:
            assert (h["running_rows"], h["queue"]) == (0, 0), h
            return h
        time.sleep(0.05)


def metrics(srv) -> dict[str, float]:
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    return {k: float(v) for k, _, v in (ln.rpartition(" ") for ln in text.splitlines() if ln and ln[0] != "#")}


def requests_total(m: dict, model: str, status: int) -> float:
    return m.get(f'shoulders_requests_total{{model="{model}",endpoint="/v1/completions",status="{status}"}}', 0.0)


def still_serving(srv) -> None:
    r = httpx.post(srv.url + "/v1/completions", json={"model": GOOD, "prompt": "the cat", "max_tokens": 3,
                                                      "temperature": 0}, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length"), r.text


def server_proc(srv) -> psutil.Process:
    return psutil.Process(srv.proc.pid)


def fds_back_to(proc: psutil.Process, baseline: int, seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    while (n := proc.num_fds()) > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


# ------------------------------------------------------------------ bodies
MALFORMED = {
    "truncated JSON": b'{"model": "pt-0", "prompt": ',
    "not UTF-8": b'{"model": "pt-0", "prompt": "\xff\xfe\xfa"}',
    "a JSON array": b'[1, 2, 3]',
    "a JSON string": b'"pt-0"',
    "null": b"null",
    "empty": b"",
    "nested 2000 deep": b"[" * 2000 + b"]" * 2000,
    "NaN temperature": b'{"model": "pt-0", "prompt": "x", "temperature": NaN}',
    "Infinity top_p": b'{"model": "pt-0", "prompt": "x", "top_p": Infinity}',
    "lone surrogate in the prompt": b'{"model": "pt-0", "prompt": "a\\ud800b", "max_tokens": 2}',
    "lone surrogate in a stop": b'{"model": "pt-0", "prompt": "a", "stop": ["\\udfff"], "max_tokens": 2}',
    "seed beyond 64 bits": b'{"model": "pt-0", "prompt": "a", "seed": 100000000000000000000000, "temperature": 1}',
    "prompt is a number": b'{"model": "pt-0", "prompt": 7}',
    "token-id prompt": b'{"model": "pt-0", "prompt": [[1, 2, 3]]}',
    "model is an object": b'{"model": {"$ne": null}, "prompt": "x"}',
    "duplicate keys and junk": b'{"model": "pt-0", "model": "pt-1", "prompt": "x", "x": ' + b"1" * 500 + b"}",
    "500 prompts": json.dumps({"model": "pt-0", "prompt": ["a"] * 500}).encode(),
    "max_tokens as a string": b'{"model": "pt-0", "prompt": "x", "max_tokens": "lots"}',
    "trailing garbage": b'{"model": "pt-0", "prompt": "x"} {"again": 1}',
}


def test_malformed_bodies_get_json_errors_never_500(hostile_server):
    """Each body in MALFORMED, over one raw keep-alive connection: a 4xx JSON error (no 500,
    no stack trace), and the connection and the server keep working."""
    s = connect(hostile_server)
    codes = {}
    for name, body in MALFORMED.items():
        s.sendall(post_bytes(body))
        status, _, raw = read_response(s)
        codes[name] = (status, json_error(status, raw, {400, 413, 422})["code"])
    s.close()
    assert codes["truncated JSON"] == (422, "invalid_json")
    assert codes["not UTF-8"] == codes["nested 2000 deep"] == (400, "invalid_json")  # FastAPI's own parse error
    for name in ("NaN temperature", "Infinity top_p", "lone surrogate in the prompt", "lone surrogate in a stop",
                 "seed beyond 64 bits", "prompt is a number", "a JSON array", "model is an object"):
        assert codes[name] == (422, "invalid_parameters"), (name, codes[name])
    assert codes["500 prompts"] == (400, "too_many_choices")
    still_serving(hostile_server)


def test_a_seed_torch_refuses_fails_alone_in_the_engine(backbone):
    """Past the schema check (an in-process caller): the job fails by itself, the running
    row finishes, and nothing hangs."""
    from shoulders.backbone.sampling import SamplingParams
    from shoulders.data.examples import Example
    from shoulders.prompts import PromptTuning, PromptTuningConfig
    from shoulders.serving.engine import Engine
    from shoulders.serving.jobs import CompletionJob, EventSink

    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2, init="random", seed=0), backbone)
    ids = module.encode_inputs(backbone, [Example(input="the cat", target="")])

    async def run():
        engine = Engine(backbone, max_batch=4, max_queue=4)
        engine.start()
        try:
            good = CompletionJob(sink=EventSink(), module=module, prompts=["the cat"], token_ids=ids, max_tokens=120,
                                 ignore_eos=True)
            engine.submit(good)
            while engine.running_rows == 0:
                await asyncio.sleep(0.001)
            bad = CompletionJob(sink=EventSink(), module=module, prompts=["the cat"], token_ids=ids, max_tokens=4,
                                sampling=SamplingParams(1.0), seed=2**70)
            engine.submit(bad)
            bad_event = await asyncio.wait_for(bad.sink.get(), 10)
            good_event = await asyncio.wait_for(good.sink.get(), 30)
            for _ in range(1000):  # "done" is sent just before the row leaves the batch
                if engine.running_rows == 0:
                    break
                await asyncio.sleep(0.01)
            return bad_event, good_event, engine.running_rows
        finally:
            engine.stop()

    bad_event, good_event, rows = asyncio.run(run())
    assert bad_event[0] == "error" and bad_event[1].status == 500
    assert good_event[0] == "done" and len(good_event[1][0].token_ids) == 120
    assert rows == 0


def test_oversized_bodies_are_413_declared_or_not(hostile_server):
    # declared too big: refused before a byte of the body is sent (the client may be waiting on 100-continue)
    s = connect(hostile_server)
    s.sendall(request_head("/v1/completions", 10**12, extra="Expect: 100-continue\r\n"))
    status, _, raw = read_response(s)
    assert json_error(status, raw, {413})["code"] == "request_too_large"
    s.close()
    # chunked, no length at all, in small pieces: cut off at the limit
    s = connect(hostile_server)
    s.sendall(request_head("/v1/completions", chunked=True))
    sent = 0
    try:
        while sent < 64_000:
            piece = b'{"model": "pt-0", "prompt": "' if sent == 0 else b"x" * 500
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if sent > 4096 + 1000:
                break
        status, _, raw = read_response(s)
    except (BrokenPipeError, ConnectionResetError):  # the server may already have answered and closed
        pytest.fail("the server reset the connection instead of answering 413")
    assert json_error(status, raw, {413})["code"] == "request_too_large"
    s.close()
    # a prompt list whose body fits but whose prompts are too many; a model name longer than the body limit
    r = httpx.post(hostile_server.url + "/v1/completions", json={"model": "x" * 5000, "prompt": "x"}, timeout=30)
    assert json_error(r.status_code, r.content, {413})["code"] == "request_too_large"
    still_serving(hostile_server)


# ------------------------------------------------------------------ slow and vanished clients
def test_slow_and_stalled_bodies_time_out_with_408_while_others_are_served(hostile_server):
    """Headers then nothing, a body trickled a byte at a time, a chunked body that never
    ends: each gets a 408 JSON error after --timeout (4 s) and its connection is closed;
    meanwhile other clients are answered."""
    srv = hostile_server
    stop = threading.Event()
    stalled = connect(srv, timeout=15)
    stalled.sendall(request_head("/v1/completions", 300) + b'{"model": "pt-0", ')
    silent = connect(srv, timeout=15)
    silent.sendall(request_head("/v1/completions", 50))
    trickle = connect(srv, timeout=15)
    trickle.sendall(request_head("/v1/completions", 300))
    endless = connect(srv, timeout=15)
    endless.sendall(request_head("/v1/completions", chunked=True))

    def drip():  # for 3 s: then stop, so that nothing is in flight when the server closes
        while not stop.wait(0.2) and time.monotonic() < t0 + 3.0:
            for s, data in ((trickle, b" "), (endless, b"1\r\n \r\n")):
                try:
                    s.sendall(data)
                except OSError:
                    pass

    t0 = time.monotonic()
    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        for _ in range(3):
            still_serving(srv)
        served_in = time.monotonic() - t0
        results = []
        for s in (stalled, silent, trickle, endless):
            status, headers, raw = read_response(s)
            results.append((json_error(status, raw, {408})["code"], headers.get("connection")))
            s.settimeout(5)
            try:
                rest = s.recv(65536)
            except ConnectionResetError:
                rest = b""
            assert rest == b"", rest  # closed: the rest of that body is never read
        waited = time.monotonic() - t0
    finally:
        stop.set()
        for s in (stalled, silent, trickle, endless):
            s.close()
    assert results == [("request_timeout", "close")] * 4
    assert served_in < 4.0 and 3.5 < waited < 12.0, (served_in, waited)
    settled(srv)


def test_vanished_clients_leave_nothing_behind(hostile_server):
    """Connect and close; close mid-headers; close mid-body; send a whole request and close
    at once (plain and streaming): the server answers, its rows and queue go back to 0,
    it counts the abandoned requests (499) and its descriptors return to the baseline."""
    srv = hostile_server
    proc = server_proc(srv)
    settled(srv)
    fds = proc.num_fds()
    before = metrics(srv)
    body = json.dumps(LONG).encode()
    stream = json.dumps(dict(LONG, model=OTHER, stream=True)).encode()
    payloads = ([b""] * 30 + [b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-"] * 10
                + [request_head("/v1/completions", len(body)) + body[:20]] * 10
                + [post_bytes(body)] * 3 + [post_bytes(stream)] * 3)
    socks = []
    for data in payloads:
        s = connect(srv)
        if data:
            s.sendall(data)
        socks.append(s)
    deadline = time.monotonic() + 10  # let the whole requests reach the queue or the batch
    while time.monotonic() < deadline and sum(health(srv)[k] for k in ("running_rows", "queue")) < 2:
        time.sleep(0.02)
    for s in reversed(socks):  # the whole requests first, while they run: under load 200 tokens finish fast
        s.close()
    still_serving(srv)
    settled(srv)
    after = metrics(srv)

    def delta(status):
        return sum(requests_total(after, m, status) - requests_total(before, m, status) for m in (GOOD, OTHER))

    # the six whole requests were abandoned (or finished before their close was seen); +1: still_serving
    assert delta(499) >= 2 and delta(499) + delta(200) <= 6 + 1, (delta(499), delta(200))
    assert fds_back_to(proc, fds) <= fds + 2


def test_idle_connections_do_not_block_others(hostile_server):
    """100 connections that send part of their headers and then nothing: others are still
    answered at once; once closed, their descriptors are released."""
    srv = hostile_server
    proc = server_proc(srv)
    fds = proc.num_fds()
    socks = []
    for i in range(100):
        s = connect(srv)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"G")
        socks.append(s)
    try:
        t0 = time.monotonic()
        still_serving(srv)
        assert health(srv)["status"] == "ok" and time.monotonic() - t0 < 5.0
    finally:
        for s in socks:
            s.close()
    assert fds_back_to(proc, fds) <= fds + 2


def test_protocol_garbage_is_refused_and_the_server_survives(hostile_server):
    srv = hostile_server
    for data in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4,  # a TLS hello
                 b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 prior knowledge
                 b"GARBAGE\r\n\r\n", b"\x00" * 1000 + b"\r\n\r\n",
                 b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                 b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"):
        s = connect(srv)
        try:
            s.sendall(data)
            status, _, _ = read_response(s)
            assert 200 <= status < 500, status  # a refusal (or, for the big header, an answer), never a crash
        except (ConnectionError, OSError):
            pass  # h11 may simply close the connection
        finally:
            s.close()
    assert health(srv)["status"] == "ok"
    still_serving(srv)


def test_stream_closed_after_its_first_event_frees_its_row(hostile_server):
    """A stream of 200 tokens is closed after its first event while another request runs:
    the row leaves the batch at once (far fewer than 200 tokens are generated for it), the
    other request gets all its tokens, the close is counted as a 499 and both rows free."""
    srv = hostile_server
    settled(srv)
    before = metrics(srv)
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(httpx.post, srv.url + "/v1/completions", json=LONG, timeout=60)
        deadline = time.monotonic() + 10
        while health(srv)["running_rows"] == 0 and time.monotonic() < deadline and not other.done():
            time.sleep(0.01)
        s = connect(srv)
        s.sendall(post_bytes(json.dumps(dict(LONG, model=OTHER, stream=True)).encode()))
        buf = b""
        while b"data: {" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        s.close()
        r = other.result()
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 200, r.text
    settled(srv)
    after = metrics(srv)
    streamed = after["shoulders_generated_tokens_total"] - before["shoulders_generated_tokens_total"] - 200
    assert 1 <= streamed < 150, streamed
    assert requests_total(after, OTHER, 499) - requests_total(before, OTHER, 499) == 1
    assert requests_total(after, OTHER, 200) == requests_total(before, OTHER, 200)
    still_serving(srv)


# ------------------------------------------------------------------ floods
def test_flood_beyond_the_queue_gets_429_and_memory_stays_bounded(hostile_server):
    """Rounds of 150 concurrent requests against 2 rows + 4 waiting places: the excess gets
    a 429 JSON error with Retry-After at once, nothing crashes, the queue drains, the
    server keeps answering, and its RSS and descriptors do not grow round after round."""
    srv = hostile_server
    proc = server_proc(srv)
    body = dict(LONG, max_tokens=40)

    async def flood(n: int):
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*[client.post(srv.url + "/v1/completions", json=body) for _ in range(n)])

    fds = proc.num_fds()
    rss = []
    for _ in range(3):
        rs = asyncio.run(flood(150))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 429, 504}, codes
        assert codes.count(429) >= 50 and codes.count(200) >= 2, codes  # (504: a loaded machine)
        for r in rs:
            if r.status_code == 200:
                assert r.json()["usage"]["completion_tokens"] == 40
            else:
                err = json_error(r.status_code, r.content, {429, 504})
                assert err["code"] == ("queue_full" if r.status_code == 429 else "timeout")
                if r.status_code == 429:
                    assert r.headers["retry-after"] == "1" and err["type"] == "rate_limit_error"
        settled(srv)
        rss.append(proc.memory_info().rss)
    still_serving(srv)
    assert rss[-1] - rss[0] < 32 * 2**20, [f"{x / 2**20:.1f} MB" for x in rss]
    assert fds_back_to(proc, fds) <= fds + 2


def test_queue_forgets_clients_that_left_while_waiting(backbone):
    """The engine's queue holds at most max_queue live jobs; cancelled ones (their client
    left) are dropped when the next job arrives, not kept until the batch has room."""
    from shoulders.serving.engine import Engine, QueueFull
    from shoulders.serving.jobs import CompletionJob, EventSink

    async def run():
        engine = Engine(backbone, max_batch=2, max_queue=3)  # not started: nothing is ever admitted
        jobs = [CompletionJob(sink=EventSink(), token_ids=[[1]]) for _ in range(3)]
        for job in jobs:
            engine.submit(job)
        with pytest.raises(QueueFull):
            engine.submit(CompletionJob(sink=EventSink(), token_ids=[[1]]))
        for _ in range(50):  # clients arrive and leave while the batch is busy
            for job in jobs:
                job.cancel()
            assert engine.queue_length == 0
            jobs = [CompletionJob(sink=EventSink(), token_ids=[[1]]) for _ in range(3)]
            for job in jobs:
                engine.submit(job)
        return len(engine._waiting), engine.queue_length

    assert asyncio.run(run()) == (3, 3)


# ------------------------------------------------------------------ names
ESCAPES = ["../outside", "..", "../../etc/passwd", "%2e%2e", "%2e%2e%2foutside", "..%2Foutside", "/etc/passwd",
           "escape", "escape/../pt-0", "pt-0/../outside", "pt-0\x00", "pt-0\x00/../../outside", "\x00", "pt-0/",
           "./pt-0", ".pt-0", "pt-0 ", " pt-0", "pt-0\n", "PT-0", "pt\u20100", "p\u0074-0\u200b", "~/outside",
           "C:\\outside", "..\\outside", "x" * 129, "x" * 3500, "", "pt-0%00", "%00", "a" * 64 + "/" + "b" * 64]


def test_names_never_leave_the_modules_directory(hostile_server, hostile_modules):
    """Path-like, encoded, absolute, NUL-carrying, look-alike and very long names, as the
    `model` of completions and answers and in the URL: never served (400 or 404, JSON),
    never a metrics label; the module outside the directory (and its symlink) stays unseen."""
    srv = hostile_server
    outside = hostile_modules.parent / "outside"
    names = ESCAPES + [str(outside), str(outside) + "/", str(hostile_modules / ".." / "outside")]
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for i, name in enumerate(names):
            for path, body in (("/v1/completions", {"model": name, "prompt": "x", "max_tokens": 1}),
                               ("/v1/answer", {"model": name, "question": "x"}))[: 1 + i % 2]:
                r = client.post(path, json=body)
                err = json_error(r.status_code, r.content, {400, 404})
                assert err["code"] in ("invalid_model_name", "model_not_found"), (name, err)
    s = connect(srv)  # the same names in the URL path: percent-encoded, and raw where HTTP allows it
    for name in filter(None, names):
        targets = ["".join(f"%{b:02X}" for b in name.encode()).encode()]
        if all("\x21" <= c <= "\x7e" for c in name):
            targets.append(name.encode())
        for target in targets:
            s.sendall(b"GET /v1/models/" + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(s)
            if status == 307:  # a trailing slash: redirected to the name without it; follow it
                r = httpx.get(srv.url + httpx.URL(headers["location"]).raw_path.decode(), timeout=30)
                assert r.status_code in (400, 404) or r.json()["id"] in (GOOD, OTHER), (name, r.text)
                continue
            json_error(status, body, {400, 404})
    s.close()
    assert sorted(m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]) == [GOOD, OTHER]
    assert "outside" in httpx.get(srv.url + "/admin/modules").json()["skipped"]["escape"]
    labels = {k.split('model="')[1].split('"')[0] for k in metrics(srv) if k.startswith("shoulders_requests_total")}
    assert labels <= {GOOD, OTHER, "_unknown"}, labels
