"""The embedded broker (`ioc broker run`) for tests, with the same interface as MosquittoRig.

It runs as the real command in a child process, on the files `write_broker_files` writes,
so a test suite run with IOC_TEST_BROKER=embedded proves the services work on it exactly as
`ioc demo` uses it on a machine without Mosquitto.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ioc.broker.config import BrokerAccount, write_broker_files
from tests.rigs import children
from tests.rigs.mosquitto import BrokerStartError, MosquittoRig

REPO = Path(__file__).resolve().parents[2]


class EmbeddedBrokerRig(MosquittoRig):
    """One `ioc broker run` process on a fixed free port, restartable with its snapshot.

    Stopping, killing, logs and URLs work as for Mosquitto; starting and reloading differ.
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
        self._conf_options = {"port": self.port, "bind": host}
        self.accounts = list(accounts)
        self.log_path = self.directory / "broker.log"
        self.paths = write_broker_files(self.directory, self.accounts, **self._conf_options)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedBrokerRig:
        if self.running:
            raise RuntimeError("broker already running; stop() it first")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({"IOC_LOG_FORMAT": "json", "PYTHONPATH": str(REPO)})
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ioc.cli", "broker", "run", "--dir", str(self.directory),
                 "--bind", self.host, "--port", str(self.port), *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, env=env,
                preexec_fn=children.preexec() if threading.current_thread() is threading.main_thread() else None,
            )
        children.track(proc)
        self._proc = proc
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                self._proc = None
                raise BrokerStartError(f"ioc broker run exited with {proc.returncode}\n{self._log_tail(offset)}")
            if '"broker listening"' in self._log_since(offset):
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.2):
                        return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerStartError(f"ioc broker run did not listen in {self.start_timeout} s\n"
                                       f"{self._log_tail(offset)}")
            time.sleep(0.02)

    def reload_accounts(self, accounts: Iterable[BrokerAccount], timeout: float = 5.0) -> None:
        """Rewrite passwd and acl, SIGHUP, and wait for the broker to log the reload."""
        self.accounts = list(accounts)
        self.paths = write_broker_files(self.directory, self.accounts, **self._conf_options)
        if not self.running or self._proc is None:
            return
        before = self.log_text().count('"broker accounts reloaded"')
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log_text().count('"broker accounts reloaded"') <= before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker did not log a reload\n{self._log_tail()}")
            time.sleep(0.02)
