"""The layers hold (import-linter, the contracts in pyproject.toml), and the check bites.

`.ci/run` runs `lint-imports` before the tests as well; this test also proves that a wrong
import fails it, on a copy of the packages with one bad import added.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ioc", "ingest", "camera", "dashboards")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINT, str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=300)


def copy_packages(dest: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "static", "data"))


def test_the_layers_hold() -> None:
    done = lint(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " 0 broken" in done.stdout
    # every module is in the graph: a folder without __init__.py (a namespace package) would
    # be skipped silently, and with it every import its modules make
    folders = {p.parent for name in PACKAGES for p in (REPO / name).rglob("*.py") if "__pycache__" not in p.parts}
    assert not sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").exists())


@pytest.mark.parametrize("module, bad_import, contract", [
    ("ioc/core/settings.py", "import camera.service", "Layers"),                  # the core reaching up
    ("ingest/rules.py", "import ioc.serve.wall.hub", "Layers"),                   # a service into another
    ("ioc/serve/api/app.py", "from ioc.extras.demo import run", "Only the command"),
    ("ioc/extras/demo/run.py", "import ingest.service", "extras import only"),
    ("ioc/serve/wall/hub.py", "import cv2", "Video libraries"),
    ("ioc/serve/api/routes_recordings.py", "import av", "Video libraries"),  # only export.py remuxes
])
def test_a_wrong_import_breaks_the_build(tmp_path: Path, module: str, bad_import: str, contract: str) -> None:
    copy_packages(tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}  # noqa\n", encoding="utf-8")
    done = lint(tmp_path)
    assert done.returncode != 0, done.stdout[-3000:]
    # "... BROKEN", or "... BROKEN (1 ignored import)" for a contract with a listed exception
    broken = [line for line in done.stdout.splitlines() if re.search(r" BROKEN( \(\d+ ignored imports?\))?$", line)]
    assert any(contract in line for line in broken), done.stdout[-3000:]


def test_the_readme_table_matches_the_tree() -> None:
    """"What is here" names only paths that exist, and every folder of `ioc/` and `ioc/core/`."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## What is here"):]
    table = table[: table.index("\n## ", 5)]
    named = {p.rstrip("/") for row in table.splitlines() if row.startswith("| `")
             for p in __import__("re").findall(r"`([a-z_./]+)`", row.split("|")[1])}
    # a bare file name in a row stands beside the path before it (`ioc/core/accounts.py`, `passwords.py`)
    paths = set()
    for p in named:
        paths.add(p if "/" in p else next((q.rsplit("/", 1)[0] + "/" + p for q in named if q.endswith(".py") and "/" in q
                                           and (REPO / q.rsplit("/", 1)[0] / p).exists()), p))
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"
    folders = {str(d.relative_to(REPO)) for base in ("ioc", "ioc/core") for d in (REPO / base).iterdir()
               if d.is_dir() and (d / "__init__.py").exists()}
    unnamed = sorted(f for f in folders if not any(p == f or p.startswith(f + "/") for p in paths))
    assert not unnamed, f"folders the README's table does not mention: {unnamed}"
