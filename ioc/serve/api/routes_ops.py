"""Health and Prometheus metrics.

`/healthz` is open (load balancers and Docker call it) and says only whether the service
and its database answer. `/metrics` needs the metrics token or an admin's JWT. Ingest
figures come from the `ingest_workers` table, so any API node reports every worker.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ioc.core.storage import ops
from ioc.serve.api.security import oauth2, principal_from_token

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(request: Request, response: Response) -> dict[str, Any]:
    state = request.app.state
    try:
        async with state.pool.acquire(timeout=2.0) as conn:
            await ops.ping(conn)
        db = "ok"
    except Exception:  # noqa: BLE001 - the answer is the status
        db = "unavailable"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ok" if db == "ok" else "degraded", "database": db, "storage_mode": state.mode.value}


class _Snapshot:
    """A collector over figures fetched just before the scrape (collect() cannot await)."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


@router.get("/metrics")
async def metrics(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> Response:
    state = request.app.state
    expected = state.settings.metrics_token
    if not (expected and token and hmac.compare_digest(token.encode(), expected.encode())):
        principal = await principal_from_token(request, token)
        if principal.role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="metrics: admin or the metrics token")
    async with state.pool.acquire() as conn:
        workers = await ops.worker_figures(conn)
        dead_5m = await ops.recent_dead_letters(conn)
        dirty = await ops.dirty_hours(conn)
    fams: list[Any] = []

    def counter(name: str, doc: str, col: str) -> None:
        f = CounterMetricFamily(name, doc, labels=["worker"])
        for w in workers:
            f.add_metric([w["worker_id"]], float(w[col]))
        fams.append(f)

    def gauge(name: str, doc: str, col: str, scale: float = 1.0) -> None:
        f = GaugeMetricFamily(name, doc, labels=["worker"])
        for w in workers:
            if w[col] is not None:
                f.add_metric([w["worker_id"]], float(w[col]) * scale)
        fams.append(f)

    counter("ioc_ingest_messages", "MQTT messages received", "messages")
    counter("ioc_ingest_readings_accepted", "readings committed", "readings_accepted")
    counter("ioc_ingest_readings_rejected", "readings dead-lettered", "readings_rejected")
    counter("ioc_ingest_readings_duplicate", "replayed readings ignored", "readings_duplicate")
    counter("ioc_ingest_batches", "database transactions committed", "batches")
    counter("ioc_ingest_db_errors", "failed database attempts (retried)", "db_errors")
    gauge("ioc_ingest_buffered_messages", "messages received, not yet committed", "buffered_messages")
    gauge("ioc_ingest_commit_lag_p50_seconds", "receive-to-commit latency, median", "commit_lag_p50_ms", 0.001)
    gauge("ioc_ingest_commit_lag_p99_seconds", "receive-to-commit latency, 99th percentile", "commit_lag_p99_ms", 0.001)
    gauge("ioc_ingest_heartbeat_age_seconds", "seconds since the worker last reported", "age")
    g = GaugeMetricFamily("ioc_dead_letters_last_5m", "readings rejected in the last five minutes")
    g.add_metric([], float(dead_5m))
    fams.append(g)
    g = GaugeMetricFamily("ioc_rollup_dirty_hours", "hours waiting for their roll-up")
    g.add_metric([], float(dirty))
    fams.append(g)
    g = GaugeMetricFamily("ioc_storage_mode", "1 for the storage mode in use", labels=["mode"])
    g.add_metric([state.mode.value], 1.0)
    fams.append(g)
    if state.wall is not None:
        hub = state.wall.hub
        g = GaugeMetricFamily("ioc_wall_clients", "websocket clients of this node's wall hub", labels=["role"])
        for role in ("screen", "tablet", "console"):
            g.add_metric([role], float(sum(1 for c in hub.clients if c.role == role)))
        fams.append(g)
        c = CounterMetricFamily("ioc_wall_deliveries", "tile messages written to clients by this node")
        c.add_metric([], float(hub.delivered))
        fams.append(c)
        c = CounterMetricFamily("ioc_wall_skipped", "stale tile messages replaced before a slow client took them")
        c.add_metric([], float(hub.skipped))
        fams.append(c)
        for family, name, doc, value in (
            (CounterMetricFamily, "ioc_wall_video_frames", "video frames written to clients by this node",
             hub.video_delivered),
            (CounterMetricFamily, "ioc_wall_video_skipped", "video frames slow clients lost, up to the next keyframe",
             hub.video_skipped),
            (GaugeMetricFamily, "ioc_wall_video_gop_bytes", "bytes of the groups of pictures the hub keeps",
             hub.video_buffered()),
            (GaugeMetricFamily, "ioc_wall_send_buffer_bytes", "bytes waiting in the clients' send buffers",
             sum(x.buffered() for x in hub.clients)),
        ):
            m = family(name, doc)
            m.add_metric([], float(value))
            fams.append(m)
    registry = CollectorRegistry()
    registry.register(_Snapshot(fams))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
