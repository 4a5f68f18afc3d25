"""The package's import graph, read with `ast` (issue #24): the library never reaches for
experiments, tools or the CLI, and no two modules need each other to load.

Both rules erode one convenient import at a time and no behaviour fails when they do:
a library folder that imports the toy world can no longer be read or used alone, and a
cycle works only as long as nobody changes which module is imported first.

Every import counts for the library rule, wherever it stands: at module level, inside a
function or method (however deeply nested), under `if TYPE_CHECKING:`, or as a string
that names a module for `importlib` (the module-type registry). Cycles are looked for
among module-level imports only: those run when the module loads, and moving an import
into the function that needs it is the usual way to break one.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "shoulders"
LIBRARY = ("backbone", "modules", "prompts", "reader", "recursion", "serving", "train", "data")
NOT_FOR_LIBRARY = ("toyworld", "experiments", "bench", "cli")
# `python -m shoulders` is the one entry point beside the `shoulders` script (none pending).
MAIN_BLOCK_PENDING: set[str] = set()


class Import(NamedTuple):
    source: str  # the importing module
    target: str  # the shoulders module it loads
    line: int
    scope: str  # "module" (runs at import), "function" (runs when called) or "typing" (never runs)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


MODULES = _modules()


def _existing(name: str) -> str:
    """The deepest module of a dotted name: `shoulders.x.attr` loads `shoulders.x`."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = source.split(".") if is_package else source.split(".")[:-1]
            anchor = ".".join(package[: len(package) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        # `from pkg import sub` loads the submodule when there is one, else an attribute of pkg
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    return sorted({_existing(n) for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")})


def _scope(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    """When the import runs: never under `if TYPE_CHECKING:`, only when called inside any
    function or method (however deep), else at import (class bodies and `try` included)."""
    scope, child = "module", node
    while (parent := parents.get(child)) is not None:
        if isinstance(parent, ast.If) and _is_type_checking(parent) and child in parent.body:
            return "typing"
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            scope = "function"
        child = parent
    return scope


def _named_module(text: str) -> str | None:
    """A string that is a whole module name (`shoulders.x.y` or `shoulders.x.y:Attr`), as
    `importlib.import_module` and the module-type registry take them; prose never matches."""
    name = text.partition(":")[0]
    return name if "." in name and name in MODULES and text.count(":") <= 1 else None


def imports_of(source: str, path: Path) -> list[Import]:
    """Every import statement in the file, found by `ast.walk` over the whole tree (so an
    import inside a method of a class inside a function counts too), and every string that
    names a shoulders module (an import by name, scope "dynamic")."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            scope = _scope(node, parents)
            found.extend(Import(source, t, node.lineno, scope) for t in _targets(node, source, is_package))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (name := _named_module(node.value)):
            found.append(Import(source, name, node.lineno, "dynamic"))
    return sorted(found, key=lambda imp: (imp.line, imp.target))


IMPORTS = [imp for name, path in MODULES.items() for imp in imports_of(name, path)]


def _within(name: str, folders: tuple[str, ...]) -> bool:
    return any(name == f"{PACKAGE}.{f}" or name.startswith(f"{PACKAGE}.{f}.") for f in folders)


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(SRC.parent)}:{imp.line}: {imp.source} -> {imp.target} ({imp.scope})"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _library_violations(imports: list[Import]) -> list[Import]:
    return [imp for imp in imports if _within(imp.source, LIBRARY) and _within(imp.target, NOT_FOR_LIBRARY)]


def test_the_walker_sees_every_kind_of_import():
    by_source = {(i.source, i.target, i.scope) for i in IMPORTS}
    assert ("shoulders", "shoulders.api", "module") in by_source  # from shoulders.api import load
    assert ("shoulders", "shoulders.reader.reader", "typing") in by_source  # under `if TYPE_CHECKING:`
    assert ("shoulders.cli.demo_cmd", "shoulders.experiments.demo", "function") in by_source
    assert ("shoulders.backbone.frozen", "shoulders.backbone.generation", "function") in by_source  # in a method
    assert ("shoulders.modules.registry", "shoulders.prompts.prompt_tuning.model", "dynamic") in by_source
    assert len(MODULES) > 100


SAMPLE = """
from typing import TYPE_CHECKING
import shoulders.toyworld.world
if TYPE_CHECKING:
    from shoulders.experiments import demo
try:
    from shoulders.bench import report
except ImportError:
    pass


class Reader:
    def build(self):
        from ..toyworld import tiny_lm


def outer():
    class Inner:
        def deep(self):
            import shoulders.experiments.sweep
    return lambda: importlib.import_module("shoulders.bench.serve")
"""


def test_the_library_rule_sees_imports_in_functions_methods_and_strings(tmp_path):
    """A made-up library module with an import of toyworld, experiments or bench in every
    place one can hide: the rule reports each, with the scope it runs in."""
    path = tmp_path / "sample.py"
    path.write_text(SAMPLE, encoding="utf-8")
    found = {(imp.target, imp.scope) for imp in _library_violations(imports_of("shoulders.reader.sample", path))}
    assert found == {
        ("shoulders.toyworld.world", "module"),
        ("shoulders.experiments.demo", "typing"),
        ("shoulders.bench.report", "module"),  # a `try` block runs at import
        ("shoulders.toyworld.tiny_lm", "function"),  # relative, in a method
        ("shoulders.experiments.sweep", "function"),  # in a method of a class inside a function
        ("shoulders.bench.serve", "dynamic"),  # a module name for importlib
    }


def test_no_import_cycle_among_shoulders_modules():
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        if imp.scope == "module" and imp.target != imp.source:
            edges[imp.source].add(imp.target)
    cycles = _cycles(edges)
    detail = [
        _where(imp) for cycle in cycles for imp in IMPORTS
        if imp.scope == "module" and imp.source in cycle and imp.target in cycle and imp.target != imp.source
    ]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles) + "\n" + "\n".join(detail)


def test_library_imports_no_experiment_tool_or_cli_code():
    bad = [_where(imp) for imp in _library_violations(IMPORTS)]
    assert not bad, "library modules that import experiments, tools or the CLI:\n" + "\n".join(bad)


def test_library_does_not_import_the_package_root():
    """`shoulders/__init__` loads the public API (half the package): a library module that
    needs `__version__` takes it from `shoulders._version`."""
    bad = [_where(imp) for imp in IMPORTS if _within(imp.source, LIBRARY) and imp.target == PACKAGE]
    assert not bad, "library modules that import the package root:\n" + "\n".join(bad)


def test_python_m_shoulders_is_the_only_module_entry_point():
    """Every command is a `shoulders` sub-command, so it shows in `shoulders --help`."""
    with_main = set()
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
                with_main.add(name)
        if path.name == "__main__.py":
            with_main.add(name)
    assert with_main - MAIN_BLOCK_PENDING == {"shoulders.__main__"}
