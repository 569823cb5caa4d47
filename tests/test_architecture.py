"""The house rules of ``ARCHITECTURE.md``, checked on the source: rooms, import direction, sizes.

Every ``import`` of a liftinv module counts, also those inside functions (a lazy import that runs up a
layer is still an upward arrow).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> installed package name
SOURCES = {"liftinv": "liftinv", "operators": "liftinv.operators", "datasets": "liftinv.datasets"}
#: room -> rank; a module may import modules of its own room or of rooms with a lower rank
RANKS = {
    "liftinv.metrics": 0,
    "liftinv.files": 0,
    "liftinv.lifted": 1,
    "liftinv.operators": 2,
    "liftinv.datasets": 3,
    "liftinv.models": 4,
    "liftinv.training": 5,
    "liftinv.unrolled": 6,
    "liftinv.inversion": 6,
    "liftinv.commands": 7,
    "liftinv.cli": 7,
    "liftinv.__main__": 8,  # the entry point of python -m liftinv: imports the CLI
}
#: modules allowed to load modules by a string name (the lazy public facade, the CLI's command table,
#: the training method registry)
STRING_LOADERS = {"liftinv", "liftinv.cli", "liftinv.training.registry"}
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _room(module: str) -> str:
    for room in sorted(RANKS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return "liftinv"


def _imports(module: str, path: Path) -> set[str]:
    """liftinv modules imported anywhere in ``path`` (resolved to existing module names)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("liftinv"):
                found.add(name)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_modules_found():
    assert "liftinv.lifted.network" in MODULES and "liftinv.operators.tv" in MODULES


def test_no_upward_import():
    bad = []
    for module, targets in GRAPH.items():
        if module == "liftinv":  # the lazy facade re-exports every room
            continue
        for target in targets:
            src, dst = _room(module), _room(target)
            if target == "liftinv":
                continue  # the facade imports nothing at import time (``__version__``, lazy names)
            if src != dst and RANKS.get(dst, 99) >= RANKS.get(src, -1):
                bad.append(f"{module} ({src}) -> {target} ({dst})")
    assert not bad, "imports that run up or sideways across rooms:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = {m: {t for t in ts if t != "liftinv" and not m == "liftinv"} for m, ts in GRAPH.items()}
    graph.pop("liftinv", None)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is not a cycle through the submodule
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                if not any(b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    pytest.fail("import cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_loaded_by_string_name_outside_the_registries():
    bad = [
        m
        for m, p in MODULES.items()
        if m not in STRING_LOADERS and ("import_module(" in p.read_text() or "__import__(" in p.read_text())
    ]
    assert not bad, f"modules loading other modules by name: {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines (house limit {MAX_LINES}): split it by concern"
