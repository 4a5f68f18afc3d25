"""The base of every config model: pydantic, unknown keys refused, assignments checked.

It lives here, below every library folder, so that a config anywhere (the backbone's
`GenerationConfig` included) can use it without importing the module protocol.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config model that rejects unknown keys, so a typo is an error, not a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _ordered_positive(value: tuple[int, int]) -> tuple[int, int]:
    lo, hi = value
    if not 1 <= lo <= hi:
        raise ValueError(f"expected (lo, hi) with 1 <= lo <= hi, got {value}")
    return value


# An inclusive count range drawn from with `random.randint(lo, hi)` (a JSON list of two
# ints is accepted): at least one, and lo <= hi.
CountRange = Annotated[tuple[int, int], AfterValidator(_ordered_positive)]
