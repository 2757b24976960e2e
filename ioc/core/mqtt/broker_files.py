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
* A client id is not tied to an account: a CONNECT with an id in use takes
  that session over, whoever sends it.  Hence the agencies' listener forces the
  client id to the username and the services' listener admits service accounts
  only (``per_listener_settings true``; ``tests/test_broker_takeover.py``).
  With per-listener ACLs a session restored after a restart still gets the
  messages queued for it, before and after the restart (measured on 2.0.11).

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
from ioc.core.mqtt.client_ids import reserved_for_services, why_reserved
from ioc.core.passwords import is_mosquitto_hash

__all__ = [
    "BrokerAccount",
    "Role",
    "acl_rules",
    "SERVICE_ROLES",
    "render_acl",
    "render_mosquitto_conf",
    "render_password_file",
    "write_broker_files",
]

Role = Literal["agency", "ingest", "api", "camera"]
Access = Literal["read", "write", "readwrite"]

_ROLES: frozenset[str] = frozenset(get_args(Role))
#: Roles that log in on the services' listener; agencies use the other one(s).
SERVICE_ROLES: frozenset[str] = _ROLES - {"agency"}
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
        if self.role == "agency" and reserved_for_services(self.username):
            # its forced client id would be a service's: it could take that session over
            raise ValueError(why_reserved(self.username))


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
    service_port: int,
    data_dir: Path,
    agency_password_file: Path,
    agency_acl_file: Path,
    service_password_file: Path,
    service_acl_file: Path,
    service_bind: str | None = None,
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

    Agencies connect on ``port`` (and ``websockets_port``), where their client id is
    always their username; the services on ``service_port`` (on ``service_bind``,
    default ``bind``), whose password file holds service accounts only.
    ``run_as_user`` is Mosquitto's ``user`` option (whom a broker started as
    root switches to before reading the password and ACL files); ``None``
    keeps Mosquitto's default, ``mosquitto``.  ``log_file`` None logs to stderr.
    """
    _check_port(port, "port")
    _check_port(service_port, "service_port")
    if service_port == port:
        raise ValueError("service_port must differ from port: agencies and services need listeners of their own")
    if websockets_port is not None:
        _check_port(websockets_port, "websockets_port")
        if websockets_port in (port, service_port):
            raise ValueError("websockets_port must differ from port and service_port")
    service_bind = bind if service_bind is None else service_bind
    _check_conf_value(bind, "bind")
    _check_conf_value(service_bind, "service_bind")
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
        "agency_password_file": agency_password_file,
        "agency_acl_file": agency_acl_file,
        "service_password_file": service_password_file,
        "service_acl_file": service_acl_file,
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
        "# per_listener_settings true, one listener for agencies and one for the services:",
        "#   Mosquitto gives a client id to whoever presents it last, whatever the account,",
        "#   and the client holding it is disconnected (with a clean start, its queued",
        "#   messages are gone). So on the agencies' listener(s) use_username_as_clientid",
        "#   makes every agency's client id its own username, and only the services'",
        "#   listener, whose password file holds service accounts alone, lets a client",
        "#   choose its id (ingest workers, camera workers and API nodes each need one).",
        "#   Agency names never start like a service's client id (ioc.core.mqtt.client_ids).",
        "",
        "per_listener_settings true",
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
        "# agencies: the client id is the username, whatever the client sends",
        *_listener(port, bind, "mqtt", agency_password_file, agency_acl_file, forced_ids=True),
    ]
    if websockets_port is not None:
        lines += [
            "",
            "# agencies over websockets, as on the listener above",
            *_listener(websockets_port, bind, "websockets", agency_password_file, agency_acl_file,
                       forced_ids=True),
        ]
    lines += [
        "",
        "# the services (ingest, cameras, API nodes): service accounts only, their own client ids",
        *_listener(service_port, service_bind, "mqtt", service_password_file, service_acl_file,
                   forced_ids=False),
    ]
    return "\n".join(lines) + "\n"


def _listener(port: int, bind: str, protocol: str, password_file: Path, acl_file: Path, *,
              forced_ids: bool) -> list[str]:
    """One listener block; with per_listener_settings true each names its own files."""
    lines = [f"listener {port} {bind}", f"protocol {protocol}"]
    if forced_ids:
        lines.append("use_username_as_clientid true")
    return lines + ["allow_anonymous false", f"password_file {password_file}", f"acl_file {acl_file}"]


def write_broker_files(
    directory: Path,
    accounts: Iterable[BrokerAccount],
    **conf_options: Any,
) -> dict[str, Path]:
    """Write the password files, ACLs and ``mosquitto.conf`` into ``directory``.

    ``conf_options`` are passed to :func:`render_mosquitto_conf` (``port``,
    ``service_port``, ``bind``, ...); ``data_dir`` defaults to ``directory/data``.
    Mosquitto reads ``agencies.passwd``/``agencies.acl`` on the agencies' listeners and
    ``services.passwd``/``services.acl`` on the services' one; ``passwd`` and ``acl``
    hold every account, for ``ioc broker run`` (the embedded broker, one listener,
    which ties a client id to the account holding its session instead).
    Files are replaced atomically, so a broker reloading on SIGHUP never reads half a
    file.  The secret files are mode 0600; when we run as root they are handed to the
    user the broker will switch to (``run_as_user``, else Mosquitto's default
    ``mosquitto``), who must be able to read them -- Mosquitto reads them after
    dropping privileges.  Returns the paths under the keys ``passwd``, ``acl``,
    ``agency_passwd``, ``agency_acl``, ``service_passwd``, ``service_acl``, ``conf``,
    ``data_dir``.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    accounts = _checked(accounts)
    data_dir = Path(conf_options.pop("data_dir", directory / "data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "passwd": directory / "passwd",
        "acl": directory / "acl",
        "agency_passwd": directory / "agencies.passwd",
        "agency_acl": directory / "agencies.acl",
        "service_passwd": directory / "services.passwd",
        "service_acl": directory / "services.acl",
        "conf": directory / "mosquitto.conf",
        "data_dir": data_dir,
    }
    conf_text = render_mosquitto_conf(
        data_dir=data_dir,
        agency_password_file=paths["agency_passwd"],
        agency_acl_file=paths["agency_acl"],
        service_password_file=paths["service_passwd"],
        service_acl_file=paths["service_acl"],
        **conf_options,
    )
    agencies = [a for a in accounts if a.role not in SERVICE_ROLES]
    services = [a for a in accounts if a.role in SERVICE_ROLES]
    owner = _broker_owner(conf_options.get("run_as_user"))
    for key, chosen in (("", accounts), ("agency_", agencies), ("service_", services)):
        _atomic_write(paths[key + "passwd"], render_password_file(chosen), 0o600, owner)
        _atomic_write(paths[key + "acl"], render_acl(chosen), 0o600, owner)
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
