"""Dependencies run one way: no import cycle between the project's modules (squeezeflow/, assets/, pipelines/) nor
between its packages, domain layers below the lifecycle, the Dagster adapters above the domain with `assets` below
`pipelines` (pipelines may import assets, assets never import pipelines), and no Dagster anywhere in the domain
package. Imports inside functions count too (a late import only hides a cycle); imports under `if TYPE_CHECKING:`
do not. The import graph is squeezeflow.codeversion's, the one code versions are computed from."""

from __future__ import annotations

import ast
from pathlib import Path

from squeezeflow.codeversion import import_graph

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "squeezeflow"
PROJECT = ("squeezeflow", "assets", "pipelines")

# Lowest first. A unit (a subpackage or top-level module of squeezeflow, or one of the adapter packages) may import
# only units of its own or a lower layer.
LAYERS = [
    {"__init__", "errors", "naming", "io", "stats", "onnxio", "imports", "rows", "faults", "redact", "codeversion",
     "shims", "memory", "cores", "strict"},
    {"config"},
    {"data", "models"},
    {"training"},
    {"compression", "export"},
    {"runtimes"},
    {"targets"},
    {"gates", "tracking", "evaluate", "sweep", "selection", "yaml_schemas", "notify", "retention"},
    {"stages"},
    {"versioning"},
    {"workspace", "runlock", "stack", "fanout"},
    {"lifecycle", "summary", "scaffold", "reference"},
    {"assets"},  # the Dagster assets and checks, generated from the stage registry, and their resource
    {"pipelines"},  # the code location (definitions, jobs, schedules) and the CLI: they wire the assets together
]


def _unit(module: str) -> str:
    """squeezeflow.a.b -> 'a': a subpackage or a top-level module; any other package (assets.x) -> the package."""
    parts = module.split(".")
    if parts[0] != "squeezeflow":
        return parts[0]
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


def module_graph(root: Path = ROOT, packages=PROJECT) -> dict[str, set[str]]:
    """Every module of the packages under `root` -> the project modules it imports."""
    return import_graph(root, packages)


def unit_graph(root: Path = ROOT, packages=PROJECT) -> dict[str, set[str]]:
    """The module graph with each module replaced by its unit (imports within a unit dropped)."""
    graph: dict[str, set[str]] = {}
    for module, imported in module_graph(root, packages).items():
        src = _unit(module)
        graph.setdefault(src, set()).update(_unit(m) for m in imported)
        graph[src].discard(src)
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


def test_no_import_cycle_between_modules():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_packages():
    cycle = find_cycle(unit_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_graph_builder_reports_a_module_cycle(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg.b import g  # a late import still closes the cycle\n    return g\n",
        "pkg/b.py": "from . import a\n\ng = 1\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg import d\n",
        "pkg/d.py": "import pkg.c\n",  # c imports d for type checking only: no cycle
    })
    graph = module_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.c"} and graph["pkg.c"] == set()
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (tmp_path / "pkg/a.py").write_text("")
    assert find_cycle(module_graph(tmp_path, ("pkg",))) is None


def test_the_graph_builder_reports_a_package_cycle(tmp_path):
    _write(tmp_path, {
        "assets/__init__.py": "", "assets/stages.py": "from pipelines.resources import Resource\n",
        "pipelines/__init__.py": "", "pipelines/resources.py": "Resource = object\n",
        "pipelines/definitions.py": "from assets.stages import Resource\n",
    })
    assert find_cycle(module_graph(tmp_path, ("assets", "pipelines"))) is None
    assert find_cycle(unit_graph(tmp_path, ("assets", "pipelines"))) == ["assets", "pipelines", "assets"]


def test_every_unit_imports_only_its_own_or_lower_layers():
    level = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    graph = unit_graph()
    unplaced = set(graph) - set(level)
    assert not unplaced, f"place these in LAYERS: {sorted(unplaced)}"
    upward = [f"{src} -> {dst}" for src, dsts in graph.items() if src in level
              for dst in dsts if level[dst] > level[src]]
    assert not upward, f"imports that go up a layer: {upward}"


def test_no_dagster_in_the_domain_package():
    users = [str(f.relative_to(PACKAGE.parent)) for f in PACKAGE.rglob("*.py")
             if any(m == "dagster" or m.startswith("dagster.") or m.startswith("dagster_") for m in _imports(f))]
    assert users == []
