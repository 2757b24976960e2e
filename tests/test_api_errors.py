"""What the API answers when something under a request fails (no database needed: the
routes here are the test's own, on the app `ioc serve` builds, without its lifespan)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from ioc.core.settings import load_settings
from ioc.serve.api.app import create_app


def _raising(exc: OSError) -> Callable[[], Awaitable[None]]:
    async def fail() -> None:
        raise exc
    return fail


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = create_app(load_settings(database_url="postgresql://nobody@127.0.0.1:1/none", jwt_secret="x" * 40))
    failures: dict[str, OSError] = {
        "refused": ConnectionRefusedError(111, "Connection refused"),
        "reset": ConnectionResetError(104, "Connection reset by peer"),
        "dns": socket.gaierror(-2, "Name or service not known"),
        "timeout": TimeoutError("timed out"),
        "file": FileNotFoundError(2, "No such file or directory", "/var/lib/ioc/x"),
        "permission": PermissionError(13, "Permission denied"),
    }
    for name, exc in failures.items():
        app.add_api_route(f"/_test/{name}", _raising(exc))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


@pytest.mark.parametrize("name", ["refused", "reset", "dns", "timeout"])
async def test_a_lost_database_connection_is_503(client: httpx.AsyncClient, name: str) -> None:
    r = await client.get(f"/_test/{name}")
    assert r.status_code == 503 and "database unavailable" in r.json()["detail"]


@pytest.mark.parametrize("name", ["file", "permission"])
async def test_any_other_os_error_is_an_internal_error_not_an_outage(client: httpx.AsyncClient, name: str) -> None:
    r = await client.get(f"/_test/{name}")
    assert r.status_code == 500 and "database" not in r.json()["detail"]
