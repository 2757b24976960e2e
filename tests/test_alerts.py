"""The alerts that are not camera faults: a KPI shown on the wall missing its target, and an
agency silent past its KPIs' reporting interval; each raised and ended by the API node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx

from tests.conftest import Agencies
from tests.rigs.serve import ServeProcess
from tests.test_wall_hub import logins  # noqa: F401 - a fixture
from tests.test_wall_pages import Live, live  # noqa: F401 - a fixture

DEADLINE_S = 45.0  # the node checks every 10 s; generous for a busy machine


async def alerts_until(http: httpx.AsyncClient, token: str, want: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = (await http.get("/api/v1/alerts", params={"limit": 500},
                                headers={"Authorization": f"Bearer {token}"})).json()
        if want(found):
            return found
        assert time.monotonic() < deadline, found[:10]
        await asyncio.sleep(0.5)


def _open(found: list[dict[str, Any]], kind: str, source: str) -> list[dict[str, Any]]:
    return [a for a in found if a["kind"] == kind and a["source"] == source and a["ended_at"] is None]


async def test_a_kpi_on_the_wall_below_its_target_raises_an_alert_until_it_recovers(
        wall_api: ServeProcess, live: Live, logins: dict[str, str]) -> None:  # noqa: F811
    async with httpx.AsyncClient(base_url=wall_api.base, timeout=10) as http:
        r = await http.post("/api/v1/wall/switch", json={"layout": "overview", "delay_s": 0},
                            headers={"Authorization": f"Bearer {logins['operator']}"})
        assert r.status_code == 200
        await asyncio.sleep(0.5)
        source = "tthc.on_time_rate/37"
        live.kpi("tthc.on_time_rate", "37", 91.25)  # target 98 %, higher is better
        found = await alerts_until(http, logins["operator"], lambda f: bool(_open(f, "kpi_target", source)))
        alert = _open(found, "kpi_target", source)[0]
        assert "91,25" in alert["message_vi"] and "98" in alert["message_vi"]
        live.kpi("tthc.on_time_rate", "37", 99.5)
        await alerts_until(http, logins["operator"], lambda f: not _open(f, "kpi_target", source))


async def test_an_agency_silent_past_its_interval_raises_an_alert_until_it_reports(
        wall_api: ServeProcess, agencies: Agencies, pool: asyncpg.Pool, logins: dict[str, str]) -> None:  # noqa: F811
    agency, _ = await agencies.add(["tthc"], prefix="silent")
    old = datetime.now(timezone.utc) - timedelta(days=3)  # tthc.dossiers_received: reported daily
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO kpi_latest (kpi, area, ts, value, revision, agency, received_at) "
                           "VALUES ('tthc.dossiers_received', '13624', $1, 12, 0, $2, $1)", old, agency)
    async with httpx.AsyncClient(base_url=wall_api.base, timeout=10) as http:
        found = await alerts_until(http, logins["operator"], lambda f: bool(_open(f, "agency_silent", agency)))
        assert "chưa gửi số liệu" in _open(found, "agency_silent", agency)[0]["message_vi"]
        async with pool.acquire() as conn:
            await conn.execute("UPDATE kpi_latest SET received_at = now(), ts = now() "
                               "WHERE kpi = 'tthc.dossiers_received' AND area = '13624'")
        await alerts_until(http, logins["operator"], lambda f: not _open(f, "agency_silent", agency))
