"""Failed logins per throttle key, in PostgreSQL so that every API node counts the same.

A key holds the times of its failures inside the window (the newest `limit` of them, which
is all the throttle needs). Each function is one statement, so two nodes recording at the
same moment both count: the row lock of the upsert orders them.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection


async def record(db: Db, keys: Sequence[tuple[str, int]], window_s: float) -> None:
    """One failure now for each (key, limit): times older than the window are dropped, and
    only the newest `limit` are kept."""
    await db.execute(
        """INSERT INTO login_failures AS f (key, failures)
           SELECT k, ARRAY[now()] FROM unnest($1::text[]) AS k
           ON CONFLICT (key) DO UPDATE SET updated_at = now(), failures = ARRAY(
               SELECT t FROM (SELECT t FROM unnest(f.failures || now()) AS t
                               WHERE t > now() - make_interval(secs => $3)
                               ORDER BY t DESC
                               LIMIT (SELECT l FROM unnest($1::text[], $2::int[]) AS x(k, l) WHERE k = f.key)) AS kept
                ORDER BY t)""",
        [k for k, _ in keys], [limit for _, limit in keys], window_s,
    )


async def wait_s(db: Db, keys: Sequence[tuple[str, int]], window_s: float) -> float:
    """Seconds until every key is under its limit again (0 when none is at its limit)."""
    wait = await db.fetchval(
        """SELECT max(extract(epoch FROM w.oldest + make_interval(secs => $3) - now()))
             FROM login_failures f
             JOIN unnest($1::text[], $2::int[]) AS x(k, l) ON x.k = f.key
             CROSS JOIN LATERAL (SELECT min(t) AS oldest, count(*) AS n FROM unnest(f.failures) AS t
                                  WHERE t > now() - make_interval(secs => $3)) AS w
            WHERE w.n >= x.l""",
        [k for k, _ in keys], [limit for _, limit in keys], window_s,
    )
    return max(0.0, float(wait)) if wait is not None else 0.0


async def reserve(pool: asyncpg.Pool, keys: Sequence[tuple[str, int]], window_s: float) -> float:
    """Count one attempt now unless a key is at its limit; returns the seconds to wait (0: the
    attempt is counted and may go on). Checking and counting in one transaction with the keys'
    rows locked means that a burst of parallel guesses, on one node or many, cannot all pass
    the check before any of them is counted."""
    names = sorted(k for k, _ in keys)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO login_failures (key, failures) SELECT k, '{}' FROM unnest($1::text[]) AS k "
                           "ON CONFLICT (key) DO NOTHING", names)
        await conn.execute("SELECT 1 FROM login_failures WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE", names)
        wait = await wait_s(conn, keys, window_s)
        if wait <= 0:
            await record(conn, keys, window_s)
        return wait


async def release(db: Db, key: str) -> None:
    """Take back the newest attempt of `key` (a login that succeeded is not a failure)."""
    await db.execute(
        """UPDATE login_failures SET failures = failures[1:cardinality(failures) - 1]
            WHERE key = $1 AND cardinality(failures) > 0""", key)


async def clear(db: Db, key: str) -> None:
    await db.execute("DELETE FROM login_failures WHERE key = $1", key)


async def prune(db: Db, window_s: float) -> int:
    """Forget keys with no failure inside the window; returns how many."""
    done = await db.execute("DELETE FROM login_failures WHERE updated_at < now() - make_interval(secs => $1)",
                            window_s)
    return int(done.split()[-1])
