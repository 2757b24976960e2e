"""The REST API against the real PostgreSQL: logins, roles, agency isolation, the catalogue,
server-side series, areas, agencies, health and metrics.

One app per module (`api` fixture) with its lifespan running (pool, migrations, the roll-up
loop), driven in-process through httpx's ASGI transport. Readings go in through the
ingest's own write path (`ingest.store.ReadingStore`), in 2024 at days and areas no other
test of this module uses; the database is shared with the rest of the session.
"""

from __future__ import annotations

import asyncio
import csv
import random
import re
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import fastapi.routing
import httpx
import jwt
import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from ioc.core.readings import Reading
from ioc.core.storage import queries, rollups
from ingest.store import ReadingStore
from ioc.core.accounts import create_agency, create_user, set_disabled
from ioc.serve.api.app import create_app
from ioc.core.catalogue.shipped import shipped_catalogue
from ioc.core.settings import load_settings

SECRET = "s3cret-" + "x" * 40
METRICS_TOKEN = "metrics-" + secrets.token_hex(16)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UTC = timezone.utc
AREAS_CSV = Path(__file__).resolve().parents[1] / "ioc" / "core" / "catalogue" / "data" / "areas" / "ha-nam.csv"

COUNTER = "tthc.dossiers_received"
GAUGE = "mt.aqi"

# Routes that are open on purpose. Anything else must answer 401 without a token: a new
# route (or a mounted app) that does not, fails test_every_route_needs_a_token.
PUBLIC_PATHS = {"/docs", "/docs/oauth2-redirect", "/docs-assets", "/openapi.json", "/healthz", "/api/v1/auth/token",
                # the pages hold no data (they log in, or carry a screen token in the URL
                # fragment), and where the hub listens is no secret: it asks for a token
                "/", "/wall", "/api/v1/wall/hub"}
PATH_SAMPLES = {"kpi_id": COUNTER}

# 5-day slots of 2024, each handed out once in this module: readings of different tests
# never share a (kpi, area, ts) key, whatever the order the tests run in.
_SLOTS = iter(random.Random(secrets.randbits(32)).sample(range(0, 360, 5), 72))


def fresh_day() -> date:
    return date(2024, 1, 1) + timedelta(days=next(_SLOTS))


def local_midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=TZ)


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------- the app


@dataclass
class Api:
    app: FastAPI
    pool: asyncpg.Pool

    def client(self, token: str | None = None, ip: str = "127.0.0.1", *, crash: bool = True) -> httpx.AsyncClient:
        """crash=False: an unhandled exception in the app comes back as the 500 a server sends."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(ip, 40000), raise_app_exceptions=crash),
            base_url="http://test", headers=headers,
        )

    async def request(self, method: str, url: str, token: str | None = None, ip: str = "127.0.0.1",
                      crash: bool = True, **kw: Any) -> httpx.Response:
        async with self.client(token, ip, crash=crash) as c:
            return await c.request(method, url, **kw)

    async def get(self, url: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, token, **kw)

    async def login(self, username: str, password: str, ip: str = "127.0.0.1") -> httpx.Response:
        return await self.request("POST", "/api/v1/auth/token", ip=ip,
                                  data={"username": username, "password": password})

    async def token(self, username: str, password: str) -> str:
        r = await self.login(username, password, ip=f"10.1.{random.randrange(256)}.{random.randrange(1, 255)}")
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    async def user(self, role: str, prefix: str | None = None) -> tuple[str, str, str]:
        """A new account of this role: (username, password, token)."""
        name = uid(prefix or role[:4])
        password = secrets.token_urlsafe(16)
        async with self.pool.acquire() as conn:
            await create_user(conn, name, role=role, actor="test-api", password=password)
        return name, password, await self.token(name, password)

    async def agency(self, sectors: list[str]) -> tuple[str, str]:
        """A new agency: (id, token)."""
        agency_id = uid("apiag")
        async with self.pool.acquire() as conn:
            password = await create_agency(conn, agency_id, name_vi=f"Cơ quan {agency_id}", sectors=sectors,
                                           actor="test-api")
        return agency_id, await self.token(agency_id, password)


@pytest.fixture(scope="module")
async def api(db_url: str, pool: asyncpg.Pool) -> AsyncIterator[Api]:
    settings = load_settings(database_url=db_url, jwt_secret=SECRET, metrics_token=METRICS_TOKEN,
                             rollup_refresh_s=0.5, db_pool_max=4)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield Api(app, pool)


@dataclass
class People:
    admin: tuple[str, str, str]
    operator: tuple[str, str, str]
    leader: tuple[str, str, str]


@pytest.fixture(scope="module")
async def people(api: Api) -> People:
    return People(await api.user("admin"), await api.user("operator"), await api.user("leader"))


async def write(pool: asyncpg.Pool, rows: list[tuple[datetime, str, str, float, str]], revision: int = 0) -> None:
    """Store (ts, kpi, area, value, agency) through the ingest's write path."""
    now = datetime.now(UTC)
    readings = [Reading(ts, kpi, area, float(v), agency, revision, None, now) for ts, kpi, area, v, agency in rows]
    async with pool.acquire() as conn:
        out = await ReadingStore().write(conn, readings, [])
    assert len(out.written) == len(readings), (out.duplicates, out.conflicts)


# --------------------------------------------------------------------------- 1. login


async def test_login_issues_a_jwt_that_opens_the_api(api: Api) -> None:
    name, password, _ = await api.user("leader")
    r = await api.login(f"  {name.upper()} ", password, ip="10.2.0.1")  # trimmed, case-insensitive
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "leader" and body["agency"] is None
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"], issuer="ioc")
    assert claims["sub"] == name and claims["role"] == "leader"
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 8 * 3600
    me = await api.get("/api/v1/me", body["access_token"])
    assert me.status_code == 200
    assert me.json() == {"username": name, "role": "leader", "agency": None, "sectors": None}


async def test_wrong_password_and_unknown_user_get_the_same_401(api: Api) -> None:
    name, password, _ = await api.user("operator")
    wrong = await api.login(name, password + "x", ip="10.2.0.2")
    unknown = await api.login(uid("nobody"), password, ip="10.2.0.2")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert r.json()["detail"] == "wrong user name or password"
        assert r.headers["www-authenticate"] == "Bearer"
    assert "access_token" not in wrong.text


async def test_missing_garbage_expired_and_foreign_tokens_get_401(api: Api) -> None:
    name, _, good = await api.user("leader")
    now = int(time.time())
    claims = {"sub": name, "role": "leader", "iat": now - 7200, "exp": now - 60, "iss": "ioc"}
    expired = jwt.encode(claims, SECRET, algorithm="HS256")
    alive = {**claims, "exp": now + 3600}
    foreign = jwt.encode(alive, "another-secret-" + "y" * 40, algorithm="HS256")
    unsigned = jwt.encode(alive, None, algorithm="none")  # type: ignore[arg-type]
    no_issuer = jwt.encode({k: v for k, v in alive.items() if k != "iss"}, SECRET, algorithm="HS256")
    ghost = jwt.encode({**alive, "sub": uid("ghost")}, SECRET, algorithm="HS256")
    assert (await api.get("/api/v1/me", good)).status_code == 200
    cases = {
        "missing": (None, "missing bearer token"),
        "garbage": ("not-a-jwt", "invalid token"),
        "expired": (expired, "token expired"),
        "foreign secret": (foreign, "invalid token"),
        "alg none": (unsigned, "invalid token"),
        "no issuer": (no_issuer, "invalid token"),
        "unknown user": (ghost, "account unknown or disabled"),
    }
    for label, (token, detail) in cases.items():
        for url in ("/api/v1/me", f"/api/v1/kpis/{COUNTER}"):
            r = await api.get(url, token)
            assert r.status_code == 401, (label, url, r.text)
            assert detail in r.json()["detail"], (label, r.text)
            assert r.headers.get("www-authenticate") == "Bearer", label


async def test_service_accounts_cannot_log_in(api: Api) -> None:
    for role in ("ingest", "api", "camera"):
        name, password = uid("svc"), secrets.token_urlsafe(16)
        async with api.pool.acquire() as conn:
            await create_user(conn, name, role=role, actor="test-api", password=password)
        r = await api.login(name, password, ip="10.2.0.4")
        assert r.status_code == 403, (role, r.text)
        assert "broker" in r.json()["detail"]
        assert "access_token" not in r.text


async def test_disabled_user_cannot_log_in_and_its_token_stops(api: Api) -> None:
    name, password, token = await api.user("operator")
    assert (await api.get("/api/v1/me", token)).status_code == 200
    async with api.pool.acquire() as conn:
        await set_disabled(conn, name, True, actor="test-api")
    r = await api.login(name, password, ip="10.2.0.5")
    assert r.status_code == 401 and r.json()["detail"] == "wrong user name or password"
    # the principal was cached; NOTIFY ioc_accounts drops it, no waiting out the cache
    r = await poll_status(api, token, 401)
    assert "disabled" in r.json()["detail"]
    async with api.pool.acquire() as conn:
        await set_disabled(conn, name, False, actor="test-api")
    await poll_status(api, token, 200)


async def poll_status(api: Api, token: str, status: int, within_s: float = 5.0) -> httpx.Response:
    """GET /api/v1/me until it answers `status` (the cache holds principals 10 s otherwise)."""
    deadline = time.monotonic() + within_s
    while (r := await api.get("/api/v1/me", token)).status_code != status:
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.05)
    return r


async def test_a_role_change_voids_older_tokens(api: Api) -> None:
    name, _, token = await api.user("admin")
    assert (await api.get("/api/v1/audit?limit=1", token)).status_code == 200
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE users SET role = 'leader' WHERE username = $1", name)
    api.app.state.principal_cache.clear()  # see above: the ~10 s principal cache
    r = await api.get("/api/v1/audit?limit=1", token)
    assert r.status_code == 401 and "role" in r.json()["detail"]


async def test_repeated_failures_are_throttled_with_retry_after(api: Api) -> None:
    name, password, _ = await api.user("leader")
    ip = "10.2.9.9"
    guard = api.app.state.login_guard
    for _ in range(guard.max_failures):
        r = await api.login(name, "wrong-password-123", ip=ip)
        assert r.status_code == 401
    # now even the right password waits
    r = await api.login(name, password, ip=ip)
    assert r.status_code == 429, r.text
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= int(guard.window_s) + 1
    assert f"{retry} s" in r.json()["detail"]
    # a stranger failing on purpose must not lock the user out from elsewhere
    assert (await api.login(name, password, ip="10.2.9.10")).status_code == 200
    other, other_pw, _ = await api.user("leader")
    assert (await api.login(other, other_pw, ip=ip)).status_code == 200
    # but one address guessing at many names is stopped too
    spray = "10.2.9.12"
    for i in range(guard.max_per_address):
        assert (await api.login(f"nobody{i}", "wrong-password-123", ip=spray)).status_code == 401
    assert (await api.login(other, other_pw, ip=spray)).status_code == 429
    assert (await api.login(other, other_pw, ip="10.2.9.11")).status_code == 200


# --------------------------------------------------------------------------- 2. roles


async def _ws_probe(app: FastAPI, path: str) -> str:
    """Open a websocket on `path` without a token at the ASGI level; say what the app did."""
    sent: list[dict[str, Any]] = []
    closed = asyncio.Event()
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] in ("websocket.close", "websocket.http.response.body"):
            closed.set()

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"test")], "client": ("10.3.0.1", 1), "server": ("test", 80),
        "subprotocols": [], "extensions": {"websocket.http.response": {}},
    }
    task = asyncio.create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(closed.wait(), 3.0)
    except TimeoutError:
        pass
    closed.set()
    await asyncio.wait([task], timeout=3.0)
    if not task.done():
        task.cancel()
    kinds = [m["type"] for m in sent]
    if any(k in ("websocket.send",) for k in kinds):
        return f"sent data without a token: {kinds}"
    if "websocket.close" in kinds or any(
        m["type"] == "websocket.http.response.start" and m["status"] in (401, 403) for m in sent
    ):
        return "refused"
    return f"stayed open or answered oddly: {kinds}"


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: PATH_SAMPLES.get(m.group(1), "x"), path)


def _flat_routes(app: FastAPI) -> list[tuple[BaseRoute, str, set[str]]]:
    """(route, full path, methods) for every route, included routers flattened.

    FastAPI >= 0.16x keeps `include_router` results as one `_IncludedRouter` entry in
    `app.routes`; `fastapi.routing.iter_route_contexts` unfolds them (older FastAPI copies
    the routes into `app.routes`, so the plain list is complete there).
    """
    unfold = getattr(fastapi.routing, "iter_route_contexts", None)
    if unfold is None:
        return [(r, getattr(r, "path", ""), set(getattr(r, "methods", None) or ())) for r in app.routes]
    return [(ctx.original_route, ctx.path or "", set(ctx.methods or ())) for ctx in unfold(app.routes)]


async def test_every_route_needs_a_token(api: Api) -> None:
    checked: set[tuple[str, str]] = set()
    problems: list[str] = []
    for route, path, methods in _flat_routes(api.app):
        if path in PUBLIC_PATHS:
            continue
        if isinstance(route, Route):
            for method in sorted(methods):
                kw: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                for token in (None, "garbage"):
                    r = await api.request(method, _concrete(path), token, ip="10.3.0.1", **kw)
                    if r.status_code != 401:
                        problems.append(f"{method} {path} token={token}: {r.status_code} {r.text[:120]}")
                checked.add((method, path))
        elif isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
            outcome = await _ws_probe(api.app, _concrete(path))
            if outcome != "refused":
                problems.append(f"WEBSOCKET {path}: {outcome}")
            checked.add(("WEBSOCKET", path))
        elif isinstance(route, Mount):
            r = await api.get(_concrete(path) + "/", ip="10.3.0.1")
            if r.status_code != 401:
                problems.append(f"mount {path}: {r.status_code} without a token (add it to PUBLIC_PATHS if it is "
                                "meant to be open)")
            checked.add(("MOUNT", path))
        else:
            problems.append(f"{type(route).__name__} {path!r}: unknown kind of route, check it by hand "
                            "(and add it to PUBLIC_PATHS if it is meant to be open)")
    assert not problems, "\n".join(problems)
    # not vacuous: every operation the OpenAPI document lists was among those checked
    spec = (await api.get("/openapi.json")).json()
    listed = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops if path not in PUBLIC_PATHS}
    assert listed <= checked, listed - checked
    for known in [("GET", "/api/v1/me"), ("GET", "/api/v1/latest"), ("GET", "/api/v1/series"),
                  ("PUT", "/api/v1/kpis/{kpi_id}"), ("GET", "/api/v1/dead-letters"), ("POST", "/api/v1/agencies"),
                  ("GET", "/api/v1/audit"), ("GET", "/metrics"), ("GET", "/api/v1/areas")]:
        assert known in checked, known
    assert len(checked) >= 14


def _kpi_body(kpi_id: str, **over: Any) -> dict[str, Any]:
    body = {
        "id": kpi_id, "sector": kpi_id.split(".")[0], "name_vi": "Chỉ số thử nghiệm", "name_en": "Test indicator",
        "unit": "hồ sơ", "unit_en": "dossiers", "kind": "counter", "min": 0, "max": 1000, "integer": True,
        "target": None, "better": "higher", "interval": "1d", "description_vi": "", "description_en": "",
    }
    body.update(over)
    return body


def _agency_body(agency_id: str) -> dict[str, Any]:
    return {"id": agency_id, "name_vi": "Sở thử nghiệm", "name_en": "Test department", "sectors": ["tthc"]}


async def test_roles_per_route(api: Api, people: People) -> None:
    admin, operator, leader = people.admin[2], people.operator[2], people.leader[2]
    day = fresh_day()
    series = {"kpi": COUNTER, "bucket": "1h", "start": local_midnight(day).isoformat(),
              "end": local_midnight(day + timedelta(days=1)).isoformat()}

    async def status(method: str, url: str, token: str, **kw: Any) -> int:
        return (await api.request(method, url, token, **kw)).status_code

    # a leader reads, and changes nothing
    assert await status("GET", "/api/v1/latest", leader) == 200
    assert await status("GET", "/api/v1/series", leader, params=series) == 200
    assert await status("GET", "/api/v1/kpis", leader) == 200
    assert await status("GET", "/api/v1/areas?level=province", leader) == 200
    leader_kpi = f"tthc.leader_{secrets.token_hex(3)}"
    assert await status("PUT", f"/api/v1/kpis/{leader_kpi}", leader, json=_kpi_body(leader_kpi)) == 403
    assert await status("GET", f"/api/v1/kpis/{leader_kpi}", admin) == 404  # nothing was created
    leader_agency = uid("lead")
    assert await status("POST", "/api/v1/agencies", leader, json=_agency_body(leader_agency)) == 403
    for url in ("/api/v1/dead-letters", "/api/v1/audit", "/api/v1/agencies", "/api/v1/ingest/workers", "/metrics"):
        assert await status("GET", url, leader) == 403, url

    # an operator watches agencies and workers, but creates none and reads no audit log
    assert await status("GET", "/api/v1/agencies", operator) == 200
    assert await status("GET", "/api/v1/ingest/workers", operator) == 200
    assert await status("GET", "/api/v1/latest", operator) == 200
    op_agency = uid("oper")
    assert await status("POST", "/api/v1/agencies", operator, json=_agency_body(op_agency)) == 403
    assert await status("PUT", f"/api/v1/kpis/{leader_kpi}", operator, json=_kpi_body(leader_kpi)) == 403
    for url in ("/api/v1/audit", "/api/v1/dead-letters", "/metrics"):
        assert await status("GET", url, operator) == 403, url
    agencies = (await api.get("/api/v1/agencies", admin)).json()
    assert not {leader_agency, op_agency} & {a["id"] for a in agencies}

    # an admin does everything
    for url in ("/api/v1/latest", "/api/v1/kpis", "/api/v1/sectors", "/api/v1/dead-letters", "/api/v1/audit",
                "/api/v1/agencies", "/api/v1/ingest/workers", "/metrics", "/api/v1/me"):
        assert await status("GET", url, admin) == 200, url
    assert await status("GET", "/api/v1/series", admin, params=series) == 200
    admin_kpi = f"tthc.admin_{secrets.token_hex(3)}"
    assert await status("PUT", f"/api/v1/kpis/{admin_kpi}", admin, json=_kpi_body(admin_kpi)) == 201
    assert await status("POST", "/api/v1/agencies", admin, json=_agency_body(uid("admn"))) == 201


# --------------------------------------------------------------------------- 3. agencies' data


async def test_agency_isolation(api: Api, people: People) -> None:
    admin = people.admin[2]
    a, a_token = await api.agency(["tthc"])
    b, b_token = await api.agency(["tthc"])
    me = (await api.get("/api/v1/me", a_token)).json()
    assert me == {"username": a, "role": "agency", "agency": a, "sectors": ["tthc"]}
    kpi, shared_area, b_area = "tthc.dossiers_resolved", "13513", "13294"
    day = fresh_day()
    t0 = local_midnight(day) + timedelta(hours=8)
    await write(api.pool, [(t0 + timedelta(hours=h), kpi, shared_area, v, a) for h, v in ((0, 10), (2, 20), (4, 30))])
    await write(api.pool, [(t0 + timedelta(hours=h), kpi, shared_area, v, b) for h, v in ((1, 100), (3, 200))])
    await write(api.pool, [(t0 + timedelta(hours=5), kpi, b_area, 7, b)])

    # latest: an agency's own rows only
    a_latest = (await api.get("/api/v1/latest", a_token)).json()
    assert a_latest and all(row["agency"] == a for row in a_latest)
    assert {(r["kpi"], r["area"]) for r in a_latest} == {(kpi, shared_area)}
    assert a_latest[0]["value"] == 30 and a_latest[0]["sector"] == "tthc"
    # where the other agency reported later, an agency still sees the newest of its own (its
    # reporting form shows it beside the field)
    b_latest = (await api.get("/api/v1/latest", b_token, params={"kpi": kpi})).json()
    assert {(r["kpi"], r["area"], r["agency"], r["value"]) for r in b_latest} == {(kpi, b_area, b, 7),
                                                                               (kpi, shared_area, b, 200)}
    everyone = (await api.get("/api/v1/latest", admin, params={"kpi": kpi, "area": [shared_area, b_area]})).json()
    assert {(r["area"], r["agency"]) for r in everyone} == {(shared_area, a), (b_area, b)}

    # series: an agency aggregates its own readings only
    span = {"kpi": kpi, "bucket": "1d", "start": local_midnight(day).isoformat(),
            "end": local_midnight(day + timedelta(days=1)).isoformat()}

    async def points(token: str, **extra: Any) -> list[tuple[float, int]]:
        r = await api.get("/api/v1/series", token, params={**span, **extra})
        assert r.status_code == 200, r.text
        return [(p["value"], p["n"]) for p in r.json()["points"]]

    assert await points(a_token, area=shared_area) == [(60, 3)]
    assert await points(a_token) == [(60, 3)]
    assert await points(b_token, area=shared_area) == [(300, 2)]
    assert await points(b_token) == [(307, 3)]
    assert await points(admin, area=shared_area) == [(360, 5)]
    assert await points(a_token, area=shared_area, bucket="1h") == [(10, 1), (20, 1), (30, 1)]

    # a KPI of another sector is not the agency's business
    for other in (GAUGE, "yte.outpatient_visits"):
        r = await api.get("/api/v1/series", a_token, params={**span, "kpi": other})
        assert r.status_code == 403, r.text
    assert (await api.get("/api/v1/series", a_token, params={**span, "kpi": "tthc.on_time_rate"})).status_code == 200

    # dead letters: its own, and asking for another's is refused
    async with api.pool.acquire() as conn:
        for who in (a, b):
            await conn.execute(
                "INSERT INTO dead_letters (agency, topic, reason, kpi, area, payload, payload_bytes) "
                "VALUES ($1, $2, $3, $4, '35', '{}', 2)", who, f"ioc/v1/kpi/{who}", f"test reason for {who}", kpi)
    a_dead = (await api.get("/api/v1/dead-letters", a_token)).json()
    assert [d["reason"] for d in a_dead] == [f"test reason for {a}"]
    assert (await api.get("/api/v1/dead-letters", a_token, params={"agency": a})).status_code == 200
    r = await api.get("/api/v1/dead-letters", a_token, params={"agency": b})
    assert r.status_code == 403, r.text
    b_dead = (await api.get("/api/v1/dead-letters", admin, params={"agency": b})).json()
    assert [d["reason"] for d in b_dead] == [f"test reason for {b}"]

    # and nothing of the staff's
    for url in ("/api/v1/agencies", "/api/v1/audit", "/api/v1/ingest/workers", "/metrics"):
        assert (await api.get(url, a_token)).status_code == 403, url
    r = await api.request("PUT", f"/api/v1/kpis/tthc.agency_{secrets.token_hex(3)}", a_token,
                          json=_kpi_body(f"tthc.agency_{secrets.token_hex(3)}"))
    assert r.status_code == 403


# --------------------------------------------------------------------------- 4. catalogue


async def test_catalogue_lists_the_shipped_kpis(api: Api, people: People) -> None:
    r = await api.get("/api/v1/kpis", people.leader[2])
    assert r.status_code == 200
    kpis = {k["id"]: k for k in r.json()}
    assert len(kpis) >= 40
    _, shipped = shipped_catalogue()
    assert {k.id for k in shipped} <= set(kpis)
    for k in kpis.values():
        assert k["name_vi"].strip() and k["name_en"].strip(), k["id"]
    assert kpis[COUNTER]["kind"] == "counter" and kpis[GAUGE]["kind"] == "gauge"
    mt = (await api.get("/api/v1/kpis", people.leader[2], params={"sector": "mt"})).json()
    assert mt and all(k["sector"] == "mt" for k in mt) and GAUGE in {k["id"] for k in mt}
    one = await api.get(f"/api/v1/kpis/{COUNTER}", people.leader[2])
    assert one.status_code == 200 and one.json() == kpis[COUNTER]
    assert (await api.get("/api/v1/kpis/tthc.no_such_thing", people.leader[2])).status_code == 404
    sectors = {s["id"] for s in (await api.get("/api/v1/sectors", people.leader[2])).json()}
    assert {"tthc", "dvc", "cds", "yte", "gd", "mt", "gt", "an"} <= sectors


async def test_admin_creates_and_updates_a_kpi_with_audit(api: Api, people: People) -> None:
    admin_name, admin = people.admin[0], people.admin[2]
    kpi_id = f"tthc.new_indicator_{secrets.token_hex(3)}"
    body = _kpi_body(kpi_id, target=900, name_vi="Hồ sơ mới tiếp nhận")
    r = await api.request("PUT", f"/api/v1/kpis/{kpi_id}", admin, json=body)
    assert r.status_code == 201, r.text
    got = (await api.get(f"/api/v1/kpis/{kpi_id}", admin)).json()
    no_fraction = {"numerator_vi": "", "numerator_en": "", "denominator_vi": "", "denominator_en": "",
                   "numerator_within": True}  # a counter: the ratio fields keep their defaults
    assert got == {**body, "min": 0.0, "max": 1000.0, "target": 900.0, **no_fraction}
    r = await api.request("PUT", f"/api/v1/kpis/{kpi_id}", admin, json={**body, "name_en": "Renamed", "max": 5000})
    assert r.status_code == 200, r.text
    got = (await api.get(f"/api/v1/kpis/{kpi_id}", admin)).json()
    assert got["name_en"] == "Renamed" and got["max"] == 5000
    assert kpi_id in {k["id"] for k in (await api.get("/api/v1/kpis", admin)).json()}
    log = (await api.get("/api/v1/audit", admin, params={"subject": kpi_id})).json()
    assert [(e["action"], e["actor"], e["subject"]) for e in log] == [
        ("kpi.updated", admin_name, kpi_id), ("kpi.created", admin_name, kpi_id)]
    assert log[0]["details"]["name_en"] == "Renamed" and log[1]["details"]["name_en"] == "Test indicator"
    only_created = (await api.get("/api/v1/audit", admin, params={"subject": kpi_id, "action": "kpi.created"})).json()
    assert [e["action"] for e in only_created] == ["kpi.created"]


async def test_invalid_kpi_bodies_get_422_with_a_reason(api: Api, people: People) -> None:
    admin = people.admin[2]
    hexid = secrets.token_hex(3)
    url_id = f"tthc.bad_{hexid}"
    cases = {
        "min >= max": (url_id, _kpi_body(url_id, min=10, max=10), "min must be below max"),
        "ratio over 100": (url_id, _kpi_body(url_id, kind="ratio", integer=False, max=200), "0..100"),
        "fractional counter": (url_id, _kpi_body(url_id, integer=False), "integer = true"),
        "id vs sector": (url_id, _kpi_body(url_id, sector="yte"), "must start with its sector"),
        "unknown sector": (f"zz.bad_{hexid}", _kpi_body(f"zz.bad_{hexid}"), "unknown sector"),
        "id vs URL": (url_id, _kpi_body(f"tthc.other_{hexid}"), "must match the URL"),
        "target out of range": (url_id, _kpi_body(url_id, target=5000), "target"),
        "bad interval": (url_id, _kpi_body(url_id, interval="soon"), "interval"),
        "bad kind": (url_id, _kpi_body(url_id, kind="sum"), "kind"),
    }
    for label, (path_id, body, reason) in cases.items():
        r = await api.request("PUT", f"/api/v1/kpis/{path_id}", admin, json=body)
        assert r.status_code == 422, (label, r.status_code, r.text)
        assert reason in r.text, (label, r.text)
    for kid in (url_id, f"zz.bad_{hexid}", f"tthc.other_{hexid}"):
        assert (await api.get(f"/api/v1/kpis/{kid}", admin)).status_code == 404, kid
    assert (await api.get("/api/v1/audit", admin, params={"subject": url_id})).json() == []


async def test_sql_looking_text_is_stored_verbatim(api: Api, people: People) -> None:
    admin = people.admin[2]
    kpi_id = f"tthc.quoted_{secrets.token_hex(3)}"
    nasty = {"name_vi": "x'); DROP TABLE kpis; --", "name_en": "Robert'); DELETE FROM users;--",
             "unit": "%s $1 \\", "description_en": "'; TRUNCATE audit_log; -- \" ` $$ \\x00"}
    r = await api.request("PUT", f"/api/v1/kpis/{kpi_id}", admin, json=_kpi_body(kpi_id, **nasty))
    assert r.status_code == 201, r.text
    got = (await api.get(f"/api/v1/kpis/{kpi_id}", admin)).json()
    assert {k: got[k] for k in nasty} == nasty
    listed = (await api.get("/api/v1/kpis", admin)).json()
    assert len(listed) >= 40 and kpi_id in {k["id"] for k in listed}
    # and in query parameters
    assert (await api.get("/api/v1/kpis", admin, params={"sector": "tthc' OR '1'='1"})).json() == []
    assert (await api.get("/api/v1/audit", admin, params={"subject": "x' OR 1=1 --"})).json() == []
    r = await api.get("/api/v1/series", admin, params={"kpi": "x' OR 1=1 --", "bucket": "1d"})
    assert r.status_code == 404
    assert (await api.get("/api/v1/me", admin)).status_code == 200  # users still there


# --------------------------------------------------------------------------- 5. series


Key = Callable[[datetime], datetime]


def _hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _2h(ts: datetime) -> datetime:
    loc = ts.astimezone(TZ)  # multi-hour buckets start at local midnight, not UTC's
    return loc.replace(hour=loc.hour // 2 * 2, minute=0, second=0, microsecond=0)


def _6h(ts: datetime) -> datetime:
    loc = ts.astimezone(TZ)
    return loc.replace(hour=loc.hour // 6 * 6, minute=0, second=0, microsecond=0)


def _day(ts: datetime) -> datetime:
    return ts.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)


def _week(ts: datetime) -> datetime:
    d = _day(ts)
    return d - timedelta(days=d.weekday())


def _month(ts: datetime) -> datetime:
    return _day(ts).replace(day=1)


def _15m(ts: datetime) -> datetime:
    return ts.replace(minute=ts.minute // 15 * 15, second=0, microsecond=0)


def expected_points(readings: list[tuple[datetime, float]], key: Key, kind: str) -> dict[datetime, dict[str, Any]]:
    groups: dict[datetime, list[tuple[datetime, float]]] = defaultdict(list)
    for ts, v in readings:
        groups[key(ts)].append((ts, v))
    out = {}
    for b, items in groups.items():
        values = [v for _, v in items]
        out[b] = {
            "value": sum(values) if kind == "counter" else sum(values) / len(values),
            "n": len(values), "min": min(values), "max": max(values), "last": max(items)[1],
            "last_ts": max(items)[0],
        }
    return out


def got_points(body: dict[str, Any]) -> dict[datetime, dict[str, Any]]:
    out = {}
    for p in body["points"]:
        b = datetime.fromisoformat(p["bucket"])
        assert b.tzinfo is not None, p
        out[b] = {k: p[k] for k in ("value", "n", "min", "max", "last")}
        out[b]["last_ts"] = datetime.fromisoformat(p["last_ts"])
    return out


def assert_same(got: dict[datetime, dict[str, Any]], want: dict[datetime, dict[str, Any]], label: str) -> None:
    assert sorted(got) == sorted(want), (label, sorted(got), sorted(want))
    for b in want:
        for field in ("value", "min", "max", "last"):
            assert got[b][field] == pytest.approx(want[b][field]), (label, b, field, got[b], want[b])
        assert got[b]["n"] == want[b]["n"], (label, b, got[b], want[b])
        # pages skip live readings up to it (dashboards/PROTOCOL.md, "chart")
        assert got[b]["last_ts"] == want[b]["last_ts"], (label, b, got[b], want[b])


async def test_counter_series_buckets_match_python(api: Api, people: People) -> None:
    token = people.leader[2]  # staff reads go through the roll-ups
    area = "13444"
    day = fresh_day()
    rng = random.Random()
    first = datetime(day.year, day.month, day.day, tzinfo=UTC)  # 07:00 local: days split unevenly
    data = [(first + timedelta(hours=h), float(rng.randrange(0, 500))) for h in range(72)]
    # a busy hour with readings inside it, for the 15-minute buckets
    data += [(first + timedelta(hours=5, minutes=m), float(rng.randrange(0, 50))) for m in (10, 20, 50)]
    await write(api.pool, [(ts, COUNTER, area, v, "test-api-series") for ts, v in data])
    start, end = local_midnight(day), local_midnight(day + timedelta(days=4))

    async def fetch(bucket: str, s: datetime = start, e: datetime = end) -> dict[str, Any]:
        r = await api.get("/api/v1/series", token,
                          params={"kpi": COUNTER, "area": area, "bucket": bucket, "start": s.isoformat(),
                                  "end": e.isoformat()})
        assert r.status_code == 200, (bucket, r.text)
        return r.json()

    body = await fetch("1d")
    assert body["aggregate"] == "sum" and body["kpi"] == COUNTER and body["unit"]
    assert len(body["points"]) == 4  # 17 + 24 + 24 + 7 hours of local days
    for bucket, key in (("1d", _day), ("1h", _hour), ("6h", _6h), ("1w", _week), ("1M", _month), ("15m", _15m),
                        ("2h", _2h)):
        assert_same(got_points(await fetch(bucket)), expected_points(data, key, "counter"), bucket)
    # a window inside the data: hourly buckets from its start, raw minutes within it
    s, e = first + timedelta(hours=5), first + timedelta(hours=7)
    inside = [(ts, v) for ts, v in data if s <= ts < e]
    assert_same(got_points(await fetch("1h", s, e)), expected_points(inside, _hour, "counter"), "1h window")
    assert_same(got_points(await fetch("15m", s, e)), expected_points(inside, _15m, "counter"), "15m window")

    # a correction (a higher revision) changes the series; the day's roll-up follows
    fixed_ts, old = data[30]
    await write(api.pool, [(fixed_ts, COUNTER, area, old + 1000, "test-api-series")], revision=1)
    data[30] = (fixed_ts, old + 1000)
    for bucket, key in (("1d", _day), ("1h", _hour), ("1w", _week)):
        assert_same(got_points(await fetch(bucket)), expected_points(data, key, "counter"), f"{bucket} corrected")
    log = (await api.get("/api/v1/audit", people.admin[2],
                         params={"subject": f"{COUNTER}/{area}@", "action": "reading.corrected"})).json()
    assert [(e["details"]["old_value"], e["details"]["new_value"]) for e in log] == [(old, old + 1000)]


async def test_month_buckets_hold_a_months_last_days(api: Api, people: People) -> None:
    """A month is a local month: its last days (30 and 31 March, local) count in March. The
    plain roll-up once ended the month from 1 March 00:00 local (29 February 17:00 UTC) a
    month later in UTC, on 29 March, and March's row lost them (or, with no day left, vanished)."""
    area = "13445"
    data = [(datetime(2023, 3, 30, 9, tzinfo=TZ), 5.0), (datetime(2023, 3, 31, 23, 30, tzinfo=TZ), 7.0),
            (datetime(2023, 4, 1, 0, 30, tzinfo=TZ), 11.0)]
    await write(api.pool, [(ts.astimezone(UTC), COUNTER, area, v, "test-api-months") for ts, v in data])
    r = await api.get("/api/v1/series", people.leader[2], params={
        "kpi": COUNTER, "area": area, "bucket": "1M", "start": local_midnight(date(2023, 3, 30)).isoformat(),
        "end": local_midnight(date(2023, 4, 3)).isoformat()})
    assert r.status_code == 200, r.text
    got = [(datetime.fromisoformat(p["bucket"]).astimezone(TZ).date().isoformat(), p["value"]) for p in r.json()["points"]]
    assert got == [("2023-03-01", 12.0), ("2023-04-01", 11.0)], got


async def test_gauge_series_is_the_mean(api: Api, people: People) -> None:
    token = people.operator[2]
    area = "13507"
    day = fresh_day()
    rng = random.Random()
    first = local_midnight(day) + timedelta(hours=3)
    data = [(first + timedelta(hours=h), float(rng.randrange(0, 500))) for h in range(48)]
    await write(api.pool, [(ts, GAUGE, area, v, "test-api-gauge") for ts, v in data])
    params = {"kpi": GAUGE, "area": area, "start": local_midnight(day).isoformat(),
              "end": local_midnight(day + timedelta(days=3)).isoformat()}
    for bucket, key in (("1d", _day), ("6h", _6h), ("1h", _hour), ("30m", _15m)):
        r = await api.get("/api/v1/series", token, params={**params, "bucket": bucket})
        assert r.status_code == 200, r.text
        assert r.json()["aggregate"] == "mean"
        assert_same(got_points(r.json()), expected_points(data, key, "gauge"), bucket)


async def test_the_rollup_loop_runs_in_the_background(api: Api) -> None:
    area, day = "13426", fresh_day()
    ts = local_midnight(day) + timedelta(hours=10)
    await write(api.pool, [(ts, COUNTER, area, 5, "test-api-loop"), (ts + timedelta(minutes=30), COUNTER, area, 6,
                                                                      "test-api-loop")])
    deadline = time.monotonic() + 10
    row = None
    while time.monotonic() < deadline:
        async with api.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT n, sum FROM readings_hourly WHERE kpi = $1 AND area = $2 AND bucket = $3",
                                      COUNTER, area, _hour(ts))
            dirty = await conn.fetchval("SELECT count(*) FROM rollup_dirty WHERE kpi = $1 AND area = $2", COUNTER, area)
        if row is not None and dirty == 0:
            break
        await asyncio.sleep(0.1)
    assert row is not None and (row["n"], row["sum"]) == (2, 11.0)


async def test_concurrent_series_requests_share_one_refresh(api: Api, people: People, storage_mode: str) -> None:
    """A burst of /series requests while the refresh cannot start (its lock held here) waits
    for one refresh together, not one each (every one holding a connection), and every
    answer holds the reading written just before the burst."""
    if storage_mode != "plain":
        pytest.skip("holds plain mode's per-KPI refresh lock; TimescaleDB's is one for all KPIs")
    n = 12
    area = "13444"
    day = fresh_day()
    ts = datetime(day.year, day.month, day.day, 3, 20, tzinfo=UTC)
    params = {"kpi": COUNTER, "area": area, "bucket": "1h", "start": ts.replace(minute=0).isoformat(),
              "end": (ts + timedelta(hours=1)).isoformat()}
    flight = api.app.state.rollup_flight
    waiting_for_lock = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                        "AND classid = $1::oid AND objid = hashtext($2)::oid AND objsubid = 2")
    held = await api.pool.acquire()
    tx = held.transaction()
    await tx.start()
    try:
        await held.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", rollups.REFRESH_LOCK_KEY, COUNTER)
        # written while the lock is held: not even the app's background round can roll it up
        await write(api.pool, [(ts, COUNTER, area, 321.0, "test-api-flight")])
        runs = flight.runs
        burst = [asyncio.create_task(api.get("/api/v1/series", people.leader[2], params=params)) for _ in range(n)]
        deadline = time.monotonic() + 60
        while True:
            in_db = await api.pool.fetchval(waiting_for_lock, rollups.REFRESH_LOCK_KEY, COUNTER)
            # beside the requests' refresh, the background round may be waiting too
            assert in_db <= 2, f"{in_db} refreshes wait for the lock, for {n} requests"
            if flight.waiting == n:
                break
            assert time.monotonic() < deadline, f"{flight.waiting} of {n} requests reached the refresh in 60 s"
            await asyncio.sleep(0.05)
    finally:
        await tx.rollback()  # lets the refresh go
        await api.pool.release(held)
    answers = await asyncio.gather(*burst)
    assert [r.status_code for r in answers] == [200] * n, [r.text for r in answers if r.status_code != 200][:1]
    assert all([p["value"] for p in r.json()["points"]] == [321.0] for r in answers), answers[0].json()
    assert flight.runs == runs + 1


async def test_series_rejects_bad_requests(api: Api, people: People) -> None:
    token = people.leader[2]
    end = local_midnight(fresh_day())
    good = {"kpi": COUNTER, "bucket": "1h", "start": (end - timedelta(days=1)).isoformat(), "end": end.isoformat()}
    bad = {
        "unknown unit": ({"bucket": "7x"}, "bucket"),
        "zero": ({"bucket": "0h"}, "bucket"),
        "empty": ({"bucket": ""}, "bucket"),
        "two months": ({"bucket": "2M"}, "month"),
        "end before start": ({"start": end.isoformat(), "end": (end - timedelta(days=1)).isoformat()}, "after"),
        "empty range": ({"start": end.isoformat(), "end": end.isoformat()}, "after"),
        "too many buckets": ({"bucket": "1m", "start": (end - timedelta(days=30)).isoformat()}, "10000"),
        "naive start": ({"start": "2024-03-01T00:00:00"}, "offset"),
        "naive end": ({"end": "2024-03-02T00:00:00"}, "offset"),
        "not a date": ({"start": "yesterday"}, "start"),
    }
    for label, (change, reason) in bad.items():
        r = await api.get("/api/v1/series", token, params={**good, **change})
        assert r.status_code == 422, (label, r.status_code, r.text)
        assert reason in r.text, (label, r.text)
    r = await api.get("/api/v1/series", token, params={**good, "kpi": "tthc.no_such_kpi"})
    assert r.status_code == 404 and "unknown kpi" in r.json()["detail"]
    assert (await api.get("/api/v1/series", token, params={"bucket": "1h"})).status_code == 422  # kpi missing
    assert (await api.get("/api/v1/series", token, params=good)).status_code == 200


# --------------------------------------------------------------------------- 6. areas


async def test_areas_by_level_and_parent(api: Api, people: People) -> None:
    token = people.leader[2]
    with AREAS_CSV.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    districts = {r["code"] for r in rows if r["level"] == "district"}
    phu_ly = {r["code"] for r in rows if r["parent_code"] == "347"}
    assert len(districts) == 6 and len(phu_ly) > 5
    r = await api.get("/api/v1/areas", token, params={"level": "district"})
    assert r.status_code == 200
    assert {a["code"] for a in r.json()} == districts
    assert all(a["parent_code"] == "35" and a["name_vi"] and a["name_en"] for a in r.json())
    r = await api.get("/api/v1/areas", token, params={"parent": "347"})
    assert {a["code"] for a in r.json()} == phu_ly
    assert {a["level"] for a in r.json()} == {"commune"}
    province = (await api.get("/api/v1/areas", token, params={"level": "province", "on": "2025-06-30"})).json()
    assert [(a["code"], a["name_vi"]) for a in province] == [
        ("35", "Tỉnh Hà Nam"), ("36", "Tỉnh Nam Định"), ("37", "Tỉnh Ninh Bình")]
    assert province[0]["valid_to"] == "2025-06-30"
    after = (await api.get("/api/v1/areas", token, params={"level": "province", "on": "2025-07-01"})).json()
    assert [(a["code"], a["valid_from"], a["valid_to"]) for a in after] == [("37", "2025-07-01", None)]
    assert (await api.get("/api/v1/areas", token, params={"parent": "no-such"})).json() == []


# --------------------------------------------------------------------------- 7. agencies


async def test_admin_adds_an_agency_and_gets_its_password_once(api: Api, people: People) -> None:
    admin_name, admin = people.admin[0], people.admin[2]
    agency_id = uid("newag")
    r = await api.request("POST", "/api/v1/agencies", admin, json=_agency_body(agency_id))
    assert r.status_code == 201, r.text
    made = r.json()
    password = made["mqtt_password"]
    assert made["id"] == made["mqtt_username"] == agency_id and len(password) >= 16
    assert made["publish_topic"] == f"ioc/v1/kpi/{agency_id}" and made["ack_topic"] == f"ioc/v1/ack/{agency_id}"
    listed = await api.get("/api/v1/agencies", people.operator[2])
    assert listed.status_code == 200 and password not in listed.text
    mine = [a for a in listed.json() if a["id"] == agency_id]
    assert len(mine) == 1 and mine[0]["sectors"] == ["tthc"] and mine[0]["disabled"] is False
    assert mine[0]["name_vi"] == "Sở thử nghiệm"
    # the password is the agency's own API login too
    r = await api.login(agency_id, password, ip="10.7.0.1")
    assert r.status_code == 200 and r.json()["role"] == "agency" and r.json()["agency"] == agency_id
    log = (await api.get("/api/v1/audit", admin, params={"subject": agency_id, "action": "agency.created"})).json()
    assert [(e["actor"], e["details"]) for e in log] == [(admin_name, {"sectors": ["tthc"]})]
    # the same id again, or a name an account already has
    for taken in (agency_id, people.leader[0]):
        r = await api.request("POST", "/api/v1/agencies", admin, json=_agency_body(taken))
        assert r.status_code == 422, (taken, r.text)
        assert "already" in r.json()["detail"][0]["msg"]


async def test_bad_agency_ids_get_422(api: Api, people: People) -> None:
    admin = people.admin[2]
    for bad in ("Upper-case", "a/b", "ab+", "ab#", "x", "-lead", "ab c", "a" * 33, "$share", "ab\u00e9"):
        r = await api.request("POST", "/api/v1/agencies", admin, json=_agency_body(bad))
        assert r.status_code == 422, (bad, r.text)
        assert "agency id" in r.text, (bad, r.text)
    r = await api.request("POST", "/api/v1/agencies", admin, json={**_agency_body(uid("sect")), "sectors": ["nope"]})
    assert r.status_code == 422 and "unknown sector" in r.json()["detail"][0]["msg"]
    r = await api.request("POST", "/api/v1/agencies", admin, json={**_agency_body(uid("sect")), "sectors": []})
    assert r.status_code == 422
    r = await api.request("POST", "/api/v1/agencies", admin, json={**_agency_body(uid("name")), "name_vi": "  "})
    assert r.status_code == 422
    names = {a["id"] for a in (await api.get("/api/v1/agencies", admin)).json()}
    assert not {n for n in names if n.startswith(("sect-", "name-"))}


# --------------------------------------------------------------------------- 8. health and metrics


async def test_healthz_is_open(api: Api, storage_mode: str) -> None:
    r = await api.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "storage_mode": storage_mode}


async def test_metrics_need_admin_or_the_metrics_token(api: Api, people: People, storage_mode: str) -> None:
    worker = uid("w-api")
    async with api.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO ingest_workers (worker_id, started_at, last_seen, messages, readings_accepted, "
            "readings_rejected, commit_lag_p50_ms) VALUES ($1, now(), now(), 777, 12345, 3, 12.5)", worker)
    assert (await api.get("/metrics")).status_code == 401
    assert (await api.get("/metrics", "not-the-token")).status_code == 401
    assert (await api.get("/metrics", people.leader[2])).status_code == 403
    assert (await api.get("/metrics", people.operator[2])).status_code == 403
    # the metrics token opens /metrics and nothing else
    assert (await api.get("/api/v1/me", METRICS_TOKEN)).status_code == 401
    for token in (people.admin[2], METRICS_TOKEN):
        r = await api.get("/metrics", token)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        lines = set(r.text.splitlines())
        assert f'ioc_ingest_readings_accepted_total{{worker="{worker}"}} 12345.0' in lines, r.text
        assert f'ioc_ingest_messages_total{{worker="{worker}"}} 777.0' in lines
        assert f'ioc_ingest_readings_rejected_total{{worker="{worker}"}} 3.0' in lines
        assert f'ioc_ingest_commit_lag_p50_seconds{{worker="{worker}"}} 0.0125' in lines
        # prometheus_client names a CounterMetricFamily's samples <name>_total (newer releases
        # put _total in the TYPE line too)
        assert lines & {"# TYPE ioc_ingest_readings_accepted counter", "# TYPE ioc_ingest_readings_accepted_total counter"}
        assert f'ioc_storage_mode{{mode="{storage_mode}"}} 1.0' in lines
        assert any(line.startswith("ioc_rollup_dirty_hours ") for line in lines)


async def test_metrics_token_with_odd_bytes_is_refused_not_a_crash(api: Api) -> None:
    async with api.client(ip="10.8.0.1") as c:
        r = await c.get("/metrics", headers={"Authorization": b"Bearer caf\xc3\xa9"})
    assert r.status_code == 401, r.text


# --------------------------------------------------------------------------- hostile input

_KPI_JSON = ('{"id": "tthc.hostile_%s", "sector": "tthc", "name_vi": "a", "name_en": "b", "unit": "u", '
             '"kind": "gauge", "min": 0, "better": "higher", %s}')


HOSTILE = [
    pytest.param("POST", "/api/v1/auth/token", None, {"data": {"username": "a\x00b", "password": "whatever-123"}},
                 id="nul-login-name"),
    pytest.param("GET", "/api/v1/kpis/a%00b", "admin", {}, id="nul-kpi-path"),
    pytest.param("GET", "/api/v1/latest", "leader", {"params": {"area": "\x00"}},
                 id="nul-latest-area"),
    pytest.param("GET", "/api/v1/dead-letters", "admin", {"params": {"before_id": str(10**20)}}, id="huge-before-id"),
    pytest.param("GET", "/api/v1/series", "leader",
                 {"params": {"kpi": COUNTER, "bucket": "1h", "start": "9999-12-31T00:00:00+00:00",
                             "end": "9999-12-31T23:00:00-12:00"}}, id="series-end-9999"),
    pytest.param("PUT", "/api/v1/kpis/tthc.hostile_{h}", "admin", {"content": _KPI_JSON % ("{h}", '"max": 10, "interval": "99999999999d"')}, id="interval-overflow"),
    pytest.param("PUT", "/api/v1/kpis/tthc.hostile_{h}", "admin", {"content": _KPI_JSON % ("{h}", '"max": NaN')}, id="nan-max"),
    pytest.param("PUT", "/api/v1/kpis/tthc.hostile_{h}", "admin", {"content": _KPI_JSON % ("{h}", '"max": Infinity')}, id="infinite-max"),
    pytest.param("PUT", "/api/v1/kpis/tthc.hostile_{h}", "admin", {"content": _KPI_JSON % ("{h}", '"max": 10, "name_vi": "a\\u0000"')}, id="nul-kpi-name"),
    pytest.param("POST", "/api/v1/agencies", "admin", {"json": {"id": "ab\x00", "name_vi": "x", "sectors": ["tthc"]}},
                 id="nul-agency-id"),
    pytest.param("GET", "/api/v1/series", "leader", {"params": {"kpi": COUNTER, "bucket": "1h", "start": "0001-01-01T00:00:00Z",
                                                                "end": "0001-01-02T00:00:00Z"}}, id="series-year-1"),
]


@pytest.mark.parametrize(("method", "url", "role", "kw"), HOSTILE)
async def test_hostile_input_gets_a_4xx_not_a_500(api: Api, people: People, method: str, url: str, role: str | None,
                                                  kw: dict[str, Any]) -> None:
    h = secrets.token_hex(3)
    token = getattr(people, role)[2] if role else None
    if "content" in kw:
        kw = {"content": kw["content"].replace("{h}", h), "headers": {"content-type": "application/json"}}
    r = await api.request(method, url.replace("{h}", h), token, ip="10.9.0.1", crash=False, **kw)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if method == "PUT":
        assert r.status_code == 422, r.text


# --------------------------------------------------------------------------- 9. docs


async def test_docs_and_openapi_are_served(api: Api) -> None:
    r = await api.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    r = await api.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {"/api/v1/auth/token", "/api/v1/series", "/api/v1/latest", "/api/v1/kpis/{kpi_id}"} <= set(spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("flows", {}).get("password", {}).get("tokenUrl") == "/api/v1/auth/token" for s in schemes.values())
    assert (await api.get("/docs-assets/swagger-ui-bundle.js")).status_code == 200  # served here, not by a CDN




# ------------------------------------------------------------- 9. roll-ups over areas and reforms


RATIO = "tthc.on_time_rate"
RESOLVED = "tthc.dossiers_resolved"


async def write_parts(pool: asyncpg.Pool, rows: list[tuple[datetime, str, str, float, float | None, float | None]]) -> None:
    """Store (ts, kpi, area, value, numerator, denominator) through the ingest's write path."""
    now = datetime.now(UTC)
    readings = [Reading(ts, kpi, area, float(v), "test-reform", 0, None, now, num, den) for ts, kpi, area, v, num, den in rows]
    async with pool.acquire() as conn:
        out = await ReadingStore().write(conn, readings, [])
    assert len(out.written) == len(readings), (out.duplicates, out.conflicts)


def _local_day(point: dict[str, Any]) -> str:
    return datetime.fromisoformat(point["bucket"]).astimezone(TZ).date().isoformat()


def _at(day: int, month: int = 6, hour: int = 9) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=TZ)


@pytest.fixture(scope="module")
async def reform_readings(api: Api) -> None:
    """Around the 2025 reform: Hà Nam (35), Nam Định (36) and the old Ninh Bình (37) until
    30 June, the new Ninh Bình (37) from 1 July."""
    await write_parts(api.pool, [
        # 29 June: parts everywhere. 99 of 100 and 1 of 10: weighted 100 / 110 = 90.9 %,
        # while the mean of the percentages (99 % and 10 %) would be 54.5 %
        (_at(29), RATIO, "35", 99.0, 99, 100), (_at(29), RATIO, "36", 10.0, 1, 10),
        # 30 June: one agency sent a bare percentage: no honest total
        (_at(30), RATIO, "35", 95.0, None, None), (_at(30), RATIO, "36", 50.0, 5, 10),
        # 1 July: the new province, one bare reading: shown as it is, nothing to combine
        (_at(1, 7), RATIO, "37", 97.0, None, None),
        # 2 July: the new province with its parts
        (_at(2, 7), RATIO, "37", 96.0, 48, 50),
        # counters: before the reform the three old provinces and Hà Nam's districts (part of
        # Hà Nam's figure: not counted twice); after it the new province
        (_at(30), RESOLVED, "35", 100, None, None), (_at(30), RESOLVED, "36", 50, None, None),
        (_at(30), RESOLVED, "37", 30, None, None), (_at(30), RESOLVED, "347", 40, None, None),
        (_at(1, 7), RESOLVED, "37", 170, None, None),
    ])


async def _reform_series(api: Api, token: str, kpi: str, bucket: str, area: str = "37") -> dict[str, Any]:
    r = await api.get("/api/v1/series", token, params={
        "kpi": kpi, "area": area, "bucket": bucket,
        "start": datetime(2025, 6, 29, tzinfo=TZ).isoformat(), "end": datetime(2025, 7, 3, tzinfo=TZ).isoformat()})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_ratio_over_areas_is_weighted_never_a_mean_of_percentages(
    api: Api, people: People, reform_readings: None
) -> None:
    token = people.leader[2]
    for bucket in ("1d", "1h", "30m"):  # daily and hourly roll-ups, and the readings themselves
        body = await _reform_series(api, token, RATIO, bucket)
        assert body["aggregate"] == "sum(numerator) / sum(denominator)"
        points = {_local_day(p): p for p in body["points"]}
        june29 = points["2025-06-29"]
        assert june29["value"] == pytest.approx(100 * 100 / 110), bucket  # 90.9 %, not 54.5 %
        assert (june29["numerator"], june29["denominator"], june29["reason"]) == (100, 110, None)
        assert points["2025-07-02"]["value"] == pytest.approx(96.0)


async def test_bare_percentages_are_not_aggregated(api: Api, people: People, reform_readings: None) -> None:
    token = people.leader[2]
    for bucket in ("1d", "1h"):
        points = {_local_day(p): p for p in (await _reform_series(api, token, RATIO, bucket))["points"]}
        june30 = points["2025-06-30"]
        assert june30["value"] is None and june30["n"] == 2
        assert june30["reason"].startswith("not aggregable: 1 of the 2 readings in this bucket are bare percentages")
        assert points["2025-07-01"]["value"] == 97.0 and points["2025-07-01"]["reason"] is None
    month = (await api.get("/api/v1/series", token, params={
        "kpi": RATIO, "area": "37", "bucket": "1M", "start": datetime(2025, 6, 1, tzinfo=TZ).isoformat(),
        "end": datetime(2025, 7, 1, tzinfo=TZ).isoformat()})).json()["points"]
    assert [p["value"] for p in month] == [None] and "bare percentages" in month[0]["reason"]


async def test_a_series_for_the_new_province_includes_the_units_it_succeeded(
    api: Api, people: People, reform_readings: None
) -> None:
    token = people.leader[2]
    body = await _reform_series(api, token, RESOLVED, "1d")
    assert [(_local_day(p), p["value"]) for p in body["points"]] == [("2025-06-30", 180.0), ("2025-07-01", 170.0)]
    reform = datetime(2025, 7, 1, tzinfo=TZ)
    got = sorted(((s["area"], s["share"], s["since"], s["until"]) for s in body["sources"]), key=str)
    assert got == sorted([("35", 1.0, None, reform.isoformat()), ("36", 1.0, None, reform.isoformat()),
                          ("37", 1.0, None, reform.isoformat()), ("37", 1.0, reform.isoformat(), None)], key=str)
    # an old unit's own series is its own readings
    old = await _reform_series(api, token, RESOLVED, "1d", area="35")
    assert [(_local_day(p), p["value"]) for p in old["points"]] == [("2025-06-30", 100.0)]
    # a split unit's share applies to counters (and to a ratio's parts)
    async with api.pool.acquire() as conn:
        points = await queries.series(
            conn, kpi=RESOLVED, kind="counter", area="37", start=datetime(2025, 6, 30, tzinfo=TZ), end=reform,
            bucket=queries.parse_bucket("1d"), timezone="Asia/Ho_Chi_Minh", agency=None,
            sources=[queries.SeriesSource("35", 0.25), queries.SeriesSource("36", 1.0)])
    assert [p["value"] for p in points] == [100 * 0.25 + 50]


async def test_a_province_figure_from_its_communes_is_weighted(api: Api, people: People) -> None:
    """`level=commune`: the province's rate from its communes' parts (Hà Nam's communes
    before the reform count for the new Ninh Bình), weighted; the communes' percentages
    averaged would give another figure."""
    token = people.leader[2]
    day = datetime(2025, 5, 12, 10, tzinfo=TZ)
    # Phường Quang Trung (Phủ Lý) 50 of 50, Xã Hợp Lý (Lý Nhân) 10 of 40: 60 / 90 = 66.7 %,
    # the mean of 100 % and 25 % would be 62.5 %; the province's own bare reading is not used
    await write_parts(api.pool, [(day, RATIO, "13285", 100.0, 50, 50), (day, RATIO, "13567", 25.0, 10, 40),
                                 (day, RATIO, "35", 99.0, None, None)])
    params = {"kpi": RATIO, "area": "37", "bucket": "1d", "start": datetime(2025, 5, 12, tzinfo=TZ).isoformat(),
              "end": datetime(2025, 5, 13, tzinfo=TZ).isoformat()}
    body = (await api.get("/api/v1/series", token, params={**params, "level": "commune"})).json()
    assert [(p["value"], p["numerator"], p["denominator"]) for p in body["points"]] == [(pytest.approx(100 * 60 / 90), 60, 90)]
    assert len(body["sources"]) >= 98 and {"13285", "13567"} <= {s["area"] for s in body["sources"]}
    own = (await api.get("/api/v1/series", token, params=params)).json()
    assert [p["value"] for p in own["points"]] == [99.0]
    bad = await api.get("/api/v1/series", token, params={**params, "level": "village"})
    assert bad.status_code == 422 and "level" in bad.text
