"""Dependencies run one way: no import cycle between squeezeflow's packages and modules, domain layers below the
lifecycle, and no Dagster anywhere in the domain package. Imports inside functions count too (a late import only
hides a cycle); imports under `if TYPE_CHECKING:` do not."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "squeezeflow"

# Lowest first. A unit may import only units of its own or a lower layer.
LAYERS = [
    {"errors", "naming", "io", "stats", "onnxio", "imports", "rows", "faults", "redact"},
    {"config"},
    {"data", "models"},
    {"training"},
    {"compression", "export"},
    {"runtimes"},
    {"targets"},
    {"gates", "tracking", "evaluate", "sweep", "selection", "yaml_schemas", "notify", "retention"},
    {"stages"},
    {"versioning"},
    {"workspace", "runlock"},
    {"lifecycle", "summary", "scaffold", "reference"},
]


def _unit(module: str) -> str:
    """squeezeflow.a.b -> 'a': a subpackage or a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for f in PACKAGE.rglob("*.py"):
        module = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        src = _unit(module)
        graph.setdefault(src, set())
        for imported in _imports(f):
            if imported.startswith("squeezeflow.") and _unit(imported) != src:
                graph[src].add(_unit(imported))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_inside_squeezeflow():
    cycle = find_cycle(unit_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_unit_imports_only_its_own_or_lower_layers():
    level = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    graph = unit_graph()
    unplaced = set(graph) - set(level) - {"__init__"}
    assert not unplaced, f"place these in LAYERS: {sorted(unplaced)}"
    upward = [f"{src} -> {dst}" for src, dsts in graph.items() if src in level
              for dst in dsts if level[dst] > level[src]]
    assert not upward, f"imports that go up a layer: {upward}"


def test_no_dagster_in_the_domain_package():
    users = [str(f.relative_to(PACKAGE.parent)) for f in PACKAGE.rglob("*.py")
             if any(m == "dagster" or m.startswith("dagster.") or m.startswith("dagster_") for m in _imports(f))]
    assert users == []
