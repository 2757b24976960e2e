"""docker/: the compose file, the Dockerfile, the setup job and the health checks.

No Docker engine runs on the development machines, so nothing is built or started here.
These tests check that what the files name exists in the code (`ioc` subcommands and
their flags, IOC_* settings, service accounts, scripts in the image), that each service's
settings load, and that the stack is wired as the README says. When a Compose client is
installed (`docker compose` or `docker-compose`), it validates the file against the
Compose schema too.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ioc.cli.main import build_parser
from ioc.core.settings import Settings, load_settings, parse_mqtt_url, parse_shard

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
IOC_IMAGE_SERVICES = ("setup", "ingest-0", "ingest-1", "cameras", "api", "cli")
LONG_RUNNING = ("ingest-0", "ingest-1", "cameras", "api")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")


# -- helpers ----------------------------------------------------------------------------
def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def filled_env() -> dict[str, str]:
    """docker/.env as an operator would fill it: every empty secret set."""
    env = env_example()
    for key, value in env.items():
        if not value and any(w in key for w in SECRET_WORDS):
            env[key] = f"{key.lower().replace('_', '')}0123456789abcdef0123456789"
    return env


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message} and $$, over parsed YAML."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.groups()
        got = env.get(name, "")
        if op == "?" and not got:
            raise KeyError(f"${{{name}}} is required: {arg}")
        return got or (arg if op == "-" else "")

    return _VAR.sub(one, value)


def compose_text() -> str:
    return (DOCKER / "compose.yaml").read_text(encoding="utf-8")


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(compose_text())
    return interpolate(raw, filled_env() if env is None else env)


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ioc_healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_ioc(argv: list[str]) -> None:
    """Fail the test, with argparse's message, unless `ioc ARGV` is a valid command line."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`ioc {shlex.join(argv)}` is not a valid ioc command line (exit {exc.code})")


def setup_accounts() -> dict[str, str]:
    """name -> role of the service accounts docker/setup.sh creates."""
    text = (DOCKER / "setup.sh").read_text(encoding="utf-8")
    return dict(re.findall(r"^ensure_account (\S+) (\S+) ", text, flags=re.MULTILINE))


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# -- the compose file ---------------------------------------------------------------------
def test_services_start_in_order_and_report_health() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "setup", "broker", *LONG_RUNNING, "cli"}
    dep = {name: {k: v["condition"] for k, v in s.get("depends_on", {}).items()} for name, s in services.items()}
    assert dep["setup"] == {"db": "service_healthy"}
    assert dep["broker"] == {"setup": "service_completed_successfully"}
    for name in LONG_RUNNING:
        assert dep[name] == {"db": "service_healthy", "setup": "service_completed_successfully",
                             "broker": "service_healthy"}, name
    for name in ("db", "broker", *LONG_RUNNING):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["setup"]["restart"] == "no"
    assert services["cli"]["profiles"] == ["cli"]  # not started by `up`
    assert "timescale/timescaledb" in services["db"]["image"]
    assert services["broker"]["image"].startswith("eclipse-mosquitto:2")
    published = {p.split(":")[-1] for p in services["api"]["ports"]}
    assert published == {"8080", "8081"}


def test_every_command_is_a_real_ioc_command_line() -> None:
    services = compose()["services"]
    health = load_healthcheck()
    for name in IOC_IMAGE_SERVICES:
        service = services[name]
        if "entrypoint" not in service and "command" in service:
            parse_ioc(service["command"])
    assert services["setup"]["entrypoint"] == ["ioc-setup"]
    for name in LONG_RUNNING:
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "ioc-healthcheck"] and test[2] in health.CHECKS, (name, test)
    parse_ioc(["ingest", "--shard", "1/2", "--worker-id", "x"])  # the flags the comments name


def test_every_ioc_variable_is_a_setting() -> None:
    known = {f"IOC_{name.upper()}" for name in Settings.model_fields} | {"IOC_SETTINGS_FILE"}
    for path in ("compose.yaml", ".env.example", "setup.sh", "healthcheck.py"):
        used = set(re.findall(r"\bIOC_[A-Z0-9_]+", (DOCKER / path).read_text(encoding="utf-8")))
        unknown = sorted(used - known)
        assert not unknown, f"docker/{path} uses IOC_ variables that ioc/core/settings.py does not know: {unknown}"


def test_each_service_loads_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    accounts = setup_accounts()
    assert accounts == {"svc-ingest": "ingest", "svc-camera": "camera", "svc-api": "api"}
    role_of = {"ingest-0": "ingest", "ingest-1": "ingest", "cameras": "camera", "api": "api"}
    shards: list[tuple[int, int]] = []
    workers = set()
    for name in IOC_IMAGE_SERVICES:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        for key in list(os.environ):
            if key.startswith("IOC_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()  # raises, naming the setting, on a bad value
        db = settings.require_database_url()
        assert db.endswith("@db:5432/ioc") and settings.storage_mode == "timescale", name
        if name in role_of:
            target = parse_mqtt_url(settings.mqtt_url or "")
            # the services' listener (service accounts only, client ids of their own), never
            # the agencies' one, where a client id is forced to the user name
            assert (target.host, target.port) == ("broker", 1884), name
            assert accounts.get(target.username or "") == role_of[name], f"{name} logs in as {target.username}"
        if name.startswith("ingest-"):
            shards.append(parse_shard(settings.ingest_shard))
            workers.add(settings.ingest_worker_id)
        if name == "api":
            assert settings.require_jwt_secret() and settings.api_host == "0.0.0.0" and settings.api_port == 8080
    # the workers split the agencies: shards 0..N-1 of the same N, one fixed client id each
    assert sorted(shards) == [(i, len(shards)) for i in range(len(shards))] and len(workers) == len(shards)


def test_broker_reads_what_setup_writes() -> None:
    services = compose()["services"]

    def mounts(name: str) -> dict[str, str]:
        return {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}

    setup, broker = mounts("setup"), mounts("broker")
    text = (DOCKER / "setup.sh").read_text(encoding="utf-8")
    config_dir = re.search(r"config_dir=\$\{BROKER_CONFIG_DIR:-(\S+)\}", text).group(1)  # type: ignore[union-attr]
    data_dir = re.search(r"data_dir=\$\{BROKER_DATA_DIR:-(\S+)\}", text).group(1)  # type: ignore[union-attr]
    for path in (config_dir, data_dir):  # same volume at the same path: mosquitto.conf names them
        assert setup[path] == broker[path], path
        assert setup[path] in compose()["volumes"]
    assert services["broker"]["command"][-1] == f"{config_dir}/mosquitto.conf"
    assert "broker-config:/mosquitto/config:ro" in services["broker"]["volumes"]
    # the broker runs as the image's user, who owns the 0600 passwd and acl
    uid = [rest for kw, rest in dockerfile_instructions() if kw == "USER"][-1]
    assert services["broker"]["user"] == uid
    health = " ".join(services["broker"]["healthcheck"]["test"])
    assert "-u svc-api" in health and "$SVC_API_PASSWORD" in health and "-p 1884" in health
    # agencies reach the broker from outside on its agencies' listener only: the services'
    # listener (1884) stays inside the compose network
    assert [p.rsplit(":", 1)[1] for p in services["broker"]["ports"]] == ["1883"]


def test_env_example_holds_no_secret_and_covers_what_compose_needs() -> None:
    env = env_example()
    for key, value in env.items():
        if any(w in key for w in SECRET_WORDS):
            assert value == "", f"docker/.env.example must not hold a value for {key}"
    text = compose_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    referenced = set(re.findall(r"\$\{(\w+)", text))
    assert required <= set(env), sorted(required - set(env))
    assert set(env) - {"COMPOSE_PROJECT_NAME"} <= referenced, sorted(set(env) - referenced)
    with pytest.raises(KeyError, match="IOC_JWT_SECRET"):
        compose({**filled_env(), "IOC_JWT_SECRET": ""})


# -- the setup job ------------------------------------------------------------------------
def run_setup(tmp_path: Path, existing_users: str) -> list[dict[str, Any]]:
    """Run docker/setup.sh with a stand-in `ioc` that records its command lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    fake = bin_dir / "ioc"
    fake.write_text(
        f"#!{sys.executable} -IS\n"
        "import json, os, sys\n"
        "argv = sys.argv[1:]\n"
        "stdin = sys.stdin.read() if '--password-stdin' in argv else None\n"
        "with open(os.environ['FAKE_IOC_LOG'], 'a') as f:\n"
        "    f.write(json.dumps({'argv': argv, 'stdin': stdin}) + '\\n')\n"
        "if argv == ['user', 'list']:\n"
        "    for name in os.environ['FAKE_IOC_USERS'].split():\n"
        "        print(f'{name:<24} ingest    active')\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {**filled_env(), "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_IOC_LOG": str(log),
           "FAKE_IOC_USERS": existing_users, "BROKER_CONFIG_DIR": "/cfg", "BROKER_DATA_DIR": "/data"}
    done = subprocess.run(["sh", str(DOCKER / "setup.sh")], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_setup_job_runs_real_commands_and_can_run_again(tmp_path: Path) -> None:
    env = filled_env()
    calls = run_setup(tmp_path, "admin")
    for call in calls:
        parse_ioc(call["argv"])
    argvs = [call["argv"] for call in calls]
    assert argvs[0] == ["migrate"]
    assert argvs[-1] == ["broker", "config", "--dir", "/cfg", "--data-dir", "/data", "--port", "1883",
                         "--service-port", "1884"]
    added = {c["argv"][2]: (c["argv"][4], c["stdin"]) for c in calls if c["argv"][:2] == ["user", "add"]}
    assert added == {
        "svc-ingest": ("ingest", env["SVC_INGEST_PASSWORD"] + "\n"),
        "svc-camera": ("camera", env["SVC_CAMERA_PASSWORD"] + "\n"),
        "svc-api": ("api", env["SVC_API_PASSWORD"] + "\n"),
    }
    # again, with the accounts in place: nothing is added, the files are written again
    again = [c["argv"] for c in run_setup(tmp_path, "admin svc-ingest svc-camera svc-api")]
    assert again == [["migrate"], ["user", "list"], argvs[-1]]


def test_setup_job_stops_before_anything_without_its_passwords(tmp_path: Path) -> None:
    env = {**filled_env(), "SVC_CAMERA_PASSWORD": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["sh", str(DOCKER / "setup.sh")], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0 and "SVC_CAMERA_PASSWORD" in done.stderr


# -- the image ----------------------------------------------------------------------------
def test_dockerfile_basics() -> None:
    steps = dockerfile_instructions()
    args = dict(rest.split("=", 1) for kw, rest in steps if kw == "ARG" and "=" in rest)
    stages: list[str] = []
    bases = []
    for kw, rest in steps:
        if kw == "FROM":
            words = rest.split()
            if words[0] not in stages:  # a stage built on an earlier one has that one's base
                bases.append(args.get(words[0].strip("${}"), words[0]))
            stages.append(words[-1] if len(words) == 3 and words[1].upper() == "AS" else "")
    assert bases and all(b == "python:3.11-slim" for b in bases), bases
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must end as a non-root user"
    assert not [s for s in steps if s[0] == "ADD"], "use COPY"
    for kw, rest in steps:
        if kw in ("ENV", "ARG", "LABEL"):
            assert not any(w in rest.upper() for w in SECRET_WORDS), f"no secrets in the image: {kw} {rest}"
        if kw == "RUN" and "pip install" in rest:
            assert ("PIP_NO_CACHE_DIR=1" in str(steps)) or "--no-cache-dir" in rest
    runtime = steps[[i for i, s in enumerate(steps) if s == ("FROM", "${PYTHON_IMAGE} AS runtime")][0]:]
    runtime = runtime[: [i for i, s in enumerate(runtime) if s[0] == "FROM"][1]]
    assert runtime[-2:] == [("ENTRYPOINT", '["ioc"]'), ("CMD", '["--help"]')]
    # the context (docker/Dockerfile.dockerignore) holds what `pip install .` needs: every
    # package pyproject.toml installs, and every file a COPY names
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= allowed, sorted(packages - allowed)
    installed = {}
    for kw, rest in steps:
        if kw != "COPY" or "--from=" in rest:
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        for src in words[:-1]:
            if src != ".":
                assert (REPO / src).exists(), src
                assert src in allowed, f"{src} is excluded by Dockerfile.dockerignore"
            installed[words[-1]] = src
    assert installed["/usr/local/bin/ioc-setup"] == "docker/setup.sh"
    # the optional parts stay out of every image: the context leaves them out
    assert "ioc/extras" in ignore and ignore.index("ioc/extras") > ignore.index("!ioc")
    assert installed["/usr/local/bin/ioc-healthcheck"] == "docker/healthcheck.py"
    for script in ("setup.sh", "healthcheck.py"):
        assert (DOCKER / script).read_text(encoding="utf-8").startswith("#!"), script
    assert "set -eu" in (DOCKER / "setup.sh").read_text(encoding="utf-8")


def test_two_images_app_without_video_libraries_and_camera_with_them() -> None:
    """The default target (the last stage) is `app`, built from the stage that installs no
    extra; only `camera` copies the venv with OpenCV; compose builds each service from its own."""
    steps = dockerfile_instructions()
    froms = [rest for kw, rest in steps if kw == "FROM"]
    assert froms[-1] == "runtime AS app" and "runtime AS camera" in froms
    copies = {}
    stage = ""
    for kw, rest in steps:
        if kw == "FROM":
            stage = rest.split()[-1]
        elif kw == "COPY" and "--from=" in rest:
            copies[stage] = rest.split("--from=")[1].split()[0]
        elif kw == "RUN" and "pip install" in rest:
            extras = "[camera]" in rest
            assert extras == (stage == "build-camera"), f"stage {stage}: {rest}"
            assert "[demo]" not in rest
    assert copies == {"camera": "build-camera", "app": "build"}
    services = compose()["services"]
    assert services["cameras"]["build"]["target"] == "camera"
    for name in ("setup", "ingest-0", "ingest-1", "api", "cli"):
        assert services[name]["build"]["target"] == "app", name
        assert services[name]["image"] != services["cameras"]["image"], name


# -- the health check ---------------------------------------------------------------------
class _Healthz(http.server.BaseHTTPRequestHandler):
    answer: tuple[int, dict[str, str]] = (200, {"status": "ok"})

    def do_GET(self) -> None:
        code, body = self.answer if self.path == "/healthz" else (404, {})
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_api_health_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    health = load_healthcheck()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("IOC_API_PORT", str(server.server_address[1]))
        assert health.main(["api"]) == 0
        _Healthz.answer = (503, {"status": "degraded", "database": "unavailable"})
        assert health.main(["api"]) == 1
        assert "unhealthy" in capsys.readouterr().err
    finally:
        _Healthz.answer = (200, {"status": "ok"})
        server.shutdown()
        server.server_close()
    assert health.main(["api"]) == 1  # nothing listens any more
    assert health.main(["nope"]) == 2


# -- a Compose client, where one is installed -----------------------------------------------
def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_client_accepts_the_file(tmp_path: Path) -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no Compose client here (neither `docker compose` nor `docker-compose`)")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **filled_env()}
    ok = subprocess.run([*client, "-f", str(DOCKER / "compose.yaml"), "config", "-q"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    del env["POSTGRES_PASSWORD"]
    missing = subprocess.run([*client, "-f", str(DOCKER / "compose.yaml"), "config", "-q"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
