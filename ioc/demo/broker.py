"""The demo's own MQTT broker: Mosquitto, configured exactly as `ioc broker config` does.

The password file and ACL come from the accounts in the database (agencies write only under
their own name, services get their roles' topics), with the raised queue limits that make
"no reading lost" hold. Mosquitto runs as a child of `ioc demo`, as the demo's unprivileged
user when started by root.

Why Mosquitto and no Python broker: every IOC service speaks MQTT 5 (session expiry,
Receive Maximum, reason codes), and the Python broker on PyPI (amqtt 0.12) speaks only
3.1.1 and pins an old `websockets` that the wall hub cannot use. Where Mosquitto is missing
the demo says how to get it (`apt-get install mosquitto`, `brew install mosquitto`) or to
point IOC_MQTT_URL at a broker.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
from pathlib import Path

from ioc.broker.config import BrokerAccount, write_broker_files
from ioc.demo.postgres import DemoError

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto",
               "/snap/bin/mosquitto")


def find_mosquitto() -> str:
    wanted = os.environ.get("IOC_DEMO_MOSQUITTO")
    if wanted:
        if not os.access(wanted, os.X_OK):
            raise DemoError(f"IOC_DEMO_MOSQUITTO={wanted}: not an executable file")
        return wanted
    found = shutil.which("mosquitto") or next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)
    if found is None:
        raise DemoError("Mosquitto (the MQTT broker) is not installed: `sudo apt-get install mosquitto` "
                        "(Debian, Ubuntu) or `brew install mosquitto`, then run `ioc demo` again; "
                        "or set IOC_MQTT_URL to a broker of yours")
    return found


def write_config(directory: Path, accounts: list[BrokerAccount], *, host: str, port: int,
                 user: pwd.struct_passwd | None) -> Path:
    """Write passwd, acl and mosquitto.conf; return the conf's path."""
    paths = write_broker_files(directory, accounts, port=port, bind=host, data_dir=directory / "data",
                               run_as_user=user.pw_name if user is not None and os.geteuid() == 0 else None,
                               autosave_interval_s=30)
    return paths["conf"]


async def wait_ready(host: str, port: int, log_path: Path, offset: int, alive: object, timeout: float = 15.0) -> None:
    """Until this Mosquitto logged that it runs and takes connections."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if not alive():  # type: ignore[operator]
            raise DemoError("Mosquitto stopped during start")
        with open(log_path, "rb") as f:
            f.seek(offset)
            started = b" running" in f.read()
        if started:
            try:
                with socket.create_connection((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port), 0.5):
                    return
            except OSError:
                pass
        if loop.time() > deadline:
            raise DemoError(f"Mosquitto did not take connections on port {port} within {timeout:.0f} s")
        await asyncio.sleep(0.05)
