"""shoulders serve --backbone B --modules DIR: one frozen backbone, every module in DIR, over HTTP."""
from __future__ import annotations

import os

from shoulders.cli.common import add_output_args


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve every module of a directory over an OpenAI-compatible HTTP API",
                       description="Load one frozen backbone and every module directory in --modules that was "
                                   "trained on it; requests for different modules share each batched forward pass.")
    p.add_argument("--backbone", required=True, help="backbone hub id or directory")
    p.add_argument("--modules", required=True, help="directory whose sub-directories are modules (name = model id)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $SHOULDERS_API_KEY, "
                   "which keeps the key out of the process list)")
    p.add_argument("--max-batch", type=int, default=32, help="rows (prompts x n) decoded together")
    p.add_argument("--max-queue", type=int, default=256, help="requests waiting to join the batch; more get 429")
    p.add_argument("--admit-wait", type=float, default=None,
                   help="seconds of quiet an idle server waits for more arrivals before it starts them together "
                        "(default: 0.004; 0 = none)")
    p.add_argument("--max-prompt-tokens", type=int, default=1024, help="per prompt, after the module's template")
    p.add_argument("--max-new-tokens", type=int, default=256, help="largest max_tokens a request may ask for")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request, queue included; then 504")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413")
    p.add_argument("--cors-origin", action="append", default=[],
                   help="allow this browser origin (repeatable; CORS is off by default)")
    p.add_argument("--served-model-name", action="append", default=[], metavar="NAME[=MODULE]",
                   help="also serve module directory MODULE as NAME (what a client or UI expects to ask for); a "
                        "bare NAME serves the backbone itself, with no module; repeatable, listed by /v1/models")
    p.add_argument("--rescan-interval", type=float, default=10.0,
                   help="seconds between scans of --modules for new modules; 0 = only POST /admin/rescan")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="the server's (uvicorn's) log level (--quiet makes the default 'warning')")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import uvicorn

    from shoulders.backbone import FrozenLM
    from shoulders.cli.main import UserError
    from shoulders.errors import BackboneError, one_line
    from shoulders.serving import ServeSettings, create_app

    if not Path(args.modules).is_dir():
        raise UserError(f"--modules {args.modules}: not a directory")
    aliases: dict[str, str | None] = {}
    for spec in args.served_model_name:
        name, eq, module = spec.partition("=")
        if name in aliases:
            raise UserError(f"--served-model-name {name!r} given twice")
        aliases[name] = module if eq else None  # a bare NAME: the backbone itself
    optional = {} if args.admit_wait is None else {"admit_wait": args.admit_wait}  # else the settings' default
    try:
        settings = ServeSettings(
            modules_dir=Path(args.modules), api_key=args.api_key or os.environ.get("SHOULDERS_API_KEY") or None,
            max_batch=args.max_batch, max_queue=args.max_queue, **optional, max_prompt_tokens=args.max_prompt_tokens,
            max_new_tokens=args.max_new_tokens, timeout=args.timeout, max_body_bytes=args.max_body_bytes,
            cors_origins=args.cors_origin, rescan_interval=args.rescan_interval, served_model_names=aliases)
    except ValueError as e:
        raise UserError(one_line(e)) from None
    try:
        backbone = FrozenLM.from_pretrained(args.backbone, dtype=args.dtype, device=args.device,
                                            trust_remote_code=args.trust_remote_code)
    except (OSError, BackboneError) as e:  # not found / not a model directory: one line naming the flag
        raise UserError(f"--backbone {args.backbone}: {e}") from None
    app = create_app(settings, backbone)
    log_level = "warning" if getattr(args, "quiet", False) and args.log_level == "info" else args.log_level
    uvicorn.run(app, host=args.host, port=args.port, log_level=log_level, timeout_graceful_shutdown=5)
    return 0
