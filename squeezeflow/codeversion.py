"""What a module really runs: the project modules it imports, read statically from its source.

The import graph is read from `import` and `from ... import` statements with `ast`, never by importing anything:

* imports inside functions count (a late import still runs that module's code); those under `if TYPE_CHECKING:` do
  not;
* `import a.b.c` counts `a.b.c` only: Python also runs the parent packages' `__init__`, but counting those would make
  every module depend on every sibling that the package's `__init__` imports. A package's `__init__` counts only
  where it is imported explicitly (`import a.b`, `from a.b import name` where `a.b.name` is not a submodule);
* `from a.b import c` counts the submodule `a.b.c` where there is one, otherwise `a.b`'s `__init__`; relative imports
  are resolved;
* a package `__init__` that imports all its modules by `pkgutil.iter_modules(__path__)` (a registry filled by its
  modules) imports every module of the package (`walk_packages`: of its subpackages too);
* only modules of the project count (`PACKAGES` under `ROOT`), never site-packages.

A code version is a hash of the sources of the closure, so editing a module that a stage never imports does not
change the stage's code version (and does not rerun it). A package named in a code version (a stage's `code=`)
stands for every module in it: code loaded by name at run time (a builder, a model factory) is out of the static
imports' sight. tests/squeezeflow/test_layers.py checks this same graph for cycles and upward imports.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the project: the folder holding PACKAGES
PACKAGES = ("squeezeflow", "assets", "pipelines")

_RAW: dict[Path, tuple[tuple[int, int], list[tuple]]] = {}


def module_files(root: Path | None = None, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages under `root`, by dotted name (a package by its own name: its `__init__.py`)."""
    root = Path(root or ROOT)
    files: dict[str, Path] = {}
    for package in packages:
        for f in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else ():
            files[".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = f
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: all but the bodies of `if TYPE_CHECKING:` (their `else:` runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _registers_modules(node: ast.AST) -> str | None:
    """'iter_modules' / 'walk_packages' for a `pkgutil.iter_modules(__path__)` style call, else None."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    if func in ("iter_modules", "walk_packages") and any(
            isinstance(a, ast.Name) and a.id == "__path__" for a in (*node.args, *(k.value for k in node.keywords))):
        return func
    return None


def _raw_imports(path: Path) -> list[tuple]:
    """The file's import statements as written: ("import", name), ("from", level, module, names) and
    ("registers", how); reparsed only when the file changed (a long-lived process sees edits)."""
    st = path.stat()
    key = (st.st_mtime_ns, st.st_size)
    cached = _RAW.get(path)
    if cached is None or cached[0] != key:
        found: list[tuple] = []
        for node in _runtime_nodes(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [("import", a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append(("from", node.level, node.module or "", tuple(a.name for a in node.names)))
            elif how := _registers_modules(node):
                found.append(("registers", how))
        cached = _RAW[path] = (key, found)
    return cached[1]


def _known(name: str, files: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is a project module."""
    parts = name.split(".")
    while parts:
        if (candidate := ".".join(parts)) in files:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, files: dict[str, Path]) -> set[str]:
    """The project modules that `module` (a key of `files`) imports, by the rules in this module's docstring."""
    is_package = files[module].name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str | None] = set()
    for entry in _raw_imports(files[module]):
        if entry[0] == "import":
            found.add(_known(entry[1], files))
        elif entry[0] == "from":
            _, level, name, names = entry
            if level:
                parts = package.split(".")
                if level - 1 >= len(parts):
                    continue  # beyond the top-level package: not ours
                name = ".".join(parts[:len(parts) - (level - 1)] + ([name] if name else []))
            for alias in names:
                submodule = f"{name}.{alias}"
                found.add(submodule if alias != "*" and submodule in files else _known(name, files))
        elif is_package:  # a registry package importing all its modules
            prefix = module + "."
            found.update(m for m in files if m.startswith(prefix)
                         and (entry[1] == "walk_packages" or "." not in m[len(prefix):]))
    found.discard(None)
    found.discard(module)
    return found  # type: ignore[return-value]


def import_graph(root: Path | None = None, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports, for every module of the packages under `root`."""
    files = module_files(root, packages)
    return {m: imports_of(m, files) for m in files}


def closure(modules: Iterable[str], graph: dict[str, set[str]]) -> set[str]:
    """The modules and everything they import, transitively (names not in the graph are kept as they are)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def code_files(modules: Iterable[str], root: Path | None = None, packages: Iterable[str] = PACKAGES) -> list[Path]:
    """The source files a code version hashes: the closure of the modules. A package named here stands for every
    module in it (as `Stage.code` declares it: code a registry may load by name, out of the static imports' sight);
    a module outside the project (a stage defined in a test) counts as its own file only."""
    files = module_files(root, packages)
    graph = {m: imports_of(m, files) for m in files}
    start: set[str] = set()
    outside: set[Path] = set()
    for mod in modules:
        if mod in files:
            start.add(mod)
            if files[mod].name == "__init__.py":
                start.update(m for m in files if m.startswith(mod + "."))
        else:  # as code versions always were: its file (a package: every .py file in it)
            origin = Path(importlib.import_module(mod).__file__)
            outside.update(origin.parent.rglob("*.py") if origin.name == "__init__.py" else [origin])
    return sorted({files[m] for m in closure(start, graph) if m in files} | outside)


def code_version(modules: Iterable[str], root: Path | None = None, packages: Iterable[str] = PACKAGES) -> str:
    """A hash of the sources (paths and contents) of `code_files(modules)`, in path order."""
    root = Path(root or ROOT)
    h = hashlib.sha256()
    for f in code_files(modules, root, packages):
        name = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]
