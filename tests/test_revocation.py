"""State that must hold across API nodes: two real `ioc serve` processes, one database.

Login failures count once whichever node they hit, and `ioc user disable` (the command, with
no broker link) closes the user's websockets and voids its token on every node within
seconds: the database tells each node (NOTIFY ioc_accounts).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ioc.core.accounts import create_user
from ioc.serve.api.principal_cache import PrincipalCache
from tests.conftest import REPO
from tests.rigs.serve import ServeProcess
from tests.test_wall_hub import WallClient, open_client

DEADLINE_S = 5.0  # what the issue asks is ~2 s; generous here so a busy machine does not fail it


@pytest.fixture(scope="module")
def nodes(serve_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServeProcess]]:
    logs: Path = tmp_path_factory.mktemp("nodes")
    procs = [ServeProcess(serve_env, logs / f"serve-{i}.log", REPO) for i in range(2)]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


def ioc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioc.cli", *args], env={**env, "IOC_LOG_LEVEL": "WARNING"},
                          cwd=REPO, capture_output=True, text=True, timeout=60)


async def login(node: ServeProcess, username: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.base, timeout=10) as http:
        return await http.post("/api/v1/auth/token", data={"username": username, "password": password})


async def me(node: ServeProcess, token: str) -> int:
    async with httpx.AsyncClient(base_url=node.base, timeout=10) as http:
        return (await http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})).status_code


async def screen_token(nodes: list[ServeProcess], pool: asyncpg.Pool) -> tuple[str, str]:
    """A new screen account and its token, issued by an admin on the first node."""
    admin = f"radm{secrets.token_hex(3)}"
    async with pool.acquire() as conn:
        password = await create_user(conn, admin, role="admin", actor="test")
    r = await login(nodes[0], admin, password)
    assert r.status_code == 200, r.text
    name = f"screen-r{secrets.token_hex(3)}"
    async with httpx.AsyncClient(base_url=nodes[0].base, timeout=10) as http:
        r = await http.post("/api/v1/wall/screen-tokens", json={"name": name},
                            headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert r.status_code == 200, r.text
    return name, r.json()["token"]


async def open_screens(nodes: list[ServeProcess], token: str) -> list[WallClient]:
    screens = [await open_client(n.ws_url, token, "screen", screen=i + 1) for i, n in enumerate(nodes)]
    for s in screens:
        await s.wait("welcome")
    return screens


async def disable_and_measure(nodes: list[ServeProcess], name: str, token: str, screens: list[WallClient],
                              env: dict[str, str]) -> float:
    """Run `ioc user disable`; seconds from its end until every node refuses the token."""
    done = await asyncio.to_thread(ioc, env, "user", "disable", name)
    assert done.returncode == 0, done.stderr
    start = time.monotonic()
    while True:
        statuses = [await me(n, token) for n in nodes]
        closed = all(s.closed is not None for s in screens)
        if closed and statuses == [401, 401]:
            return time.monotonic() - start
        if time.monotonic() - start > DEADLINE_S:
            raise AssertionError(f"after {DEADLINE_S} s: REST answers {statuses}, websockets closed "
                                 f"{[s.closed for s in screens]}")
        await asyncio.sleep(0.05)


async def test_login_failures_count_once_across_nodes(nodes: list[ServeProcess], pool: asyncpg.Pool) -> None:
    name = f"rthr{secrets.token_hex(3)}"
    async with pool.acquire() as conn:
        password = await create_user(conn, name, role="leader", actor="test")
    max_failures = 8  # LoginGuard's limit per name and address
    for i in range(max_failures):  # half on each node: each node alone saw only 4
        r = await login(nodes[i % 2], name, "wrong-password-123")
        assert r.status_code == 401, r.text
    for node in nodes:
        r = await login(node, name, password)
        assert r.status_code == 429, r.text
        assert 0 < int(r.headers["retry-after"]) <= 301


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(
        nodes: list[ServeProcess], pool: asyncpg.Pool) -> None:
    """40 wrong passwords sent at once, over both nodes: each attempt is counted before its
    password is checked, so no more than the limit get to be checked (401), the rest 429."""
    name = f"rbur{secrets.token_hex(3)}"
    async with pool.acquire() as conn:
        await create_user(conn, name, role="leader", actor="test")
    answers = await asyncio.gather(*(login(nodes[i % 2], name, f"wrong-password-{i}") for i in range(40)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(401) == 8 and codes.count(429) == 32, codes


async def test_a_good_login_takes_back_its_attempt(nodes: list[ServeProcess], pool: asyncpg.Pool) -> None:
    """Logins that succeed are not failures: more than the limit of them in a row all pass."""
    name = f"rgood{secrets.token_hex(3)}"
    async with pool.acquire() as conn:
        password = await create_user(conn, name, role="leader", actor="test")
    for i in range(12):
        r = await login(nodes[i % 2], name, password)
        assert r.status_code == 200, (i, r.text)


async def test_cli_disable_closes_websockets_and_voids_rest_on_every_node(
        nodes: list[ServeProcess], pool: asyncpg.Pool, serve_env: dict[str, str]) -> None:
    name, token = await screen_token(nodes, pool)
    screens = await open_screens(nodes, token)
    assert [await me(n, token) for n in nodes] == [200, 200]  # both nodes have the principal cached now
    took = await disable_and_measure(nodes, name, token, screens, serve_env)
    print(f"\nrevoked on 2 nodes (REST 401, websockets closed) {took:.2f} s after `ioc user disable` ended")
    for s in screens:
        assert s.closed is not None and s.closed[0] == 4401, s.closed  # hub.js: fatal, no reconnect storm
        assert "disabled" in s.of("error")[-1]["reason"]
    for n in nodes:
        closed = [r for r in n.log_records() if r.get("msg") == "wall client closed: account disabled"]
        assert [(r.get("user"), r.get("address")) for r in closed] == [(name, "127.0.0.1")], closed
    # enabling it again lets the same token in at once
    done = await asyncio.to_thread(ioc, serve_env, "user", "enable", name)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + DEADLINE_S
    while [await me(n, token) for n in nodes] != [200, 200]:
        assert time.monotonic() < deadline, "the enabled account's token is still refused"
        await asyncio.sleep(0.05)


async def test_a_lost_listener_reconnects_and_still_revokes(
        nodes: list[ServeProcess], pool: asyncpg.Pool, serve_env: dict[str, str]) -> None:
    offsets = [n.log_path.stat().st_size for n in nodes]
    async with pool.acquire() as conn:
        killed = await conn.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE application_name = 'ioc-account-listener' AND datname = current_database()")
    assert killed >= 2  # the two nodes here, and any other `ioc serve` of the session
    deadline = time.monotonic() + 15
    for n, off in zip(nodes, offsets):
        while not ("account listener lost" in n.log_text(off) and "account listener connected" in n.log_text(off)):
            assert time.monotonic() < deadline, n.log_text(off)[-2000:]
            await asyncio.sleep(0.1)
    name, token = await screen_token(nodes, pool)
    screens = await open_screens(nodes, token)
    assert [await me(n, token) for n in nodes] == [200, 200]
    took = await disable_and_measure(nodes, name, token, screens, serve_env)
    print(f"\nrevoked after a listener reconnect in {took:.2f} s")


async def test_principals_live_briefly_while_no_notification_can_arrive() -> None:
    cache: PrincipalCache[str] = PrincipalCache(ttl_s=10.0, fallback_ttl_s=0.5)
    listening = True
    cache.listening = lambda: listening
    cache.put("ops", "principal", cache.generation)
    await asyncio.sleep(0.7)
    assert cache.get("ops") == (True, "principal")  # a disable would have dropped it
    listening = False  # the listener connection is down: a disable would go unheard
    assert cache.get("ops") == (False, None)
    # a lookup that started before a drop does not store what it read
    generation = cache.generation
    cache.drop("ops")
    cache.put("ops", "stale", generation)
    listening = True
    assert cache.get("ops") == (False, None)
