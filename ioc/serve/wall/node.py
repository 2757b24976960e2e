"""One API node's share of the wall: its hub, its broker link, its websocket server, alerts.

Started by `ioc serve` when a broker is configured. Nodes share nothing but the broker and
PostgreSQL, so any number can run side by side behind a load balancer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import asyncpg
import jwt
from websockets.asyncio.server import Server

from dashboards import LAYOUTS
from ioc.core.accounts import get_user
from ioc.core.contracts import topics
from ioc.core.contracts import wall as wall_contract
from ioc.core.contracts.wall import WallState
from ioc.core.mqtt.link import MqttLink, Subscription
from ioc.core.settings import Settings
from ioc.core.storage import account_events, catalogue
from ioc.core.storage import cameras as camera_store
from ioc.core.storage import wall as wall_store
from ioc.core.supervise import run_together
from ioc.serve.wall.alerts import AlertKeeper, UnknownCamera
from ioc.serve.wall.hub import STATUS_SILENT_S, Hub
from ioc.serve.wall.layout import Layout, load_presets, parse_layout, unknown_camera_note
from ioc.serve.wall.server import Refused, close_revoked, start_server
from ioc.serve.wall.tiledata import KpiMeta

log = logging.getLogger("ioc.wall")


class WallNode:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, issuer: Any, timezone: str) -> None:
        self.settings = settings
        self.pool = pool
        self.issuer = issuer
        self.presets = load_presets(LAYOUTS)
        self.alerts = AlertKeeper(pool, self._publish_retained, self._show_alerts,
                                  watched_kpis=self._watched_kpis, unknown_cameras=self._unknown_cameras,
                                  timezone=timezone)
        self.hub = Hub(self.presets, buffer_limit=settings.wall_client_buffer_bytes,
                       on_camera_event=self.alerts.on_camera_event, on_kpi=self.alerts.on_kpi,
                       on_demand_change=self._demand_soon)
        client_id = f"ioc-api-{socket.gethostname()}-{os.getpid()}"
        self.demand_topic = topics.wall_demand(client_id)
        self.link = MqttLink(
            settings.require_mqtt(), client_id,
            subscriptions=[Subscription(topics.LIVE_ALL, qos=0), Subscription(topics.WALL_ALL, qos=0)],
            on_message=self.hub.on_message,
            will=(self.demand_topic, b"", 1, True),  # gone: our screens' HD wishes go with us
        )
        self._demand: wall_contract.Demand | None = None
        self._demand_generation = -1
        self._demand_timer: asyncio.TimerHandle | None = None
        self.server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._watched: set[tuple[str, str]] = set()
        self._started: float | None = None  # monotonic time the node started

    # -- wiring -------------------------------------------------------------------------
    def _publish_retained(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload, qos=1, retain=True)

    def _show_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.hub.set_alerts(alerts)

    def _watched_kpis(self) -> set[tuple[str, str]]:
        return self._watched

    def _unknown_cameras(self) -> list[UnknownCamera]:
        # a camera missing from the registry may still be one a camera service reads from a
        # file of its own: give its retained or repeated status time to arrive after a start
        if self._started is None or time.monotonic() - self._started < STATUS_SILENT_S:
            return []
        return [UnknownCamera(self.hub.state.layout, t.id, t.camera or "") for t in self.hub.unknown_cameras()]

    def warn_unknown_cameras(self, layout: Layout) -> list[str]:
        """Log (and return) one line per camera tile naming a camera the registry lacks: said
        at start for every layout and whenever one is saved, before an operator shows it."""
        if not self.hub.registry_known:
            return []
        lines = []
        for t in layout.unknown_cameras(self.hub.camera_names):
            lines.append(unknown_camera_note(layout, t))
            log.warning("layout names an unknown camera", extra={"layout": layout.id, "tile": t.id, "camera": t.camera})
        return lines

    def _rewatch(self) -> None:
        self._watched = {(t.kpi, t.area) for lay in self.hub.layouts().values() for t in lay.tiles
                         if t.kpi and t.area and t.kind in ("kpi", "chart")}

    async def authorize(self, token: str) -> tuple[str, str]:
        try:
            claims = self.issuer.decode(token)
        except jwt.ExpiredSignatureError:
            raise Refused(4401, "token expired: log in again") from None
        except jwt.PyJWTError:
            raise Refused(4401, "invalid token") from None
        async with self.pool.acquire() as conn:
            user = await get_user(conn, str(claims["sub"]))
        if user is None or user.disabled or user.role != claims.get("role"):
            raise Refused(4401, "account unknown, disabled or changed: log in again")
        return user.username, user.role

    async def recheck_accounts(self, usernames: set[str] | None) -> None:
        """Close the websockets of these users (None: of everyone connected) whose accounts
        are now disabled or gone; called when PostgreSQL tells that accounts changed."""
        # a named user is asked about even when not connected yet: a hello authorized just
        # before the disable committed may join the hub while this query runs
        names = {c.user for c in self.hub.clients} if usernames is None else usernames
        if not names:
            return
        try:
            gone = await account_events.inactive_among(self.pool, names)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("wall accounts not rechecked", extra={"users": sorted(names)[:20], "error": str(exc)[:200]})
            return
        revoked = [c for c in self.hub.clients if c.user in gone]
        for c in revoked:
            log.warning("wall client closed: account disabled", extra={
                "user": c.user, "address": c.address, "client": c.id, "role": c.role, "screen": c.screen})
        await asyncio.gather(*(close_revoked(c.conn) for c in revoked))

    async def _load(self) -> None:
        async with self.pool.acquire() as conn:
            docs = await wall_store.saved_layout_docs(conn)
            state = await wall_store.current_state(conn)
            await self._load_catalogue(conn)
        self.hub.saved = {k: parse_layout(doc, where=f"saved layout {k}") for k, doc in docs.items()}
        self._rewatch()
        for lay in self.hub.layouts().values():
            self.warn_unknown_cameras(lay)
        if state is not None:
            self.hub.apply_state(state)

    async def _load_catalogue(self, conn: asyncpg.Connection) -> None:
        kpis = await catalogue.kpi_labels(conn)
        cams = await camera_store.camera_names(conn)
        self.hub.set_catalogue({r["id"]: KpiMeta(r["id"], r["name_vi"], r["name_en"], r["unit"], r["target"], r["better"],
                                                   r["unit_en"], r["kind"])
                                for r in kpis}, cams)

    async def _refresh_catalogue(self) -> None:
        while True:
            await asyncio.sleep(30)
            try:
                async with self.pool.acquire() as conn:
                    await self._load_catalogue(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("wall catalogue not refreshed", extra={"error": str(exc)[:200]})

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.hub.tick()
            self._publish_demand()

    def _demand_soon(self) -> None:
        """Clients came, left or switched: publish the demand shortly (once for a burst of
        them, as when every screen reconnects after a restart), not at the next tick."""
        if self._demand_timer is None:
            self._demand_timer = asyncio.get_running_loop().call_later(0.1, self._demand_now)

    def _demand_now(self) -> None:
        self._demand_timer = None
        self._publish_demand()

    def _publish_demand(self) -> None:
        """Tell the camera services which cameras need HD tiles and whose video our clients
        play, per stream; again after every reconnect (the broker may have run our will
        meanwhile). An empty retained payload withdraws it: camera services stop sending."""
        if not self.link.connected.is_set():
            return
        main, sub = self.hub.video_demand()
        demand = wall_contract.Demand(hd=self.hub.hd_cameras(), video_main=main, video_sub=sub)
        if demand == self._demand and self.link.generation == self._demand_generation:
            return
        payload = wall_contract.encode_demand(demand, time.time())
        self.link.publish(self.demand_topic, payload, qos=1, retain=True)
        self._demand, self._demand_generation = demand, self.link.generation

    # -- operators' changes ---------------------------------------------------------------
    def publish_state(self, state: WallState, layout: Layout) -> None:
        """Show it here at once, and on every other node through the broker."""
        self._publish_retained(topics.WALL_STATE, wall_contract.encode_state(state, layout.model_dump(mode="json")))
        self.hub.apply_state(state, layout)

    def layout_saved(self, layout: Layout | None, layout_id: str) -> None:
        if layout is None:
            self.hub.saved.pop(layout_id, None)
        else:
            self.hub.saved[layout_id] = layout
        self._rewatch()

    # -- life ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._started = time.monotonic()
        await self._load()
        self.server = await start_server(self.hub, self.authorize, self.settings.api_host, self.settings.wall_port,
                                         max_clients=self.settings.wall_max_clients)
        tasks = [asyncio.create_task(self.link.run(), name="wall-mqtt"),
                 asyncio.create_task(self.alerts.run(), name="wall-alerts"),
                 asyncio.create_task(self._refresh_catalogue(), name="wall-catalogue"),
                 asyncio.create_task(self._tick(), name="wall-tick")]
        self._task = asyncio.create_task(run_together(tasks), name="wall")
        self._task.add_done_callback(self._ended)
        log.info("wall hub listening", extra={"host": self.settings.api_host, "port": self.settings.wall_port,
                                              "layout": self.hub.state.layout})

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("wall hub stopped", exc_info=task.exception())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
