"""Run the embedded broker: listen, watch keep-alives, autosave, reload accounts on SIGHUP.

`ioc broker run --dir <dir>` serves the `passwd` and `acl` that `ioc broker config --dir
<dir>` wrote, so the demo (and anyone without Mosquitto) gets the same accounts and rights.
It logs "broker listening" once its socket is open: what `ioc demo` and the tests wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ioc.extras.broker import snapshot
from ioc.extras.broker.access import AccessFileError, load_access
from ioc.extras.broker.broker import Broker, Limits
from ioc.extras.broker.connection import Connection

log = logging.getLogger("ioc.broker")


@dataclass
class ServerOptions:
    bind: str = "127.0.0.1"
    port: int = 1883
    passwd: Path | None = None
    acl: Path | None = None
    data_dir: Path | None = None  # where the snapshot lives; None keeps nothing between runs
    allow_anonymous: bool = False
    autosave_s: float = 30.0
    limits: Limits = field(default_factory=Limits)

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.passwd is None and not self.allow_anonymous:
            raise ValueError("no password file: give one, or allow anonymous clients explicitly")
        for p in (self.passwd, self.acl):
            if p is not None and not p.is_file():
                raise ValueError(f"{p} does not exist or is not a file")


class BrokerServer:
    def __init__(self, options: ServerOptions) -> None:
        options.check()
        self.options = options
        self.broker = Broker(load_access(options.passwd, options.acl, options.allow_anonymous), options.limits)
        self.snapshot_path = options.data_dir / "broker.snapshot.json" if options.data_dir else None
        self._server: asyncio.base_events.Server | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        if self.snapshot_path is not None:
            self.snapshot_path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.load(self.broker, self.snapshot_path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self.broker), self.options.bind,
                                                self.options.port, reuse_address=True, backlog=512)
        log.info("broker listening", extra={"bind": self.options.bind, "port": self.options.port,
                                            "accounts": len(self.broker.access.passwords)})

    def reload(self) -> None:
        try:
            access = load_access(self.options.passwd, self.options.acl, self.options.allow_anonymous)
        except AccessFileError as exc:
            log.error("accounts not reloaded; the old ones stay", extra={"error": str(exc)})
            return
        gone = self.broker.reload_access(access)
        for conn in gone:
            conn.fail(0x87, "account removed", log_level=logging.INFO)
        log.info("broker accounts reloaded", extra={"accounts": len(access.passwords), "disconnected": len(gone)})

    def stop(self) -> None:
        self._stop.set()

    def save(self) -> None:
        if self.snapshot_path is None:
            return
        try:
            size = snapshot.save(self.broker, self.snapshot_path)
            log.debug("broker snapshot saved", extra={"bytes": size})
        except OSError as exc:
            log.error("broker snapshot not saved", extra={"file": str(self.snapshot_path), "error": str(exc)})

    async def serve(self) -> None:
        """Until stop(): keep-alive checks every second, autosave when something changed."""
        await self.start()
        last_save = time.monotonic()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
                now = time.monotonic()
                for conn in list(self.broker.connections):
                    conn.check_alive(now)
                if self.broker.changed and now - last_save >= self.options.autosave_s:
                    self.save()
                    last_save = now
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.broker.connections):
            conn.shutdown()
        self.save()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        log.info("broker stopped", extra={"published": self.broker.published})


def run(options: ServerOptions) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP re-reads the password and ACL files."""

    async def main() -> None:
        server = BrokerServer(options)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.stop)
        loop.add_signal_handler(signal.SIGINT, server.stop)
        loop.add_signal_handler(signal.SIGHUP, server.reload)
        await server.serve()

    asyncio.run(main())
