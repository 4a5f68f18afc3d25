"""The FastAPI application: one frozen backbone, every module in a directory, one scheduler.

Routes: `POST /v1/completions`, `POST /v1/chat/completions`, `GET /v1/models[/{model}]`,
`POST /v1/answer`, `GET /health`, `GET /metrics`, `POST /admin/rescan`, `GET /admin/modules`.
Every error is `{"error": {"message", "type", "code"}}` with its HTTP status, whatever raised it
(our checks, request validation, an unknown route, a bug).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoulders.serving import completions as comp
from shoulders.serving.engine import Engine
from shoulders.serving.jobs import ServingError
from shoulders.serving.metrics import Metrics
from shoulders.serving.middleware import Guard
from shoulders.serving.registry import ModuleRegistry
from shoulders.serving.schemas import AnswerRequest, ChatCompletionRequest, CompletionRequest
from shoulders.serving.settings import ServeSettings

log = logging.getLogger(__name__)


class State:
    def __init__(self, settings: ServeSettings, backbone):
        self.settings, self.backbone = settings, backbone
        self.metrics = Metrics()
        self.registry = ModuleRegistry(settings.modules_dir, backbone, settings.served_model_names)
        self.engine = Engine(backbone, max_batch=settings.max_batch, max_queue=settings.max_queue,
                             admit_wait=settings.admit_wait, metrics=self.metrics)

    def label(self, name) -> str:
        """A metrics label: the name of a loaded module, else a fixed placeholder."""
        return name if isinstance(name, str) and self.registry.get(name) else "_unknown"


def _error(status: int, message: str, type: str, code: str | None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "code": code}}, status_code=status,
                        headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServingError)
    async def _serving(request, e: ServingError):
        return _error(e.status, e.message, e.type, e.code, {"Retry-After": "1"} if e.status == 429 else None)

    def count_refusal(request, status: int) -> None:  # refused before the handler ran: no model known
        if request.url.path in ("/v1/completions", "/v1/chat/completions", "/v1/answer"):
            request.app.state.shoulders.metrics.count_request("_unknown", request.url.path, status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, e: RequestValidationError):
        count_refusal(request, 422)
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            err = errors[0]
            detail = (err.get("ctx") or {}).get("error", "")
            return _error(422, f"request body is not valid JSON: {detail}".rstrip(": "), "invalid_request_error",
                          "invalid_json")
        parts = [f"{'.'.join(str(x) for x in err.get('loc', ()) if x != 'body') or 'body'}: {err.get('msg')}"
                 for err in errors[:5]]
        return _error(422, "; ".join(parts), "invalid_request_error", "invalid_parameters")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        count_refusal(request, e.status_code)  # e.g. a body that is not UTF-8 (400)
        return _error(e.status_code, str(e.detail), "invalid_request_error" if e.status_code < 500 else "server_error",
                      {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}.get(e.status_code))

    @app.exception_handler(Exception)
    async def _bug(request, e: Exception):
        log.exception("unhandled error")
        return _error(500, f"internal error: {type(e).__name__}", "server_error", "internal_error")


def create_app(settings: ServeSettings, backbone) -> FastAPI:
    """The ASGI app for a loaded `FrozenLM`; modules are loaded at startup."""
    state = State(settings, backbone)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        backbone.info()  # computed once here, not raced by the rescan thread
        await asyncio.to_thread(state.registry.rescan)
        state.engine.start()
        state.registry.start_auto_rescan(settings.rescan_interval)
        log.info("serving %d module(s) on %s", len(state.registry.entries()), backbone.name_or_path)
        yield
        state.registry.stop()
        await asyncio.to_thread(state.engine.stop)

    app = FastAPI(title="shoulders", summary="one frozen backbone, many soft-prompt modules", lifespan=lifespan)
    app.state.shoulders = state
    _install_error_handlers(app)

    async def counted(endpoint: str, model, handler):
        try:
            response = await handler()
        except ServingError as e:
            state.metrics.count_request(state.label(model), endpoint, e.status)
            raise
        if not isinstance(response, StreamingResponse):  # streams count themselves when they end
            state.metrics.count_request(state.label(model), endpoint, response.status_code)
        return response

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        return await counted("/v1/completions", req.model, lambda: comp.completions(state, req, request))

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        return await counted("/v1/chat/completions", req.model, lambda: comp.chat_completions(state, req, request))

    @app.post("/v1/answer")
    async def answer(req: AnswerRequest, request: Request):
        return await counted("/v1/answer", req.model, lambda: comp.answer(state, req, request))

    def model_card(entry) -> dict:
        return {"id": entry.name, "object": "model", "created": entry.created, "owned_by": "shoulders",
                "module_type": entry.module_type, "batched": entry.batched, "backbone": backbone.name_or_path,
                "alias_of": entry.alias_of}

    @app.get("/v1/models")
    async def models():
        served = state.registry.entries() + state.registry.alias_entries()
        return {"object": "list", "data": [model_card(e) for e in served]}

    @app.get("/v1/models/{model}")
    async def model(model: str):
        return model_card(comp.lookup(state, model))

    @app.get("/health")
    async def health():
        return {"status": "ok", "backbone": backbone.name_or_path, "modules": len(state.registry.entries()),
                "queue": state.engine.queue_length, "running_rows": state.engine.running_rows}

    @app.get("/metrics")
    async def metrics():
        gauges = {
            "shoulders_queue_length": ("Requests waiting to join the batch.", state.engine.queue_length),
            "shoulders_running_rows": ("Rows in the running batch.", state.engine.running_rows),
            "shoulders_modules_loaded": ("Modules being served.", len(state.registry.entries())),
        }
        return PlainTextResponse(state.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    @app.post("/admin/rescan")
    async def rescan():
        return await asyncio.to_thread(state.registry.rescan)

    @app.get("/admin/modules")
    async def admin_modules():
        return {"modules": [model_card(e) for e in state.registry.entries()], "skipped": state.registry.skipped(),
                "aliases": {a: t or backbone.name_or_path for a, t in state.registry.aliases.items()}}

    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                       body_timeout=settings.timeout)
    if settings.cors_origins:  # added last = outermost: preflights and 401s get CORS headers
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app
