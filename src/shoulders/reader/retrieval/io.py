"""Atomic writes: an interrupted build or query never leaves a half-written file behind.

The project's `shoulders.utils.fs` does the work (temp sibling, fsync, `os.replace`);
this adds a streaming JSONL writer (hit files can be large) and gives results the
usual permissions (temp files are created private, 0600/0700).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shoulders.utils.fs import atomic_dir, atomic_write_json, atomic_write_text

__all__ = ["atomic_dir", "atomic_write_json", "atomic_write_jsonl", "atomic_write_text", "make_readable"]


def make_readable(path: str | Path) -> None:
    """chmod a file to 0666 / a directory tree to 0777, less the umask (as a plain write would)."""
    mask = os.umask(0)
    os.umask(mask)
    path = Path(path)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Stream rows into a temp directory's file, then move it into place; returns the row count."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        make_readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
