"""`ioc serve` as deployed, in a child process: the API on one port, the wall hub on another."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.rigs.children import end, free_port, preexec, read_text, track


class ServeProcess:
    def __init__(self, env: dict[str, str], log_path: Path, repo: Path) -> None:
        self.port = free_port()
        self.wall_port = free_port()
        self.env = {**env, "IOC_API_PORT": str(self.port), "IOC_WALL_PORT": str(self.wall_port),
                    "IOC_API_HOST": "127.0.0.1"}
        self.log_path = log_path
        self.repo = repo
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.wall_port}/ws"

    def start(self, timeout: float = 30.0) -> ServeProcess:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "serve"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.repo, preexec_fn=preexec())
        track(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text(offset)
            if "wall hub listening" in text and '"mqtt connected"' in text:
                try:
                    if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"ioc serve exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"ioc serve did not start in {timeout} s:\n{self.log_text(offset)[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc)

    def log_text(self, offset: int = 0) -> str:
        return read_text(self.log_path, offset)

    def log_records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
