"""The package's layers import downward only, and no two modules import each other.

Layers, lowest first: foundation (config, paths, io, provenance) < data/ < model/ < run < train
< estimate/ < analysis/ < report/ < the faces (notebook, cli, runner, the package __init__).
A module may import from its own layer or below; the imports are read with ``ast`` (imports
inside functions count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rllc"

LAYERS = {
    "rllc.config": 0, "rllc.paths": 0, "rllc.io": 0, "rllc.provenance": 0, "rllc.numerics": 0,
    "rllc.model_name": 0,
    "rllc.data": 1, "rllc.model": 2, "rllc.run": 3, "rllc.train": 4, "rllc.estimate": 5,
    "rllc.analysis": 6, "rllc.report": 7,
    "rllc.notebook": 8, "rllc.cli": 8, "rllc.runner": 8, "rllc": 8,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").exists() or (PACKAGE.parent / rel / "__init__.py").exists()


def layer(name: str) -> int:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(f"{name} belongs to no layer; add it to LAYERS in {__file__}")


def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    """The rllc modules a module's source imports (relative imports resolved; ``from pkg import
    mod`` counts as pkg.mod)."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "rllc")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "rllc":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if is_module(sub) else target)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_layer_map_covers_every_module() -> None:
    for name in graph():
        layer(name)


def test_imports_point_down_only() -> None:
    uphill = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
              for m, targets in graph().items() for t in sorted(targets)
              if layer(t) > layer(m) and not (m == "rllc" or t == "rllc")]
    assert not uphill, "imports from a higher layer:\n" + "\n".join(uphill)


def test_no_module_imports_the_package_root() -> None:
    offenders = [m for m, targets in graph().items() if m != "rllc" and "rllc" in targets]
    assert not offenders, f"import the module you need, not `rllc` itself: {offenders}"


def test_no_import_cycles() -> None:
    full = graph()
    # a (sub)package __init__ importing its own modules is containment, not a cycle
    g = {m: {t for t in ts if t in full and not t.startswith(m + ".")} for m, ts in full.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source,bad", [
    ("from ..report import figures\n", True),
    ("from ..config import Config\n", False),
])
def test_the_checker_finds_an_uphill_import(source: str, bad: bool) -> None:
    """The rule can fail: a module of model/ importing report/ is reported."""
    targets = imports_in(source, "rllc.model.probe")
    assert bool([t for t in targets if layer(t) > layer("rllc.model.probe")]) == bad


MAX_LINES = 500  # one concern a module: a module past this holds two, split it (docs/layout.md)


def test_no_module_is_longer_than_the_house_limit() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
