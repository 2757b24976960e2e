"""Who may connect and what they may read and write: the files `ioc broker config` writes.

The embedded broker reads the same `passwd` (Mosquitto `$7$` hashes) and `acl` files as
Mosquitto, so one account list serves both brokers and the ACL tests hold for each. The
ACL language is Mosquitto's: `user <name>` starts a block, `topic [read|write|readwrite|deny]
<filter>` grants within it, `pattern ...` applies to everyone with `%u` (username) and `%c`
(client id) substituted. Unlike Mosquitto 2.0, a SUBSCRIBE whose filter no read rule can
match is refused (SUBACK 0x87), so a foreign client cannot join a shared group at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ioc.extras.broker.topics import matches, overlaps
from ioc.core.passwords import verify_password

log = logging.getLogger("ioc.broker")

READ, WRITE = 1, 2
_ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": 0}


class AccessFileError(ValueError):
    """A password or ACL file the broker cannot use; the message names file and line."""


@dataclass
class Rule:
    access: int  # READ | WRITE bits; 0 denies
    topic_filter: str


@dataclass
class AccessRules:
    passwords: dict[str, str] = field(default_factory=dict)
    by_user: dict[str, list[Rule]] = field(default_factory=dict)
    anonymous: list[Rule] = field(default_factory=list)
    patterns: list[Rule] = field(default_factory=list)
    allow_anonymous: bool = False

    def authenticate(self, username: str | None, password: bytes | None) -> bool:
        if username is None:
            return self.allow_anonymous
        stored = self.passwords.get(username)
        if stored is None or password is None:
            return False
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return verify_password(text, stored)

    def _rules(self, username: str | None, client_id: str) -> list[Rule]:
        own = self.by_user.get(username, []) if username is not None else self.anonymous
        if not self.patterns:
            return own
        subst = [Rule(r.access, r.topic_filter.replace("%u", username or "").replace("%c", client_id))
                 for r in self.patterns if username is not None or "%u" not in r.topic_filter]
        return own + subst

    def allowed(self, username: str | None, client_id: str, topic: str, want: int) -> bool:
        """Whether a topic name may be read (delivered) or written (published).

        A matching `deny` rule wins over any grant.
        """
        granted = False
        for rule in self._rules(username, client_id):
            if matches(rule.topic_filter, topic):
                if rule.access == 0:
                    return False
                if rule.access & want:
                    granted = True
        return granted

    def may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """Whether any topic under the filter could be readable (each message is still
        checked on delivery)."""
        return any(rule.access & READ and overlaps(rule.topic_filter, topic_filter)
                   for rule in self._rules(username, client_id))


def load_access(passwd: Path | None, acl: Path | None, allow_anonymous: bool = False) -> AccessRules:
    rules = AccessRules(allow_anonymous=allow_anonymous)
    if passwd is not None:
        rules.passwords = _read_passwd(passwd)
    if acl is not None:
        _read_acl(acl, rules)
    else:
        # no ACL file: every authenticated client may read and write everything (Mosquitto's rule)
        rules.patterns.append(Rule(READ | WRITE, "#"))
    return rules


def _read_passwd(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccessFileError(f"cannot read the password file {path}: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user:
            raise AccessFileError(f"{path}:{n}: expected user:hash")
        out[user] = encoded
    return out


def _read_acl(path: Path, rules: AccessRules) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccessFileError(f"cannot read the ACL file {path}: {exc.strerror}") from None
    current: list[Rule] = rules.anonymous
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "user":
            if not rest:
                raise AccessFileError(f"{path}:{n}: 'user' without a name")
            current = rules.by_user.setdefault(rest, [])
        elif word in ("topic", "pattern"):
            access_word, _, topic_filter = rest.partition(" ")
            if access_word in _ACCESS and topic_filter.strip():
                access, topic_filter = _ACCESS[access_word], topic_filter.strip()
            else:
                access, topic_filter = READ | WRITE, rest  # Mosquitto: no access word means readwrite
            if not topic_filter:
                raise AccessFileError(f"{path}:{n}: '{word}' without a topic")
            (rules.patterns if word == "pattern" else current).append(Rule(access, topic_filter))
        else:
            raise AccessFileError(f"{path}:{n}: unknown ACL line {word!r}")
