"""Which of N processes owns a key (a camera id, an agency id): one rule for every service.

Rendezvous (highest-random-weight) hashing: every shard index gets a score for the key,
a stable hash of (key, index), and the highest score owns it. Unlike a split by position
in the sorted list of keys, the owner depends only on the key and N, never on which other
keys exist, so:

- adding or removing a key moves only that key (an admin adding a camera does not make
  other cameras change process, which would blank them on the wall while they move);
- changing N from N to N+1 moves only the ~1/(N+1) of keys the new shard wins, and the
  keys of a removed shard spread over the others.

The hash is blake2b, the same on every host, Python version and run; Python's `hash()` of
a string is salted per process and would make every worker disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from hashlib import blake2b
from typing import TypeVar

T = TypeVar("T")


def _score(key: str, index: int) -> int:
    digest = blake2b(f"{index}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, count: int) -> int:
    """The shard index in 0..count-1 that owns `key`."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    return max(range(count), key=lambda i: _score(key, i))


def mine(keys: Iterable[T], index: int, count: int, key: Callable[[T], str] = str) -> list[T]:
    """The items of `keys` that shard `index` of `count` owns, in their given order."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    return [k for k in keys if owner(key(k), count) == index]
