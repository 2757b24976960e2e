"""A real Mosquitto broker for tests, configured exactly as production is.

Tests talk to ``/usr/sbin/mosquitto`` started from the files that
``ioc.core.mqtt.broker_files.write_broker_files`` generates, so what they prove (ACLs,
queue limits, persistence) is a property of the configuration we ship, not of
a mock.  Each rig runs its own broker on a free 127.0.0.1 port in its own
directory; the system broker on :1883 is never touched.

Usage::

    with MosquittoRig(tmp_path, accounts) as rig:
        client.connect(rig.host, rig.port)             # agencies' listener
        service.connect(rig.host, rig.service_port)    # service accounts' listener
        rig.stop(); rig.start()          # restart, same port and persistence
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from ioc.core.mqtt.broker_files import SERVICE_ROLES, BrokerAccount, write_broker_files

from tests.rigs import children

__all__ = ["MOSQUITTO_BINARY", "MosquittoRig", "BrokerStartError", "free_port"]

MOSQUITTO_BINARY = Path(os.environ.get("IOC_TEST_MOSQUITTO", "/usr/sbin/mosquitto"))



class BrokerStartError(RuntimeError):
    """The broker did not come up; the message carries its log."""


free_port = children.free_port


class MosquittoRig:
    """One Mosquitto process with generated config, on a fixed free port.

    ``conf_options`` go to ``write_broker_files`` (e.g. ``max_packet_bytes``,
    ``max_queued_messages``).  The broker logs to ``<directory>/mosquitto.log``
    (appended across restarts).  ``start()`` on a stopped rig restarts it on
    the same port with the same persistence directory.
    """

    NAME = "mosquitto"
    # logged once *this* broker has opened its listeners (a TCP probe alone could reach
    # someone else squatting on the port)
    _READY_RE = re.compile(r"mosquitto version \S+ running")
    _RELOAD_MARK = "Reloading config"

    def __init__(
        self,
        directory: Path,
        accounts: Iterable[BrokerAccount],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        service_port: int | None = None,
        binary: Path = MOSQUITTO_BINARY,
        start_timeout: float = 10.0,
        **conf_options: Any,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.host = host
        self.port = port if port is not None else free_port(host)  # the agencies' listener
        self.service_port = service_port if service_port is not None else free_port(host)
        self.binary = Path(binary)
        self.start_timeout = start_timeout
        if "log_file" in conf_options:
            raise ValueError("the rig captures the broker's stderr; do not pass log_file")
        # Run as whoever runs the tests: a broker started as root would otherwise
        # switch to "mosquitto", which cannot enter pytest's 0700 temp dirs.
        conf_options.setdefault("run_as_user", pwd.getpwuid(os.geteuid()).pw_name)
        self._conf_options = {"port": self.port, "service_port": self.service_port, "bind": host, **conf_options}
        self.accounts: list[BrokerAccount] = list(accounts)
        self.log_path = self.directory / "mosquitto.log"
        self.paths = write_broker_files(self.directory, self.accounts, **self._conf_options)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (for diagnostics)."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> MosquittoRig:
        """Start (or restart) the broker and wait until it accepts connections."""
        if self.running:
            raise RuntimeError("broker already running; stop() it first")
        command = self._command()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self._env(),
                preexec_fn=children.preexec()
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        children.track(proc)
        self._proc = proc
        try:
            self._wait_until_accepting(log_offset)
        except BaseException:
            self.kill()
            raise
        return self

    def _command(self) -> list[str]:
        if not self.binary.exists():
            raise BrokerStartError(f"mosquitto binary not found at {self.binary}")
        return [str(self.binary), "-c", str(self.paths["conf"])]

    def _env(self) -> dict[str, str] | None:
        return None  # inherit ours

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: a clean stop, which saves the persistence file."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL and wait: a crash, nothing saved since the last autosave."""
        self._end(signal.SIGKILL, 5.0)

    def reload_accounts(self, accounts: Iterable[BrokerAccount], timeout: float = 5.0) -> None:
        """Rewrite ``passwd`` and ``acl`` and SIGHUP the broker to load them.

        Returns once the broker has logged the reload, so the next CONNECT
        already sees the new accounts.
        """
        self.accounts = list(accounts)
        self.paths = write_broker_files(self.directory, self.accounts, **self._conf_options)
        if not self.running or self._proc is None:
            return
        before = self.log_text().count(self._RELOAD_MARK)
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        resend = time.monotonic() + 1.0
        while self.log_text().count(self._RELOAD_MARK) <= before:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"broker did not log a reload\n{self._log_tail()}")
            if now > resend:
                # seen once under load: a SIGHUP with no reload logged; reloading twice is harmless
                self._proc.send_signal(signal.SIGHUP)
                resend = now + 1.0
            time.sleep(0.02)
        # The reload line is logged before the files are parsed; a probe CONNECT
        # from the next caller is ordered after it by the broker's single loop.

    # -- helpers ---------------------------------------------------------

    def port_for(self, username: str) -> int:
        """The listener this account logs in on: the services' one for service accounts,
        the agencies' one for everyone else (unknown names too, as an attacker would)."""
        role = next((a.role for a in self.accounts if a.username == username), "agency")
        return self.service_port if role in SERVICE_ROLES else self.port

    def url_for(self, username: str, password: str) -> str:
        """An ``mqtt://user:pass@host:port`` URL, as services take in settings, on the
        listener this account uses."""
        return (f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}"
                f"@{self.host}:{self.port_for(username)}")

    def log_text(self) -> str:
        """Everything the broker has logged in this rig, across restarts."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 5.0) -> None:
        """Block until ``text`` appears in the log (the broker logs asynchronously
        to what its clients observe), raising TimeoutError with the log tail."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged within {timeout}s\n{self._log_tail()}")
            time.sleep(0.02)

    def __enter__(self) -> MosquittoRig:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        """Last resort for a rig dropped without stop(): never leak a broker."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    # -- internals -------------------------------------------------------

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        """Send ``sig``, wait, escalate to SIGKILL, and forget the process."""
        proc = self._proc
        if proc is None:
            return
        try:
            children.end(proc, sig, timeout)
        finally:
            self._proc = None

    def _wait_until_accepting(self, log_offset: int) -> None:
        """Wait for the broker's ready log line and a successful TCP connect."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerStartError(
                    f"{self.NAME} exited with code {code} during start\n{self._log_tail(log_offset)}"
                )
            if self._READY_RE.search(self._log_since(log_offset)):
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.2):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"{self.NAME} did not accept connections on {self.host}:{self.port} "
                    f"within {self.start_timeout}s\n{self._log_tail(log_offset)}"
                )
            time.sleep(0.02)

    def _log_since(self, offset: int) -> str:
        """The log from byte ``offset`` on (the start of the current run)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, offset: int = 0, limit: int = 4000) -> str:
        """The end of the log since byte ``offset``, for error messages."""
        return f"--- {self.NAME} log ---\n" + self._log_since(offset)[-limit:]
