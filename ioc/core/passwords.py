"""Password hashes that Mosquitto 2.x and the IOC API both understand.

Mosquitto 2.0 reads password-file entries of the form
``$7$<iterations>$<base64 salt>$<base64 hash>``: PBKDF2-HMAC-SHA512 over the
UTF-8 bytes of the password, a 12-byte random salt, a 64-byte derived key, and
both fields in standard (``+/``, padded) base64 with no line breaks -- exactly
what ``mosquitto_passwd`` writes.  We produce that format with the standard
library only, so that ``ioc broker config`` needs neither the
``mosquitto_passwd`` binary nor an interactive prompt, and so that the API can
check an operator's or agency's login against the very same stored hash.

Passwords are hashed as raw UTF-8 with no Unicode normalisation on purpose:
Mosquitto hashes the bytes the client sends, so normalising here would make a
password that works for the API fail at the broker (or the other way round).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = [
    "BROKER_ITERATIONS",
    "DEFAULT_ITERATIONS",
    "HUMAN_ITERATIONS",
    "iterations_of",
    "hash_password",
    "is_mosquitto_hash",
    "new_password",
    "verify_password",
]

#: Iterations for people's passwords (they log in to the API only, in a worker thread, behind
#: the login throttle): OWASP's figure for PBKDF2-HMAC-SHA512. 138 ms a login on a 2-core box
#: (`python bench/logins.py`).
HUMAN_ITERATIONS = 210_000
#: Iterations for broker logins (agencies, services). Mosquitto derives the key on its only
#: thread, so after a broker restart every client's CONNECT queues behind the others: 60 at
#: once took 0.67 s at 20k, 3.5 s at 100k and 10.3 s at 210k, the broker deaf to all traffic
#: meanwhile (bench/logins.py). These passwords are ours, random and 24+ characters
#: (`new_password`, or `openssl rand` for the compose services): the iteration count adds
#: nothing an attacker would notice against that entropy, and the broker's stall would matter.
BROKER_ITERATIONS = 20_000
DEFAULT_ITERATIONS = BROKER_ITERATIONS

_SALT_BYTES = 12  # what mosquitto_passwd uses (SALT_LEN in its source)
_DIGEST = "sha512"
_DIGEST_BYTES = 64
_PBKDF2_TAG = "7"
_SALTED_SHA512_TAG = "6"  # the pre-2.0 format, still accepted by Mosquitto 2.x
_MAX_ITERATIONS = 10_000_000  # refuse absurd counts read from untrusted files


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Hash ``password`` into Mosquitto's ``$7$`` password-file format.

    A NUL character is refused: Mosquitto treats the password as a C string and
    would silently hash only the part before it, so such a password could never
    match at the broker.
    """
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    if "\x00" in password:
        raise ValueError("password must not contain NUL characters")
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iterations must be between 1 and {_MAX_ITERATIONS}")
    salt = secrets.token_bytes(_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac(_DIGEST, password.encode("utf-8"), salt, iterations)
    return "${tag}${it}${salt}${hash}".format(
        tag=_PBKDF2_TAG,
        it=iterations,
        salt=_b64encode(salt),
        hash=_b64encode(derived),
    )


def iterations_of(encoded: str) -> int:
    """The iteration count of a stored hash (1 for the old `$6$` format, 0 if unreadable):
    a login that checks out on a weaker hash than today's is rehashed."""
    parsed = _parse(encoded)
    return 0 if parsed is None else parsed[1]


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against a stored hash, in constant time.

    Accepts the ``$7$`` format we write and the older ``$6$`` salted-SHA512
    format that Mosquitto also reads, so password files imported from an
    existing broker keep working.  Anything malformed simply fails to verify:
    a login path must never raise on bad stored data.
    """
    if not isinstance(password, str) or not isinstance(encoded, str):
        return False
    parsed = _parse(encoded)
    if parsed is None:
        return False
    tag, iterations, salt, expected = parsed
    secret = password.encode("utf-8", errors="surrogatepass")
    if tag == _PBKDF2_TAG:
        actual = hashlib.pbkdf2_hmac(_DIGEST, secret, salt, iterations)
    else:
        actual = hashlib.sha512(secret + salt).digest()
    return hmac.compare_digest(actual, expected)


def is_mosquitto_hash(encoded: str) -> bool:
    """Tell whether ``encoded`` is a hash Mosquitto 2.x can load.

    Used to validate account records before they are written into a password
    file, where one bad line makes the broker refuse to start.
    """
    return isinstance(encoded, str) and _parse(encoded) is not None


def new_password() -> str:
    """Return a fresh random password (24 URL-safe characters, 144 bits).

    URL-safe so it can be pasted into an ``mqtt://user:pass@host`` URL or an
    environment variable without escaping.
    """
    return secrets.token_urlsafe(18)


def _b64encode(raw: bytes) -> str:
    """Standard, padded base64 without newlines, as OpenSSL's BIO writes it."""
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strictly decode standard base64, returning None on any defect."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _parse(encoded: str) -> tuple[str, int, bytes, bytes] | None:
    """Split a stored hash into (tag, iterations, salt, digest), or None.

    The checks mirror what the broker will accept, and also reject ``:`` and
    line breaks so a value can never smuggle a second line into a password file.
    """
    if any(ch in encoded for ch in ":\r\n\x00 "):
        return None
    parts = encoded.split("$")
    if len(parts) == 5 and parts[0] == "" and parts[1] == _PBKDF2_TAG:
        it_text, salt_text, hash_text = parts[2], parts[3], parts[4]
        if not it_text.isascii() or not it_text.isdigit():
            return None
        iterations = int(it_text)
        if not 1 <= iterations <= _MAX_ITERATIONS:
            return None
        tag = _PBKDF2_TAG
    elif len(parts) == 4 and parts[0] == "" and parts[1] == _SALTED_SHA512_TAG:
        iterations, salt_text, hash_text = 1, parts[2], parts[3]
        tag = _SALTED_SHA512_TAG
    else:
        return None
    salt = _b64decode(salt_text)
    digest = _b64decode(hash_text)
    if not salt or digest is None or len(digest) != _DIGEST_BYTES:
        return None
    return tag, iterations, salt, digest
