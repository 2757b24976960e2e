"""Generate the Mosquitto configuration, password file and ACL for the IOC.

The broker is the backbone between agencies, ingest, cameras and API nodes,
and its defaults do not fit that job: Mosquitto drops QoS 1 messages once a
client's queue holds 1000 of them, which breaks the "nothing accepted is lost"
promise as soon as ingest falls behind or restarts.  So we never hand-edit a
broker config; ``ioc broker config`` renders one from the account list.

Facts about Mosquitto 2.0.x that shaped the ACL (tested in
``tests/test_broker_access.py``):

* ``acl_file`` rules are **never** consulted for SUBSCRIBE: every subscription
  is granted, and each message is checked for *read* access against its real
  topic at delivery.  A shared subscription ``$share/<group>/<filter>`` is
  therefore authorised by ``topic read <filter>`` on the plain topic; a rule
  naming ``$share/...`` would never match anything.
* If a member of a shared group lacks read access, the messages the broker
  routes to it are dropped for the whole group.  Any account can join any
  group name, so a foreign client subscribing to ``$share/ioc-ingest/...``
  makes ingest lose messages; ``acl_file`` cannot prevent that.
* A denied PUBLISH gets PUBACK reason 0x87 (not authorised) for MQTT v5
  clients, but a plain success PUBACK for MQTT 3.1.1 clients.

And facts about sessions that the services must design around:

* ``max_inflight_messages`` caps unacknowledged deliveries for MQTT v5 clients
  too (and is sent as CONNACK Receive Maximum), so it bounds how many messages
  ingest can hold before it commits and acknowledges.
* Messages for a shared group are queued for an *offline* persistent member
  in its turn, so a dead worker with a live session sits on its share.
* After a broker restart a persistent session is restored with its queued
  messages but **without** its ``$share`` subscriptions (plain ones survive):
  ingest must re-SUBSCRIBE on every connect.  Sessions opened with
  clean_start=True are not saved at all, and PUBACK means "in memory":
  a crash loses what arrived since the last autosave.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ioc.core.contracts import topics
from ioc.core.passwords import is_mosquitto_hash

__all__ = [
    "BrokerAccount",
    "Role",
    "acl_rules",
    "render_acl",
    "render_mosquitto_conf",
    "render_password_file",
    "write_broker_files",
]

Role = Literal["agency", "ingest", "api", "camera"]
Access = Literal["read", "write", "readwrite"]

_ROLES: frozenset[str] = frozenset(get_args(Role))
# Also what keeps a username from carrying MQTT wildcards, '/', ':' or a
# newline into a topic, the password file or the ACL.
_USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{1,31}")

#: Shared-subscription group that ingest workers join.
INGEST_SHARE_GROUP = "ioc-ingest"


@dataclass(frozen=True)
class BrokerAccount:
    """One MQTT login: who it is, its password hash, and what it may touch.

    Validated on construction so that a bad name or hash is caught when the
    account is created, not when the broker refuses to start.
    """

    username: str
    password_hash: str  # from ioc.core.passwords.hash_password
    role: Role

    def __post_init__(self) -> None:
        """Refuse accounts that would corrupt the password file or ACL."""
        validate_username(self.username)
        if self.role not in _ROLES:
            raise ValueError(f"unknown broker role {self.role!r}; expected one of {sorted(_ROLES)}")
        if not is_mosquitto_hash(self.password_hash):
            raise ValueError(f"password hash for {self.username!r} is not a Mosquitto $7$/$6$ hash")


def validate_username(username: str) -> str:
    """Return ``username`` if it is a safe broker login, else raise ValueError.

    Agencies' usernames become topic levels (``ioc/v1/kpi/<agency>``), so they
    are restricted to lower-case letters, digits, ``_`` and ``-``.
    """
    if not isinstance(username, str) or _USERNAME_RE.fullmatch(username) is None:
        raise ValueError(
            f"invalid broker username {username!r}: use 2-32 characters from "
            "a-z, 0-9, '_' and '-', starting with a letter or digit"
        )
    return username


def acl_rules(account: BrokerAccount) -> list[tuple[Access, str]]:
    """The (access, topic filter) pairs granted to one account.

    Kept as data, separate from rendering, so the API and tests can reason
    about permissions without parsing an ACL file.
    """
    if account.role == "agency":
        return [
            ("write", topics.kpi(account.username)),
            ("read", topics.ack(account.username)),
            ("read", topics.results_of(account.username)),
        ]
    if account.role == "ingest":
        return [
            # Authorises $share/ioc-ingest/ioc/v1/kpi/+ : Mosquitto checks
            # read access on each message's real topic, not the share string.
            ("read", topics.KPI_ALL),
            ("write", topics.ACK_ALL),
            ("write", topics.RESULT_ALL),
            ("write", topics.LIVE_KPI_ALL),
            ("readwrite", topics.STATUS_INGEST_ALL),
        ]
    if account.role == "camera":
        return [
            ("write", topics.LIVE_CAMERA_ALL),
            ("read", topics.CMD_CAMERA_ALL),
            ("readwrite", topics.STATUS_CAMERA_ALL),
            ("read", topics.WALL_DEMAND_TREE),  # which cameras the walls show large (HD tiles)
        ]
    if account.role == "api":
        return [
            ("read", topics.LIVE_ALL),
            ("write", topics.CMD_ALL),
            ("read", topics.STATUS_ALL),
            ("readwrite", topics.WALL_ALL),
            # the HTTP endpoint for agencies that cannot speak MQTT: the API publishes an
            # authenticated agency's payload on that agency's topic and reads the ingest's results
            ("write", topics.KPI_ALL),
            ("read", topics.RESULT_ALL),
        ]
    raise ValueError(f"unknown broker role {account.role!r}")  # pragma: no cover


def render_password_file(accounts: Iterable[BrokerAccount]) -> str:
    """Render Mosquitto's ``password_file``: one ``user:hash`` line each."""
    ordered = _checked(accounts)
    return "".join(f"{a.username}:{a.password_hash}\n" for a in ordered)


def render_acl(accounts: Iterable[BrokerAccount]) -> str:
    """Render Mosquitto's ``acl_file`` with one ``user`` block per account.

    There are no rules outside ``user`` blocks, so anonymous clients (refused
    anyway) and accounts missing here get no access at all.
    """
    ordered = _checked(accounts)
    lines = [
        "# Generated by `ioc broker config`; edits are overwritten.",
        "# Mosquitto 2.0 grants every SUBSCRIBE and checks 'read' against each",
        "# message's real topic on delivery, so shared subscriptions",
        f"# ({topics.shared(INGEST_SHARE_GROUP, topics.KPI_ALL)}) are allowed by the plain-topic rules.",
        "",
    ]
    for account in ordered:
        lines.append(f"# role: {account.role}")
        lines.append(f"user {account.username}")
        lines.extend(f"topic {access} {topic}" for access, topic in acl_rules(account))
        lines.append("")
    return "\n".join(lines)


def render_mosquitto_conf(
    *,
    port: int,
    bind: str,
    data_dir: Path,
    password_file: Path,
    acl_file: Path,
    max_packet_bytes: int = 2 * 1024 * 1024,
    max_queued_messages: int = 1_000_000,
    websockets_port: int | None = None,
    max_inflight_messages: int = 10_000,
    autosave_interval_s: int = 60,
    persistent_client_expiration: str = "7d",
    run_as_user: str | None = None,
    log_file: Path | None = None,
) -> str:
    """Render ``mosquitto.conf`` for the IOC broker.

    ``run_as_user`` is Mosquitto's ``user`` option (whom a broker started as
    root switches to before reading the password and ACL files); ``None``
    keeps Mosquitto's default, ``mosquitto``.  ``log_file`` None logs to stderr.
    """
    _check_port(port, "port")
    if websockets_port is not None:
        _check_port(websockets_port, "websockets_port")
        if websockets_port == port:
            raise ValueError("websockets_port must differ from port")
    _check_conf_value(bind, "bind")
    if max_packet_bytes < 20:
        raise ValueError("max_packet_bytes below 20 is refused by Mosquitto")
    if max_queued_messages < 0 or max_inflight_messages < 0 or autosave_interval_s < 0:
        raise ValueError("queue, inflight and autosave limits must not be negative")
    if re.fullmatch(r"[1-9][0-9]*[hdwmy]", persistent_client_expiration) is None:
        raise ValueError("persistent_client_expiration must look like '7d', '12h', '2w'")
    if run_as_user is not None:
        _check_conf_value(run_as_user, "run_as_user")
    paths = {
        "data_dir": data_dir,
        "password_file": password_file,
        "acl_file": acl_file,
        **({"log_file": log_file} if log_file is not None else {}),
    }
    for name, value in paths.items():
        _check_conf_value(str(value), name)

    location = str(Path(data_dir)).rstrip("/") + "/"  # pre-2.0 brokers need the slash
    lines = [
        "# mosquitto.conf -- generated by `ioc broker config`; do not edit, re-run it.",
        "#",
        "# Settings that differ from Mosquitto's defaults, and why:",
        f"# max_queued_messages {max_queued_messages}: the default (1000) silently drops QoS 1",
        "#   messages for a slow or offline subscriber; ingest must be able to fall behind",
        "#   or restart without losing agencies' readings.",
        "# max_queued_bytes 0: no byte cap either; memory is the limit, watch it.",
        f"# max_inflight_messages {max_inflight_messages}: unacknowledged QoS 1 messages per client",
        "#   (default 20), also for MQTT v5 clients, and the Receive Maximum sent in CONNACK;",
        "#   ingest acknowledges only after each database batch, so this caps its batch size.",
        f"# max_packet_size {max_packet_bytes}: larger packets get the client disconnected;",
        "#   bounds memory per message (KPI batches are small, camera tiles are JPEGs).",
        f"# autosave_interval {autosave_interval_s}: seconds between snapshots of queued",
        "#   messages to disk (default 1800); a crash (not a clean stop) loses what arrived since.",
        "#   The ingest spools to its own disk (fsynced) while the database is down, so what",
        "#   waits here is only what arrives while no ingest is connected; a shorter interval",
        "#   would rewrite the whole database, in the broker's loop, that much more often.",
        f"# persistent_client_expiration {persistent_client_expiration}: drop sessions of clients",
        "#   gone this long, so an abandoned client id cannot hoard a queue forever.",
        "# set_tcp_nodelay true: no Nagle delay on small live-tile and ack messages.",
        "# per_listener_settings false: one password file and ACL for every listener.",
        "",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
    ]
    if run_as_user is not None:
        lines.append(f"user {run_as_user}")
    lines += [
        "",
        "persistence true",
        f"persistence_location {location}",
        "persistence_file mosquitto.db",
        "autosave_on_changes false",
        f"autosave_interval {autosave_interval_s}",
        f"persistent_client_expiration {persistent_client_expiration}",
        "",
        f"max_queued_messages {max_queued_messages}",
        "max_queued_bytes 0",
        "queue_qos0_messages false",
        f"max_inflight_messages {max_inflight_messages}",
        f"max_packet_size {max_packet_bytes}",
        "set_tcp_nodelay true",
        "",
        f"log_dest {'file ' + str(log_file) if log_file is not None else 'stderr'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
        f"listener {port} {bind}",
        "protocol mqtt",
    ]
    if websockets_port is not None:
        lines += ["", f"listener {websockets_port} {bind}", "protocol websockets"]
    return "\n".join(lines) + "\n"


def write_broker_files(
    directory: Path,
    accounts: Iterable[BrokerAccount],
    **conf_options: Any,
) -> dict[str, Path]:
    """Write ``passwd``, ``acl`` and ``mosquitto.conf`` into ``directory``.

    ``conf_options`` are passed to :func:`render_mosquitto_conf`; ``data_dir``
    defaults to ``directory/data``.  Files are replaced atomically, so a broker
    reloading on SIGHUP never reads half a file.  ``passwd`` and ``acl`` are
    mode 0600; when we run as root they are handed to the user the broker will
    switch to (``run_as_user``, else Mosquitto's default ``mosquitto``), who
    must be able to read them -- Mosquitto reads them after dropping privileges.
    Returns the paths under the keys ``passwd``, ``acl``, ``conf``, ``data_dir``.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    accounts = _checked(accounts)
    data_dir = Path(conf_options.pop("data_dir", directory / "data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "passwd": directory / "passwd",
        "acl": directory / "acl",
        "conf": directory / "mosquitto.conf",
        "data_dir": data_dir,
    }
    conf_text = render_mosquitto_conf(
        data_dir=data_dir,
        password_file=paths["passwd"],
        acl_file=paths["acl"],
        **conf_options,
    )
    owner = _broker_owner(conf_options.get("run_as_user"))
    _atomic_write(paths["passwd"], render_password_file(accounts), 0o600, owner)
    _atomic_write(paths["acl"], render_acl(accounts), 0o600, owner)
    _atomic_write(paths["conf"], conf_text, 0o644, None)
    if owner is not None:
        os.chown(data_dir, *owner)
    return paths


def _checked(accounts: Iterable[BrokerAccount]) -> list[BrokerAccount]:
    """Sort accounts by name and refuse duplicates or foreign objects."""
    result = list(accounts)
    seen: set[str] = set()
    for account in result:
        if not isinstance(account, BrokerAccount):
            raise TypeError(f"expected BrokerAccount, got {type(account).__name__}")
        if account.username in seen:
            raise ValueError(f"duplicate broker username {account.username!r}")
        seen.add(account.username)
    return sorted(result, key=lambda a: a.username)


def _check_port(port: int, name: str) -> None:
    """Reject ports Mosquitto cannot listen on."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{name} must be an integer in 1..65535, got {port!r}")


def _check_conf_value(value: str, name: str) -> None:
    """Keep a value on its own config line: no line breaks, no edge whitespace."""
    if not value or any(ch in value for ch in "\r\n\x00") or value != value.strip():
        raise ValueError(f"{name} is not usable in mosquitto.conf: {value!r}")


def _broker_owner(run_as_user: str | None) -> tuple[int, int] | None:
    """The (uid, gid) that must own the secret files, or None to leave them.

    Only matters when we run as root: Mosquitto then switches user before it
    reads password_file and acl_file, and 0600 files owned by root would stop
    it with "Unable to open pwfile".
    """
    if os.geteuid() != 0:
        return None
    name = run_as_user or "mosquitto"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if run_as_user is None:
            return None  # Mosquitto falls back to "nobody"; nothing sensible to chown to
        raise ValueError(f"run_as_user {run_as_user!r} does not exist") from None
    if entry.pw_uid == 0:
        return None
    return entry.pw_uid, entry.pw_gid


def _atomic_write(path: Path, text: str, mode: int, owner: tuple[int, int] | None) -> None:
    """Write ``text`` to a sibling temp file with ``mode`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # O_CREAT mode is filtered by the umask
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
