"""What `shoulders serve` is told: limits, the modules directory, aliases. Checked once, at start."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from shoulders.serving.engine import ADMIT_WAIT
from shoulders.serving.registry import valid_name
from shoulders.utils.strict_model import StrictModel


class ServeSettings(StrictModel):
    modules_dir: Path = Field(..., description="directory of saved modules, one sub-directory each (rescanned)")
    api_key: str | None = Field(None, description="bearer token for every route but /health; None = open")
    max_batch: int = Field(32, ge=1, description="rows (prompts x n) decoded together")
    max_queue: int = Field(256, ge=1, description="requests waiting to join the batch; more get 429")
    admit_wait: float = Field(ADMIT_WAIT, ge=0, description="seconds of quiet an idle scheduler waits for more "
                              "arrivals before it prefills (requests sent together start together); 0 = none")
    max_prompt_tokens: int = Field(1024, ge=1, description="tokens per prompt, after the module's template; "
                                   "longer prompts get 400")
    max_new_tokens: int = Field(256, ge=1, description="the largest max_tokens a request may ask for")
    timeout: float = Field(120.0, gt=0, description="seconds from arrival to the last token; then 504")
    max_body_bytes: int = Field(1 << 20, ge=1, description="larger request bodies get 413")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; empty = CORS off")
    rescan_interval: float = Field(10.0, description="seconds between module directory scans; <= 0 = only on "
                                   "POST /admin/rescan")
    served_model_names: dict[str, str | None] = Field(
        default_factory=dict, description="alias -> module directory name, or None for the backbone itself "
        "(served with no module)")

    @model_validator(mode="after")
    def _aliases(self):
        for alias, target in self.served_model_names.items():
            spec = alias if target is None else f"{alias}={target}"
            bad = [n for n in (alias, target) if n is not None and not valid_name(n)]
            if bad:
                raise ValueError(f"served model name {spec!r}: {bad[0]!r} is not a valid model name (letters, "
                                 "digits, '.', '_', '-'; at most 128; no '..')")
            if target in self.served_model_names:
                raise ValueError(f"served model name {spec!r}: {target!r} is another alias; name a module directory")
        return self
