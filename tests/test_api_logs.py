"""The API's log says who did what, from where: operators' actions and failed logins, each
line with the user and the client address; uvicorn's own lines under `uvicorn`, not `.error`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import asyncpg
import httpx
import orjson
import pytest

from ioc.core.accounts import create_user
from tests.conftest import REPO
from tests.rigs.serve import ServeProcess


@pytest.fixture(scope="module")
def node(serve_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(serve_env, tmp_path_factory.mktemp("logs") / "serve.log", REPO).start()
    yield proc
    proc.stop()


def lines(node: ServeProcess) -> list[dict[str, object]]:
    out = []
    for raw in node.log_text().splitlines():
        try:
            out.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    return out


async def test_operator_actions_and_failed_logins_name_the_user_and_the_client(
        node: ServeProcess, pool: asyncpg.Pool) -> None:
    name = f"oplog{secrets.token_hex(3)}"
    async with pool.acquire() as conn:
        password = await create_user(conn, name, role="operator", actor="test")
    async with httpx.AsyncClient(base_url=node.base, timeout=10) as http:
        bad = await http.post("/api/v1/auth/token", data={"username": name, "password": "not-it-123"})
        assert bad.status_code == 401
        token = (await http.post("/api/v1/auth/token", data={"username": name, "password": password})).json()
        http.headers["Authorization"] = f"Bearer {token['access_token']}"
        assert (await http.post("/api/v1/wall/switch", json={"layout": "overview", "delay_s": 0})).status_code == 200
        for _ in range(100):  # the switch reaches this node's hub through the broker
            if (await http.post("/api/v1/wall/pin", json={"tile": "cam-a", "camera": None})).status_code == 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the pin was refused for 5 s")
    wanted = {"login failed": None, "wall.switched": None, "wall.pinned": None}
    for _ in range(50):  # the log is written by another process: give it a moment
        for doc in lines(node):
            key = str(doc.get("action") or doc.get("msg"))
            if key in wanted and doc.get("user") == name:
                wanted[key] = doc
        if all(wanted.values()):
            break
        await asyncio.sleep(0.1)
    assert all(wanted.values()), wanted
    for key, doc in wanted.items():
        assert doc["client"] == "127.0.0.1", (key, doc)  # type: ignore[index]
    assert wanted["wall.switched"]["subject"] == "overview"  # type: ignore[index]


def test_uvicorn_start_up_lines_are_not_filed_as_errors(node: ServeProcess) -> None:
    docs = lines(node)
    assert any(d.get("logger") == "uvicorn" and d.get("level") == "info" for d in docs)
    assert not [d for d in docs if d.get("logger") == "uvicorn.error" and d.get("level") != "error"]
