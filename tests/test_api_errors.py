"""What the API answers when something under a request fails (no database needed: the
routes here are the test's own, on the app `ioc serve` builds, without its lifespan)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import httpx
from fastapi import HTTPException
import pytest

from ioc.core.settings import load_settings
from ioc.serve.api.app import create_app


def _raising(exc: Exception) -> Callable[[], Awaitable[None]]:
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
    for code in (401, 403, 404, 409, 422, 429):
        app.add_api_route(f"/_test/http/{code}", _raising(HTTPException(code, detail=f"refused with {code}")))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


@pytest.mark.parametrize("name", ["refused", "reset", "dns", "timeout"])
async def test_a_lost_database_connection_is_503(client: httpx.AsyncClient, name: str) -> None:
    r = await client.get(f"/_test/{name}")
    assert r.status_code == 503 and "database unavailable" in r.json()["detail"]


@pytest.mark.parametrize("name", ["file", "permission"])
async def test_any_other_os_error_is_an_internal_error_not_an_outage(client: httpx.AsyncClient, name: str) -> None:
    r = await client.get(f"/_test/{name}")
    assert r.status_code == 500 and "database" not in r.json()["detail"]


@pytest.mark.parametrize("code", [401, 403, 404, 409, 429])
async def test_refusals_are_problems(client: httpx.AsyncClient, code: int) -> None:
    r = await client.get(f"/_test/http/{code}")
    assert r.status_code == code and r.json() == {"detail": f"refused with {code}"}


async def test_a_422_of_our_own_has_the_shape_the_schema_documents(client: httpx.AsyncClient) -> None:
    """FastAPI documents 422 as {"detail": [{"loc", "msg", "type"}]}; a route's own refusal
    (a sentence) is wrapped into that shape rather than answered as a string."""
    r = await client.get("/_test/http/422")
    assert r.status_code == 422
    assert r.json() == {"detail": [{"loc": ["body"], "msg": "refused with 422", "type": "value_error"}]}


async def test_the_document_names_every_answer_an_operation_can_give(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["Problem"]["properties"]["detail"]["type"] == "string"
    checked = 0
    for path, item in doc["paths"].items():
        if path.startswith("/_test/"):
            continue
        for method, op in item.items():
            codes = set(op["responses"])
            assert "503" in codes, (method, path)
            if op.get("security"):
                assert {"401", "403"} <= codes, (method, path, codes)
                checked += 1
            if "{" in path:
                assert "404" in codes, (method, path, codes)
            if "422" in codes:
                schema = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                assert schema.endswith("/HTTPValidationError"), (method, path, schema)
    assert checked >= 20
    token = doc["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert {"401", "429"} <= set(token)
