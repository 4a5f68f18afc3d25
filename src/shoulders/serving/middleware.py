"""The gate every request passes first: API key, then body size.

Pure ASGI on purpose. The key is checked before a byte of the body is read, so an
unauthenticated client cannot make the server buffer anything; the body is read here
(up to the limit) and replayed to the app, so the limit holds for chunked uploads too
(a Content-Length can be absent or lie). The whole body must arrive within
`body_timeout` seconds (else 408), so a client that sends the headers and then trickles
or withholds the body cannot hold a request open. After the replay, `receive` is the
client's own again, so a disconnect mid-stream still reaches the streaming response.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time

OPEN_PATHS = {"/health"}  # no key needed: load balancers probe it
CLOSE = [(b"connection", b"close")]  # after a 408: the rest of the body will not be read


async def send_error(send, status: int, message: str, type: str, code: str, headers: list | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": type, "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, *, api_key: str | None, max_body_bytes: int, body_timeout: float = 120.0):
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.max_body = max_body_bytes
        self.body_timeout = body_timeout

    def _authorized(self, scope) -> bool:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        needs_key = self.key and scope["path"] not in OPEN_PATHS and scope["method"] != "OPTIONS"  # preflights
        if needs_key and not self._authorized(scope):
            return await send_error(send, 401, "missing or invalid API key (send 'Authorization: Bearer KEY')",
                                    "authentication_error", "invalid_api_key", [(b"www-authenticate", b"Bearer")])
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_big = f"request body larger than {self.max_body} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                if int(length) > self.max_body:
                    return await send_error(send, 413, too_big, "invalid_request_error", "request_too_large")
            except ValueError:
                return await send_error(send, 400, "invalid Content-Length", "invalid_request_error", "bad_request")
        chunks, size = [], 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                return await send_error(send, 408, f"the request body did not arrive within {self.body_timeout:g} s",
                                        "invalid_request_error", "request_timeout", CLOSE)
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await send_error(send, 413, too_big, "invalid_request_error", "request_too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
