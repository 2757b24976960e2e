"""The embedded broker (`ioc broker run`) for tests, with the same interface as MosquittoRig.

It runs as the real command in a child process, on the files `write_broker_files` writes,
so a test suite run with IOC_TEST_BROKER=embedded proves the services work on it exactly as
`ioc demo` uses it on a machine without Mosquitto.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ioc.core.mqtt.broker_files import BrokerAccount, write_broker_files
from tests.rigs import children
from tests.rigs.mosquitto import MosquittoRig

REPO = Path(__file__).resolve().parents[2]


class EmbeddedBrokerRig(MosquittoRig):
    """One `ioc broker run` process on a fixed free port, restartable with its snapshot.

    Starting, stopping, reloading, logs and URLs work as for Mosquitto; only the command,
    its environment and the log lines that say "ready" and "reloaded" differ.
    """

    def __init__(self, directory: Path, accounts: Iterable[BrokerAccount], *, host: str = "127.0.0.1",
                 port: int | None = None, start_timeout: float = 10.0, autosave_s: float = 30.0,
                 max_packet_bytes: int = 2 * 1024 * 1024, max_queued_messages: int = 1_000_000,
                 **_ignored: Any) -> None:
        self.directory = Path(directory).resolve()
        self.host = host
        self.port = port if port is not None else children.free_port(host)
        self.start_timeout = start_timeout
        self.args = ["--autosave-s", str(autosave_s), "--max-packet-bytes", str(max_packet_bytes),
                     "--max-queued-messages", str(max_queued_messages)]
        # one listener for every account: it ties a client id to the account holding its
        # session instead (mosquitto.conf is written all the same, with a port of its own)
        self.service_port = self.port
        self._conf_options = {"port": self.port, "bind": host, "service_port": children.free_port(host)}
        self.accounts = list(accounts)
        self.log_path = self.directory / "broker.log"
        self.paths = write_broker_files(self.directory, self.accounts, **self._conf_options)
        self._proc: subprocess.Popen[bytes] | None = None

    def port_for(self, username: str) -> int:
        return self.port

    NAME = "ioc broker run"
    _READY_RE = re.compile(r'"msg":"broker listening"')
    _RELOAD_MARK = '"msg":"broker accounts reloaded"'

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "ioc.cli", "broker", "run", "--dir", str(self.directory),
                "--bind", self.host, "--port", str(self.port), *self.args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({"IOC_LOG_FORMAT": "json", "PYTHONPATH": str(REPO)})
        return env
