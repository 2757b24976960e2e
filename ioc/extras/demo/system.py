"""What the demo needs from the machine: its data directory, a user to drop to, free ports."""

from __future__ import annotations

import errno
import os
import grp
import pwd
import stat
import socket
import subprocess
from pathlib import Path

from ioc.extras.demo.postgres import DemoError

SERVICE_USER = "ioc-demo"


def default_data_dir() -> Path:
    """`/var/lib/ioc-demo` as root, else `$XDG_DATA_HOME/ioc-demo` (`~/.local/share/ioc-demo`)."""
    if os.geteuid() == 0:
        return Path("/var/lib/ioc-demo")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ioc-demo"


def service_user() -> pwd.struct_passwd | None:
    """Whom PostgreSQL and Mosquitto run as: ourselves, or as root an unprivileged system user.

    `IOC_DEMO_USER` names an existing one; otherwise `ioc-demo` is used, created as a system
    account without a home or a shell on first use, and `nobody` only if it cannot be made.
    """
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("IOC_DEMO_USER")
    if wanted:
        try:
            entry = pwd.getpwnam(wanted)
        except KeyError:
            raise DemoError(f"IOC_DEMO_USER={wanted}: no such user") from None
        if entry.pw_uid == 0:
            raise DemoError("IOC_DEMO_USER must not be root: PostgreSQL refuses to run as root")
        return entry
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    try:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--comment", "ioc demo services", SERVICE_USER],
                       check=True, capture_output=True, timeout=30)
        return pwd.getpwnam(SERVICE_USER)
    except (OSError, subprocess.SubprocessError, KeyError):
        return pwd.getpwnam("nobody")


def closed_to(user: pwd.struct_passwd, path: Path) -> Path | None:
    """The first directory on the way to `path` that `user` may not enter (None: all open).

    As root the demo runs PostgreSQL and Mosquitto as an unprivileged user; os.access()
    answers for root, so the permission bits are read as that user would meet them."""
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    here = Path(path).resolve()
    for directory in [*reversed(here.parents), here]:
        if not directory.exists():
            break
        st = directory.stat()
        bit = 0o100 if st.st_uid == user.pw_uid else 0o010 if st.st_gid in groups else 0o001
        if not st.st_mode & bit:
            return directory
    return None


def check_reachable(user: pwd.struct_passwd | None, data_dir: Path) -> None:
    """Stop before initdb with what to do, rather than initdb's "Permission denied" on a file."""
    if user is None:
        return
    closed = closed_to(user, data_dir)
    if closed is not None:
        st = closed.stat()
        raise DemoError(
            f"the demo runs PostgreSQL and the broker as the user {user.pw_name}, who cannot enter {closed} "
            f"(mode {stat.filemode(st.st_mode)}, owner {_owner(st.st_uid)}): choose a --data-dir it can reach "
            f"(the default, {default_data_dir()}, works), or let it in with `chmod o+x {closed}`")


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _listeners(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (any address), from /proc/net."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        found.add(cols[9])
        except OSError:
            continue
    return found


def port_owner(port: int) -> str | None:
    """"pid 123 (mosquitto)" for the process listening on `port`, when we may see it."""
    inodes = {f"socket:[{i}]" for i in _listeners(port)}
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    with open(f"/proc/{pid}/comm") as c:
                        return f"pid {pid} ({c.read().strip()})"
            except OSError:
                continue
    return None


def check_port(host: str, port: int, what: str, setting: str) -> None:
    """Refuse to go on when `port` is taken, naming who holds it and what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                owner = port_owner(port)
                by = f"by another program, {owner}" if owner else "by another program"
                raise DemoError(f"port {port} ({what}) is taken {by}: set {setting}=<another port>, "
                                f"or stop that program") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise DemoError(f"{host} is not an address of this machine ({what}); check --host") from None
            raise DemoError(f"cannot use port {port} on {host} ({what}): {exc.strerror}; set {setting}") from None
