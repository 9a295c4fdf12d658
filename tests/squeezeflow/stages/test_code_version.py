"""A stage's code version covers what it imports (squeezeflow.codeversion), not whole packages it never uses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from squeezeflow import codeversion
from squeezeflow.codeversion import closure, code_files, code_version, import_graph
from squeezeflow.stages import STAGES


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A copy of the project's packages that code versions are computed from (edit it freely)."""
    for package in codeversion.PACKAGES:
        shutil.copytree(codeversion.ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codeversion, "ROOT", tmp_path)
    return tmp_path


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_the_teachers_code_version_ignores_techniques_it_never_imports(project):
    teacher = STAGES["teacher"]
    before = teacher.code_version()
    _touch(project / "squeezeflow/compression/qat.py")
    _touch(project / "squeezeflow/stages/finetuned.py")  # another stage: the registry does not tie them together
    assert teacher.code_version() == before
    _touch(project / "squeezeflow/training/loop.py")
    assert teacher.code_version() != before


def test_the_teachers_code_files(project):
    teacher = STAGES["teacher"]
    files = {f.relative_to(project).as_posix() for f in code_files((teacher.run.__module__, *teacher.code))}
    assert {"squeezeflow/stages/teacher.py", "squeezeflow/stages/base.py", "squeezeflow/training/loop.py",
            "squeezeflow/models/vision.py"} <= files  # models is declared (`code=`): all of it, factories too
    assert "squeezeflow/compression/qat.py" not in files
    assert not {f for f in files if f.startswith("squeezeflow/stages/")} - {"squeezeflow/stages/teacher.py",
                                                                            "squeezeflow/stages/base.py"}


def test_the_closure_of_a_tiny_package(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "X = 1\n",
        "pkg/b.py": "from pkg.a import X\n",
        "pkg/c.py": "import json\n",
    })
    graph = import_graph(tmp_path, ("pkg",))
    assert graph == {"pkg": set(), "pkg.a": set(), "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert closure(["pkg.b"], graph) == {"pkg.a", "pkg.b"}
    assert closure(["pkg.c"], graph) == {"pkg.c"}
    before = code_version(("pkg.b",), tmp_path, ("pkg",))
    _touch(tmp_path / "pkg/c.py")
    assert code_version(("pkg.b",), tmp_path, ("pkg",)) == before
    _touch(tmp_path / "pkg/a.py")
    assert code_version(("pkg.b",), tmp_path, ("pkg",)) != before


def test_what_an_import_counts(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import X\n",
        "pkg/a.py": "X = 1\n",
        "pkg/b.py": "from pkg import a\n",  # a submodule: a, not the package's __init__
        "pkg/c.py": "from pkg import X\n",  # a name: the package's __init__
        "pkg/d.py": "def f():\n    from .sub import e  # late and relative\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/e.py": "from ..a import X\nimport pkg.sub\n",
        "pkg/f.py": "import typing\n\nif typing.TYPE_CHECKING:\n    import pkg.a\nelse:\n    import pkg.c\n",
        "pkg/g.py": "import pkg.sub.e\nimport numpy\n",  # not pkg nor pkg.sub: parent packages run, but do not count
        "reg/__init__.py": "import importlib, pkgutil\n\nfor m in pkgutil.iter_modules(__path__):\n"
                           "    importlib.import_module(f'{__name__}.{m.name}')\n",
        "reg/one.py": "", "reg/two.py": "import reg\n",
    })
    graph = import_graph(tmp_path, ("pkg", "reg"))
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg"}
    assert graph["pkg.d"] == {"pkg.sub.e"}
    assert graph["pkg.sub.e"] == {"pkg.a", "pkg.sub"}
    assert graph["pkg.f"] == {"pkg.c"}
    assert graph["pkg.g"] == {"pkg.sub.e"}
    assert graph["reg"] == {"reg.one", "reg.two"}  # a registry package imports every module of it
    assert code_files(("pkg.b",), tmp_path, ("pkg",)) == [tmp_path / "pkg/a.py", tmp_path / "pkg/b.py"]
    # a package named in a code version (a stage's `code=`) stands for every module in it
    assert set(code_files(("pkg.sub",), tmp_path, ("pkg",))) == {tmp_path / p for p in (
        "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/e.py")}


def test_a_module_outside_the_project_is_its_own_file():
    assert code_files((__name__,)) == [Path(__file__)]
