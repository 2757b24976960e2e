"""The `ioc` command as an admin uses it, against the real database and a real Mosquitto."""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from tests.conftest import REPO
from tests.rigs.mosquitto import free_port
from tests.rigs.mqtt_clients import Client


def ioc(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioc.cli", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_agencies_and_broker_files_from_the_command_line(
    db_url: str, tmp_path: Path, service_passwords: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)})
    suffix = str(os.getpid())[-4:]
    a, b = f"cli-a{suffix}", f"cli-b{suffix}"
    out_a = ioc(env, "agency", "add", a, "--name", "Sở Nội vụ", "--sector", "tthc")
    assert out_a.returncode == 0, out_a.stderr
    pw_a = re.search(r"MQTT password: (\S+)", out_a.stdout).group(1)  # type: ignore[union-attr]
    assert ioc(env, "agency", "add", b, "--name", "Sở Y tế", "--sector", "yte").returncode == 0
    # mistakes get a clear message and exit code 2
    dup = ioc(env, "agency", "add", a, "--name", "x", "--sector", "tthc")
    assert dup.returncode == 2 and "exists already" in dup.stderr
    bad = ioc(env, "agency", "add", "Bad/Id", "--name", "x", "--sector", "tthc")
    assert bad.returncode == 2 and "agency id" in bad.stderr
    nosector = ioc(env, "agency", "add", f"cli-c{suffix}", "--name", "x", "--sector", "nope")
    assert nosector.returncode == 2 and "unknown sector" in nosector.stderr
    # an agency's client id on the broker is its name: never one a service's client id can have
    for reserved in (f"ingest-{suffix}", f"cameras-{suffix}", f"ioc-api-{suffix}"):
        taken = ioc(env, "agency", "add", reserved, "--name", "x", "--sector", "tthc")
        assert taken.returncode == 2 and "reserved" in taken.stderr, taken.stderr
    assert a in ioc(env, "agency", "list").stdout

    port, service_port = free_port(), free_port()
    conf_dir = tmp_path / "broker"
    made = ioc(env, "broker", "config", "--dir", str(conf_dir), "--port", str(port), "--bind", "127.0.0.1",
               "--service-port", str(service_port), "--user", getpass.getuser())
    assert made.returncode == 0, made.stderr
    acl = (conf_dir / "acl").read_text()
    assert f"topic write ioc/v1/kpi/{a}" in acl and f"topic read ioc/v1/ack/{a}" in acl
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf_dir / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                ingest = Client("127.0.0.1", service_port, "svc-ingest", service_passwords["svc-ingest"]).wait_connected(1)
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        ingest.subscribe("ioc/v1/kpi/+")
        agency_a = Client("127.0.0.1", port, a, pw_a).wait_connected()
        agency_a.publish(f"ioc/v1/kpi/{b}", b'{"forged": true}')  # A writing as B: dropped by the ACL
        agency_a.publish(f"ioc/v1/kpi/{a}", b'{"own": true}')
        got = ingest.wait_for(lambda m: any(x.topic.endswith(a) for x in m))
        assert [m.topic for m in got] == [f"ioc/v1/kpi/{a}"]
        agency_a.close()

        # disabling the agency and rewriting the files shuts it out of the broker
        assert ioc(env, "agency", "disable", a).returncode == 0
        again = ioc(env, "broker", "config", "--dir", str(conf_dir), "--port", str(port), "--bind", "127.0.0.1",
                    "--service-port", str(service_port), "--user", getpass.getuser(), "--reload-pid", str(broker.pid))
        assert again.returncode == 0, again.stderr
        time.sleep(0.5)
        refused = False
        try:
            Client("127.0.0.1", port, a, pw_a).wait_connected(3)
        except TimeoutError:
            refused = True
        assert refused, "a disabled agency must not connect"
        ingest.close()
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)


def test_users_and_the_missing_database_message(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)})
    name = f"op{os.getpid()}"
    made = ioc(env, "user", "add", name, "--role", "operator", "--password-stdin", stdin="a-long-enough-password\n")
    assert made.returncode == 0, made.stderr
    short = ioc(env, "user", "add", name + "x", "--role", "leader", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    env.pop("IOC_DATABASE_URL")
    missing = ioc(env, "migrate")
    assert missing.returncode == 2 and "IOC_DATABASE_URL is not set" in missing.stderr
    env["IOC_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    down = ioc(env, "migrate")
    assert down.returncode == 2 and "cannot connect to the database" in down.stderr
    _ = asyncpg


def test_broker_run_says_what_is_wrong(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env["PYTHONPATH"] = str(REPO)
    empty = ioc(env, "broker", "run", "--dir", str(tmp_path), "--port", str(free_port()))
    assert empty.returncode == 2 and f"{tmp_path}/passwd does not exist" in empty.stderr, empty.stderr
    (tmp_path / "passwd").write_text("tthc:$7$1000$bad\n")
    (tmp_path / "acl").write_text("user tthc\ntopic sideways ioc/#\nfrobnicate\n")
    bad = ioc(env, "broker", "run", "--dir", str(tmp_path), "--port", str(free_port()))
    assert bad.returncode == 2 and "acl:3: unknown ACL line 'frobnicate'" in bad.stderr, bad.stderr
    (tmp_path / "acl").write_text("user tthc\ntopic read ioc/#\n")
    port = ioc(env, "broker", "run", "--dir", str(tmp_path), "--port", "70000")
    assert port.returncode == 2 and "port must be 1..65535" in port.stderr, port.stderr


async def test_layouts_check_names_every_camera_the_registry_lacks(db_url: str, pool: asyncpg.Pool) -> None:
    """A layout naming a camera nobody registered would show a tile that never gets a picture."""
    from ioc.core.storage import wall as wall_store

    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)})
    doc = {"id": "cli-check", "name_vi": "Kiểm tra", "cols": 12, "rows": 12,
           "tiles": [{"id": "t-ghost", "kind": "camera", "camera": "cli-ghost", "x": 0, "y": 0, "w": 4, "h": 4}]}
    shipped = [f"pl-{i:02d}" for i in range(1, 11)]
    async with pool.acquire() as conn:
        await wall_store.save_layout(conn, "cli-check", doc, "test")
        had = {r["id"] for r in await conn.fetch("SELECT id FROM cameras WHERE id = ANY($1::text[])", shipped)}
    try:
        out = await asyncio.to_thread(ioc, env, "layouts", "check")
        assert out.returncode == 1, out
        assert "layout 'cli-check', tile 't-ghost': camera 'cli-ghost' is not in the camera registry" in out.stdout
        assert "problem(s) in the wall layouts" in out.stderr
        # the shipped layouts name pl-01 ... pl-10: once registered, nothing is said of them
        async with pool.acquire() as conn:
            await conn.executemany("INSERT INTO cameras (id, name, stream_url, mode) VALUES ($1, $1, 'rtsp://test', "
                                   "'sub-full') ON CONFLICT (id) DO NOTHING", [(c,) for c in shipped])
        out = await asyncio.to_thread(ioc, env, "layouts", "check")
        assert "'pl-" not in out.stdout and "cli-ghost" in out.stdout, out.stdout
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM cameras WHERE id = ANY($1::text[]) AND NOT (id = ANY($2::text[]))",
                               shipped, list(had))
            await wall_store.delete_layout(conn, "cli-check", "test")
