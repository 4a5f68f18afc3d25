"""Names a package exports but imports on first use (PEP 562 module `__getattr__`).

`shoulders` and `shoulders.prompts` export classes whose modules pull in heavy libraries
(the reader: bm25s, faiss, scipy) that `import shoulders`, and so every CLI command, should
not pay for until one of them is used.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping


def lazy_exports(package: str, names: dict[str, str],
                 namespace: MutableMapping) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `names` maps each exported name to the
    module that defines it; the first access imports it and caches it in `namespace`."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value  # imported once
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
