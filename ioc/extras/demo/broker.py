"""The demo's own MQTT broker: Mosquitto where it is installed, else the embedded one.

Either way the password file and ACL come from the accounts in the database (agencies
write only under their own name, services get their roles' topics), written by the same
`write_broker_files` as `ioc broker config`. Mosquitto (the production broker) runs as the
demo's unprivileged user when started by root, with the raised queue limits that make "no
reading lost" hold. Where it is missing, `ioc broker run` (ioc.extras.broker: MQTT 5 in
Python, the same files and rules) serves instead, so a machine with only Python can run
the demo. IOC_DEMO_BROKER=mosquitto or =embedded picks one.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import sys
from pathlib import Path

from ioc.core.mqtt.broker_files import BrokerAccount, write_broker_files
from ioc.extras.demo.postgres import DemoError

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto",
               "/snap/bin/mosquitto")


def choose() -> tuple[str, str | None]:
    """("mosquitto", its path) or ("embedded", None), by IOC_DEMO_BROKER (auto, mosquitto, embedded)."""
    wanted = os.environ.get("IOC_DEMO_BROKER", "auto").strip().lower() or "auto"
    if wanted not in ("auto", "mosquitto", "embedded"):
        raise DemoError(f"IOC_DEMO_BROKER must be auto, mosquitto or embedded, not {wanted!r}")
    if wanted == "embedded":
        return "embedded", None
    found = find_mosquitto()
    if found is None:
        if wanted == "mosquitto":
            raise DemoError("IOC_DEMO_BROKER=mosquitto but Mosquitto is not installed: `sudo apt-get install "
                            "mosquitto` (Debian, Ubuntu) or `brew install mosquitto`; or unset IOC_DEMO_BROKER "
                            "to use the embedded broker")
        return "embedded", None
    return "mosquitto", found


def find_mosquitto() -> str | None:
    wanted = os.environ.get("IOC_DEMO_MOSQUITTO")
    if wanted:
        if not os.access(wanted, os.X_OK):
            raise DemoError(f"IOC_DEMO_MOSQUITTO={wanted}: not an executable file")
        return wanted
    return shutil.which("mosquitto") or next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def embedded_argv(directory: Path, host: str, port: int) -> list[str]:
    """`ioc broker run` on the files in `directory`, with this Python."""
    return [sys.executable, "-m", "ioc.cli", "broker", "run", "--dir", str(directory), "--bind", host,
            "--port", str(port), "--autosave-s", "10"]


def free_local_port(other_than: int = 0) -> int:
    """A TCP port free on the loopback now (and not `other_than`), for the services' listener."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != other_than:
            return port


def write_config(directory: Path, accounts: list[BrokerAccount], *, host: str, port: int,
                 service_port: int | None, user: pwd.struct_passwd | None) -> Path:
    """Write the password files, ACLs and mosquitto.conf; return the conf's path.

    `service_port` None: the embedded broker (one listener), which reads only passwd and
    acl; mosquitto.conf then gets a placeholder port for the services' listener."""
    paths = write_broker_files(directory, accounts, port=port, bind=host, data_dir=directory / "data",
                               service_port=service_port if service_port is not None else free_local_port(port),
                               service_bind="127.0.0.1",
                               run_as_user=user.pw_name if user is not None and os.geteuid() == 0 else None,
                               autosave_interval_s=30)
    return paths["conf"]


async def wait_ready(host: str, port: int, log_path: Path, offset: int, alive: object, timeout: float = 15.0,
                     ready_text: bytes = b" running") -> None:
    """Until this broker logged that it runs (`ready_text`) and takes connections."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if not alive():  # type: ignore[operator]
            raise DemoError("the MQTT broker stopped during start")
        with open(log_path, "rb") as f:
            f.seek(offset)
            started = ready_text in f.read()
        if started:
            try:
                with socket.create_connection((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port), 0.5):
                    return
            except OSError:
                pass
        if loop.time() > deadline:
            raise DemoError(f"the MQTT broker did not take connections on port {port} within {timeout:.0f} s "
                            f"(see {log_path})")
        await asyncio.sleep(0.05)
