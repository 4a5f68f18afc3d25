"""The modules a server offers: every module directory under one root that fits its backbone.

A model name is a directory name and nothing else: it must match `NAME_RE` (no `/`, no
`..`, no leading dot), and requests only ever look names up in the loaded table, so no
request can make the server open a path. Directories are re-read when their module.json
or weights change (atomic saves rename the directory, so a half-written module is never
seen); a broken or mismatched one is skipped with its reason, logged once, and listed
by `GET /admin/modules`. Names starting with a dot (temporary directories of atomic
writes) are ignored silently.

Aliases (`--served-model-name ALIAS=MODULE`, or a bare `ALIAS` for the backbone itself
with no module) are fixed at startup: a client may name a module by what its UI expects,
and a directory named like an alias is skipped rather than silently hidden.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and ".." not in name


def is_batched(module) -> bool:
    """True when the module's rows can join the mixed batch, as its class declares
    (`capabilities.batchable`: a prefix per row, inputs that only need tokenising, the
    shared generation). Any other module (recursion with its own inference, a reader that
    retrieves and re-ranks) runs as its own job on the scheduler thread."""
    from shoulders.modules.base import ModuleCapabilities

    return getattr(type(module), "capabilities", ModuleCapabilities()).batchable


@dataclass
class Entry:
    name: str  # what requests call it: the directory name, or the alias
    module: Any
    module_type: str
    path: Path | None  # None: the bare backbone
    stamp: tuple
    created: int
    batched: bool
    alias_of: str | None = None  # the module directory (or backbone) an alias names


def bare_backbone(backbone):
    """The backbone with no module (no prefix, no template), for an alias of the backbone:
    a `SoftPromptModule`, so its rows join the mixed batch like any other."""
    from shoulders.modules.base import ModuleCapabilities, ModuleConfig, SoftPromptModule, TextFormat

    class BareBackbone(SoftPromptModule):
        module_type = "backbone"
        config_class = ModuleConfig
        capabilities = ModuleCapabilities(batchable=True)

        def prefix(self, backbone, examples):
            return None

    # the whole context for the input: the server's --max-prompt-tokens is the limit that applies
    return BareBackbone(ModuleConfig(text=TextFormat(max_input_tokens=backbone.max_context))).eval()


def _stamp(path: Path) -> tuple:
    """Changes whenever the directory is replaced or its files rewritten."""
    parts: list = [path.stat().st_ino]
    for f in ("module.json", "weights.safetensors"):
        try:
            st = (path / f).stat()
            parts += [st.st_mtime_ns, st.st_size]
        except OSError:
            parts += [None, None]
    return tuple(parts)


class ModuleRegistry:
    def __init__(self, root: str | Path, backbone, aliases: dict[str, str | None] | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{root}: modules directory not found")
        self.backbone = backbone
        self.aliases = dict(aliases or {})  # alias -> module directory name, None = the bare backbone
        self._bare = (Entry(backbone.name_or_path, bare_backbone(backbone), "backbone", None, (), int(time.time()),
                            True) if None in self.aliases.values() else None)
        self._entries: dict[str, Entry] = {}
        self._skipped: dict[str, tuple[tuple, str]] = {}  # name -> (stamp, reason)
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, name: str) -> Entry | None:
        """The entry a request's `model` names (an alias resolved to its target), or None."""
        if not valid_name(name):
            return None
        if name in self.aliases:
            target = self.aliases[name]
            entry = self._bare if target is None else self._entries.get(target)
            return None if entry is None else dataclasses.replace(entry, name=name, alias_of=entry.name)
        return self._entries.get(name)

    def entries(self) -> list[Entry]:
        """The loaded module directories (aliases not included)."""
        return sorted(self._entries.values(), key=lambda e: e.name)

    def alias_entries(self) -> list[Entry]:
        """The aliases whose target is being served."""
        return [e for e in (self.get(a) for a in sorted(self.aliases)) if e is not None]

    def skipped(self) -> dict[str, str]:
        return {name: reason for name, (_, reason) in sorted(self._skipped.items())}

    def rescan(self) -> dict:
        """Load new or changed module directories, drop removed ones; returns what changed."""
        with self._scan_lock:
            loaded, removed, seen = [], [], set()
            for child in sorted(self.root.iterdir()):
                name = child.name
                if name.startswith(".") or not child.is_dir():
                    continue
                seen.add(name)
                if not valid_name(name):
                    self._skip(name, (), f"invalid name (must match {NAME_RE.pattern} without '..')")
                    continue
                if name in self.aliases:
                    self._skip(name, (), "its name is a --served-model-name alias, which takes precedence")
                    continue
                if not child.resolve().is_relative_to(self.root):
                    self._skip(name, (), "resolves outside the modules directory")
                    continue
                try:
                    stamp = _stamp(child)
                except OSError as e:
                    self._skip(name, (), f"unreadable: {e}")
                    continue
                current = self._entries.get(name)
                if (current and current.stamp == stamp) or self._skipped.get(name, ((),))[0] == stamp:
                    continue
                entry, reason = self._load(name, child, stamp)
                with self._lock:
                    if entry is None:
                        self._entries.pop(name, None)
                    else:
                        self._entries[name] = entry
                        self._skipped.pop(name, None)
                        loaded.append(name)
                if reason:
                    self._skip(name, stamp, reason)
            with self._lock:
                for name in [n for n in self._entries if n not in seen]:
                    del self._entries[name]
                    removed.append(name)
                for name in [n for n in self._skipped if n not in seen]:
                    del self._skipped[name]
            for name in removed:
                log.info("module %s removed", name)
            return {"loaded": loaded, "removed": removed, "skipped": self.skipped(),
                    "modules": [e.name for e in self.entries()]}

    def _skip(self, name: str, stamp: tuple, reason: str) -> None:
        if self._skipped.get(name) != (stamp, reason):
            log.warning("module %s skipped: %s", name, reason)
        with self._lock:
            self._skipped[name] = (stamp, reason)

    def _load(self, name: str, path: Path, stamp: tuple) -> tuple[Entry | None, str | None]:
        from shoulders.modules.io import load_module, read_module_json

        try:
            meta = read_module_json(path)
            module = load_module(path, self.backbone)
        except Exception as e:  # any broken module is skipped, never fatal to the server
            return None, f"{type(e).__name__}: {e}"
        module.eval()
        log.info("module %s loaded (%s)", name, meta["module_type"])
        return Entry(name, module, meta["module_type"], path, stamp, int(time.time()), is_batched(module)), None

    # ------------------------------------------------------- periodic rescan
    def start_auto_rescan(self, interval: float) -> None:
        if interval <= 0 or self._thread is not None:
            return

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.rescan()
                except Exception:
                    log.exception("module rescan failed")

        self._thread = threading.Thread(target=loop, name="shoulders-rescan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
