"""The base of every config model: pydantic, unknown keys refused, assignments checked.

It lives here, below every library folder, so that a config anywhere (the backbone's
`GenerationConfig` included) can use it without importing the module protocol.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config model that rejects unknown keys, so a typo is an error, not a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
