"""Agencies that report by hand or over HTTP: the JSON endpoint and spreadsheet uploads go
through the real broker and the real `ioc ingest` (the MQTT path's validation, idempotency,
corrections and dead letters), against a real `ioc serve` and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import openpyxl
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ioc.core.accounts import broker_accounts, create_user
from tests.conftest import REPO, Agencies, IngestProcess, Stack
from tests.helpers import wait_value
from tests.test_ingest_resilience import readings, set_db_available
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client
from tests.rigs.serve import ServeProcess

KPI = "tthc.dossiers_received"
RATE = "tthc.on_time_rate"


async def login(api: ServeProcess, username: str, password: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as http:
        r = await http.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def call(api: ServeProcess, method: str, path: str, headers: dict[str, str] | None = None,
               **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.base, timeout=60) as http:
        return await http.request(method, path, headers=headers or {}, **kw)


async def counts(pool: asyncpg.Pool, agency: str) -> tuple[int, int]:
    async with pool.acquire() as conn:
        readings = await conn.fetchval("SELECT count(*) FROM readings WHERE agency = $1", agency)
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters WHERE agency = $1", agency)
    return readings, dead


def hours_ago(h: int) -> str:
    return (datetime.now(timezone(timedelta(hours=7))).replace(microsecond=0) - timedelta(hours=h)).isoformat()


def last_month() -> str:
    now = datetime.now(timezone(timedelta(hours=7)))
    first = now.replace(day=1) - timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


async def test_json_endpoint_accepts_refuses_deduplicates_and_corrects_like_mqtt(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess, wall_api: ServeProcess
) -> None:
    agency, pw = await agencies.add(["tthc"], prefix="http")
    auth = await login(wall_api, agency, pw)
    ts = hours_ago(3)
    bad = [
        {"kpi": "tthc.nope", "ts": ts, "value": 1, "area": "35"},
        {"kpi": KPI, "ts": ts, "value": "12", "area": "35"},
        {"kpi": KPI, "ts": ts, "value": 1, "area": "99999"},
        {"kpi": "mt.aqi", "ts": ts, "value": 50, "area": "35"},
    ]
    good = {"kpi": KPI, "ts": ts, "value": 640, "area": "347", "msg_id": "http-1"}
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps([good, *bad]))
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["results"]
    assert [row["index"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row["status"] for row in rows] == ["accepted", "refused", "refused", "refused", "refused"]
    assert body["counts"]["accepted"] == 1 and body["counts"]["refused"] == 4
    assert await counts(pool, agency) == (1, 4)  # stored, and dead-lettered like MQTT's rejects

    # the reasons are the MQTT path's own: the same items over MQTT get the same words
    other, other_pw = await agencies.add(["tthc"], prefix="mqtt")
    client = await asyncio.to_thread(lambda: Client(broker.host, broker.port, other, other_pw).wait_connected())
    await asyncio.to_thread(client.subscribe, f"ioc/v1/ack/{other}")
    await asyncio.to_thread(client.publish, f"ioc/v1/kpi/{other}", bad)
    acks = await asyncio.to_thread(client.wait_for, lambda m: len(m) >= 1)
    client.close()
    mqtt_reasons = [item["reason"] for item in orjson.loads(acks[-1].payload)["rejected"]]
    assert [row["reason"].replace(agency, "<agency>") for row in rows[1:]] == [
        reason.replace(other, "<agency>") for reason in mqtt_reasons]
    assert "unknown kpi" in mqtt_reasons[0] and "value must be a number" in mqtt_reasons[1]

    # a replay changes nothing; a different value needs a higher rev; the rev corrects it
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps(good))
    assert [row["status"] for row in r.json()["results"]] == ["duplicate"]
    changed = {**good, "value": 700}
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps(changed))
    (row,) = r.json()["results"]
    assert row["status"] == "refused" and "send rev > 0" in row["reason"]
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps({**changed, "rev": 1}))
    assert [row["status"] for row in r.json()["results"]] == ["corrected"]
    async with pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT value, revision FROM readings WHERE agency = $1", agency)
    assert (stored["value"], stored["revision"]) == (700.0, 1)
    assert await counts(pool, agency) == (1, 5)

    # ten thousand refusals: an answer that fits the broker's packet limit, and the ingest
    # stays connected (Mosquitto drops a client that publishes a larger packet)
    # (each refusal's row, with its reason naming the unknown fields, is over twice its item)
    many = [{"a" * 25: 1, "b" * 25: 1, "c" * 25: 1} for _ in range(10_000)]
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps(many))
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert len(body["results"]) == 10_000 and body["counts"]["refused"] == 10_000 and "truncated" not in body
    assert body["results"][9_999]["index"] == 9_999 and "unknown field" in body["results"][9_999]["reason"]
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps({**good, "ts": hours_ago(4)}))
    assert [row["status"] for row in r.json()["results"]] == ["accepted"]
    assert await counts(pool, agency) == (2, 10_005)

    # a whole message the ingest cannot read is refused whole, with its reason
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=b'{"kpi": ')
    (row,) = r.json()["results"]
    assert row["index"] is None and row["status"] == "refused" and "malformed JSON" in row["reason"]


async def test_json_endpoint_needs_an_agency_token_and_reports_only_as_it(
    pool: asyncpg.Pool, agencies: Agencies, ingest: IngestProcess, wall_api: ServeProcess
) -> None:
    agency, pw = await agencies.add(["tthc"], prefix="http")
    victim, _ = await agencies.add(["tthc"], prefix="victim")
    item = {"kpi": KPI, "ts": hours_ago(2), "value": 5, "area": "35"}
    r = await call(wall_api, "POST", "/api/v1/agency/readings", content=orjson.dumps(item))
    assert r.status_code == 401
    r = await call(wall_api, "POST", "/api/v1/agency/readings", {"Authorization": "Bearer nonsense"},
                   content=orjson.dumps(item))
    assert r.status_code == 401
    async with pool.acquire() as conn:
        name = f"op{agency[-6:]}"
        op_pw = await create_user(conn, name, role="operator", actor="test")
    r = await call(wall_api, "POST", "/api/v1/agency/readings", await login(wall_api, name, op_pw),
                   content=orjson.dumps(item))
    assert r.status_code == 403
    r = await call(wall_api, "POST", "/api/v1/agency/uploads?filename=a.csv", await login(wall_api, name, op_pw),
                   content=b"kpi,area,period,value\r\n")
    assert r.status_code == 403
    auth = await login(wall_api, agency, pw)
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=b"[" + b" " * (1024 * 1024) + b"]")
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # an agency cannot speak for another: the payload's agency must be the token's
    r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps({**item, "agency": victim}))
    (row,) = r.json()["results"]
    assert row["status"] == "refused" and "does not match" in row["reason"]
    assert (await counts(pool, victim))[0] == 0


def xlsx(rows: list[list[Any]], *, merge: str | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    if merge:
        sheet.merge_cells(merge)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def series_total(api: ServeProcess, auth: dict[str, str], kpi: str, area: str, period: str) -> float | None:
    year, month = map(int, period.split("-"))
    start = datetime(year, month, 1, tzinfo=timezone(timedelta(hours=7)))
    end = start + timedelta(days=32)
    r = await call(api, "GET", "/api/v1/series", auth,
                   params={"kpi": kpi, "area": area, "bucket": "1M", "start": start.isoformat(), "end": end.isoformat()})
    assert r.status_code == 200, r.text
    points = [p for p in r.json()["points"] if p.get("value") is not None]
    return points[0]["value"] if points else None


async def test_csv_and_xlsx_uploads_land_and_read_back_through_the_series_api(
    pool: asyncpg.Pool, agencies: Agencies, ingest: IngestProcess, wall_api: ServeProcess
) -> None:
    agency, pw = await agencies.add(["tthc"], prefix="sheet")
    auth = await login(wall_api, agency, pw)
    period = last_month()
    # the template lists the agency's KPIs for each area, in both formats
    r = await call(wall_api, "GET", "/api/v1/agency/template.csv", auth, params={"period": period})
    assert r.status_code == 200
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "kpi,area,period,value,numerator,denominator,rev,msg_id"
    assert f"{KPI},347,{period},,,,," in lines and not any(line.startswith("mt.") for line in lines)
    r = await call(wall_api, "GET", "/api/v1/agency/template.xlsx", auth)
    book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    assert [c.value for c in next(book["readings"].iter_rows())][:4] == ["kpi", "area", "period", "value"]

    csv_text = (f"kpi,area,period,value\r\n{KPI},347,{period},120\r\n{KPI},3470,{period},5\r\n"
                f"{KPI},35,{period},\r\n{RATE},347,{period},101\r\n")
    r = await call(wall_api, "POST", "/api/v1/agency/uploads", auth, params={"filename": "thang.csv"},
                   content=csv_text.encode())
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(row["row"], row["status"]) for row in body["results"]] == [(2, "accepted"), (3, "refused"), (5, "refused")]
    assert "unknown area" in body["results"][1]["reason"] and "out of range" in body["results"][2]["reason"]
    assert body["skipped_rows"] == [4]
    assert await series_total(wall_api, auth, KPI, "347", period) == 120.0
    # the same file again: duplicates, nothing changes
    r = await call(wall_api, "POST", "/api/v1/agency/uploads", auth, params={"filename": "thang.csv"},
                   content=csv_text.encode())
    assert [row["status"] for row in r.json()["results"]] == ["duplicate", "refused", "refused"]

    year, month = map(int, period.split("-"))
    data = xlsx([["kpi", "area", "period", "value", "rev"], [KPI, 347, period, 130, 1],
                 [RATE, "347", datetime(year, month, 1), 97.5, None]])  # a date cell is a month too
    r = await call(wall_api, "POST", "/api/v1/agency/uploads", auth, params={"filename": "thang.xlsx"}, content=data)
    assert r.status_code == 200, r.text
    assert [row["status"] for row in r.json()["results"]] == ["corrected", "accepted"]
    assert await series_total(wall_api, auth, KPI, "347", period) == 130.0
    assert await series_total(wall_api, auth, RATE, "347", period) == 97.5


def _macro_xlsx() -> bytes:
    """A workbook that carries a VBA project, as Excel's .xlsm does."""
    plain = xlsx([["kpi", "area", "period", "value"], [KPI, "347", "2026-01", 1]])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 not really a macro")
    return out.getvalue()


def _many_rows(n: int) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("readings")
    sheet.append(["kpi", "area", "period", "value"])
    for i in range(n):
        sheet.append([KPI, "347", "2026-01", i])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


HEADER = ["kpi", "area", "period", "value"]
REFUSED_FILES = [
    ("formula", "f.xlsx", lambda: xlsx([HEADER, [KPI, "347", "2026-01", 1], [KPI, "35", "2026-01", "=1+2"]]),
     422, ["row 3, column D (value): a formula"]),
    ("macro-named", "f.xlsm", lambda: xlsx([HEADER, [KPI, "347", "2026-01", 1]]), 422, ["macro-enabled"]),
    ("macro-inside", "f.xlsx", _macro_xlsx, 422, ["contains macros"]),
    ("merged", "f.xlsx", lambda: xlsx([HEADER, [KPI, "347", "2026-01", 1], [KPI, "35", "2026-01", 2]], merge="A2:A3"),
     422, ["merged cells A2:A3 (row 2)"]),
    ("wrong-types", "f.xlsx",
     lambda: xlsx([HEADER, [KPI, "347", "2026-01", 1], [KPI, "35", "tháng 1", "mười"], [KPI, True, "2026-01", 3]]),
     422, ["row 3, column C (period): expected a month", "row 3, column D (value): 'mười' is not a number",
           "row 4, column B (area): expected text"]),
    ("csv-wrong-types", "f.csv", lambda: f"kpi,area,period,value\r\n{KPI},347,2026-01,1,extra\r\n".encode(),
     422, ["row 2, column E: a value under no column name"]),
    ("csv-unclosed-quote", "f.csv", lambda: f'kpi,area,period,value\r\n{KPI},347,2026-01,1\r\n{KPI},"35,2026-01,2\r\n'.encode(),
     422, ["the CSV cannot be read"]),
    ("too-many-rows", "f.xlsx", lambda: _many_rows(100_001), 422, ["row 10002: more than 10,000 rows"]),
    ("too-large", "f.xlsx", lambda: b"PK" + bytes(6 * 1024 * 1024), 413, ["the limit is 5,242,880"]),
]


@pytest.mark.parametrize(("case", "filename", "make", "code", "expected"), REFUSED_FILES, ids=[c[0] for c in REFUSED_FILES])
async def test_a_bad_file_is_refused_whole_with_its_rows_and_columns_named(
    pool: asyncpg.Pool, agencies: Agencies, ingest: IngestProcess, wall_api: ServeProcess,
    case: str, filename: str, make: Any, code: int, expected: list[str],
) -> None:
    agency, pw = await agencies.add(["tthc"], prefix="bad")
    auth = await login(wall_api, agency, pw)
    data = await asyncio.to_thread(make)
    r = await call(wall_api, "POST", "/api/v1/agency/uploads", auth, params={"filename": filename}, content=data)
    assert r.status_code == code, r.text
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " | ".join(d["msg"] for d in detail)
    for words in expected:
        assert words in text, text
    await asyncio.sleep(1.0)  # anything wrongly published would have reached the ingest by now
    assert await counts(pool, agency) == (0, 0)


async def test_an_mqtt5_request_gets_per_reading_results_and_spooled_while_the_database_is_away(stack: Stack) -> None:
    """The answer the HTTP endpoint relies on, straight over MQTT 5: stored, refused, and
    'spooled' while PostgreSQL is down (the readings land once it is back)."""
    worker = await asyncio.to_thread(stack.ingest("result-1").start)
    agency = stack.agency
    got: list[dict[str, Any]] = []
    up = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    c.username_pw_set(agency, stack.agency_pw)
    c.on_connect = lambda *a: (c.subscribe(f"ioc/v1/result/{agency}/+", qos=1), up.set())
    c.on_message = lambda _c, _u, m: got.append({"topic": m.topic, "corr": m.properties.CorrelationData,
                                                 **orjson.loads(m.payload)})
    c.connect(stack.rig.host, stack.rig.port)
    c.loop_start()
    try:
        assert await asyncio.to_thread(up.wait, 10)
        await asyncio.sleep(0.5)  # the SUBSCRIBE is through

        def ask(request: str, items: list[dict[str, Any]], reply_agency: str = agency) -> None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"ioc/v1/result/{reply_agency}/{request}"
            props.CorrelationData = request.encode()
            c.publish(f"ioc/v1/kpi/{agency}", orjson.dumps(items), qos=1, properties=props).wait_for_publish(10)

        async def answer(request: str) -> dict[str, Any]:
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                for doc in got:
                    if doc["request"] == request:
                        return doc
                await asyncio.sleep(0.1)
            async with stack.pool.acquire() as conn:
                n = await conn.fetchval("SELECT count(*) FROM readings")
                dl = await conn.fetch("SELECT reason FROM dead_letters")
            raise AssertionError(f"no result for {request}: {got} {n} {dl} {worker.log_text()[-3000:]}")

        first = readings(0, 2)
        await asyncio.to_thread(ask, "r-1", [first[0], {**first[1], "area": "nowhere"}])
        doc = await answer("r-1")
        assert doc["topic"] == f"ioc/v1/result/{agency}/r-1" and doc["corr"] == b"r-1"
        assert [(row["index"], row["status"]) for row in doc["results"]] == [(0, "accepted"), (1, "refused")]
        assert "unknown area" in doc["results"][1]["reason"]
        # a Response Topic outside the sender's own results gets no answer at all
        await asyncio.to_thread(ask, "r-x", readings(10, 1), reply_agency="someone-else")

        await stack.pool.expire_connections()
        await set_db_available(stack.db_name, False)
        try:
            await asyncio.to_thread(ask, "r-2", readings(2, 3))
            doc = await answer("r-2")
            assert [row["status"] for row in doc["results"]] == ["spooled"] * 3
        finally:
            await set_db_available(stack.db_name, True)
        await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v == 5, timeout=60)
        assert not any(doc["request"] == "r-x" for doc in got)
    finally:
        c.disconnect()
        c.loop_stop()
        worker.stop()


async def test_a_slow_ingest_gets_result_pending_and_the_broker_keeps_the_reading(
    stack: Stack, serve_env: dict[str, str]
) -> None:
    """No ingest running: the API answers 202 'accepted by the broker, result pending', and
    the reading lands once the ingest is back (its persistent session held it)."""
    async with stack.pool.acquire() as conn:
        api_pw = await create_user(conn, "svc-api", role="api", actor="test")
        accounts = await broker_accounts(conn)
    await asyncio.to_thread(stack.rig.reload_accounts, accounts)
    worker = stack.ingest("pending-1")
    await asyncio.to_thread(worker.start)  # its persistent session now exists on the broker
    await asyncio.to_thread(worker.stop)
    env = {**serve_env, "IOC_DATABASE_URL": stack.db_url, "IOC_MQTT_URL": stack.rig.url_for("svc-api", api_pw)}
    api = ServeProcess(env, stack.tmp / "serve.log", REPO)
    await asyncio.to_thread(api.start)
    try:
        auth = await login(api, stack.agency, stack.agency_pw)
        item = readings(0, 1)[0]
        r = await call(api, "POST", "/api/v1/agency/readings", auth, params={"wait": 1}, content=orjson.dumps(item))
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "pending" and "accepted by the broker, result pending" in r.json()["detail"]
        await asyncio.to_thread(worker.start)
        await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v == 1, timeout=60)
        # the same reading again, now answered: a duplicate, nothing changed
        r = await call(api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps(item))
        assert r.status_code == 200 and [row["status"] for row in r.json()["results"]] == ["duplicate"]
    finally:
        await asyncio.to_thread(api.stop)
