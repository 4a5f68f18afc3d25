"""Whether a progress bar shows: the caller's wish and the user's --no-progress.

tqdm reads TQDM_DISABLE (which `--no-progress` sets, and worker processes inherit) only for
bars created without an explicit `disable`; ours pass one, so they ask here instead.
"""
from __future__ import annotations

import os


def bar_disabled(progress: bool = True) -> bool:
    """True when the caller wants no bar or the user switched bars off (TQDM_DISABLE)."""
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


__all__ = ["bar_disabled"]
