"""The documentation: the MkDocs site builds with --strict (every link and anchor resolves), the README stays a
landing page, and every command it shows is one the CLI accepts."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import parser

PROJECT = Path(__file__).resolve().parents[1]
README = (PROJECT / "README.md").read_text()


def test_the_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    assert mkdocs.exists(), "mkdocs is not installed: it is in the dev extra (./sf test installs it)"
    proc = subprocess.run([str(mkdocs), "build", "--strict", "-d", str(tmp_path / "site")], cwd=PROJECT,
                          capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert "./sf run" in home and 'href="quickstart/' in home  # the README, its links made relative to docs/
    reference = (tmp_path / "site" / "reference" / "params" / "index.html").read_text()
    assert "notify.webhook_url" in reference


def test_the_readme_is_a_landing_page():
    lines = README.splitlines()
    assert len(lines) <= 120
    assert "./sf run" in "\n".join(lines[:20]) and "./sf test" in "\n".join(lines[:20])
    for link in re.findall(r"\]\((?!https?:)([^)#]+)", README):
        assert (PROJECT / link).exists(), link


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.split("#")[0].strip()]


@pytest.mark.parametrize("command", commands())
def test_every_readme_command_is_one_the_cli_accepts(command):
    words = shlex.split(command)
    assert words[0] in ("./sf", "squeezeflow"), command
    if words[:2] == ["./sf", "test"]:
        return  # pytest's own arguments
    if words[0] == "./sf" and len(words) == 1:
        words.append("run")  # ./sf alone runs the lifecycle
    args = parser().parse_args(words[1:])  # raises SystemExit on an unknown command or flag
    assert callable(args.fn)
