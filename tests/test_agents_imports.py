"""The import graph of aegym and agents: one-way layering, no cycles.

Every module under ``aegym/`` and ``agents/`` is parsed with :mod:`ast`; every
``import`` and ``from ... import`` in it counts, wherever it stands (module level,
inside functions, under ``if TYPE_CHECKING``), because an import deferred into a
function still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aegym", "agents")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` (a module or ``module.attribute``) lives in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ours that ``module`` imports (package parents are not counted: a
    package's ``__init__`` running first is Python's doing, not an import edge)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            found = _resolve(target, known)
            if found is not None and found != module:
                out.add(found)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of aegym and agents it imports."""
    known = _modules()
    return {m: _imports(m, p, known) for m, p in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


GRAPH = import_graph()


def test_graph_sees_function_level_imports() -> None:
    # agents.__init__ imports agents.main only inside __getattr__.
    assert "agents.main" in GRAPH["agents"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_is_acyclic() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.split(".")[0] == "aegym"))
def test_aegym_never_imports_agents(module: str) -> None:
    bad = sorted(m for m in GRAPH[module] if m.split(".")[0] == "agents")
    assert not bad, f"{module} imports {bad}"


def test_agents_common_is_below_the_rest_of_agents() -> None:
    common = [m for m in GRAPH if m == "agents.common" or m.startswith("agents.common.")]
    assert common, "agents.common is missing"
    for module in common:
        bad = sorted(m for m in GRAPH[module] if m.split(".")[0] == "agents" and m not in common)
        assert not bad, f"{module} imports {bad} from outside agents.common"
