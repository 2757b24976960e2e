"""Agencies' HTTP submissions into the MQTT path, so one ingest validates and stores everything.

The API never validates or writes readings itself: it publishes the agency's payload
unchanged on `topics.kpi(agency)` at QoS 1 (the ingest takes the agency from the topic,
exactly as for the agency's own MQTT client) with an MQTT 5 Response Topic
`topics.result(agency, request)`, and waits for the ingest's per-reading result there.
Validation, idempotency, corrections, dead letters, the spool and the agency's ack on
`topics.ack(agency)` are therefore the MQTT path's own. A slow ingest gets the answer
"accepted by the broker, result pending": the broker holds the message as it holds any.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from ioc.core.contracts import kpi as kpi_contract
from ioc.core.contracts import topics
from ioc.core.mqtt.link import MqttLink, Subscription
from ioc.core.settings import Settings

log = logging.getLogger("ioc.api.relay")
CONNECT_WAIT_S = 5.0


class RelayUnavailable(Exception):
    """The broker cannot be reached: nothing was published."""


@dataclass(frozen=True)
class Submission:
    request: str
    #: the ingest's rows (`kpi_contract.RowResult`), or None when it did not answer in time
    results: list[dict[str, Any]] | None
    #: the broker acknowledged the message (QoS 1): it will reach the ingest
    broker_accepted: bool
    #: the ingest listed only the first rows (the answer would have been too large)
    truncated: bool = False


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.client_id = f"ioc-api-relay-{socket.gethostname()}-{os.getpid()}"[:64]
        # QoS 0 on the results: an answer lost with the connection becomes "result pending",
        # the reading itself travels at QoS 1 and is never lost with it
        self.link = MqttLink(settings.require_mqtt(), self.client_id,
                             subscriptions=[Subscription(topics.RESULT_ALL, qos=0)],
                             on_message=self._on_message)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.link.run(), name="relay-mqtt")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, agency: str, payload: bytes, wait_s: float) -> Submission:
        """Publish `payload` as `agency` and wait up to `wait_s` for the ingest's result."""
        if not self.link.connected.is_set():
            try:
                await asyncio.wait_for(self.link.connected.wait(), CONNECT_WAIT_S)
            except asyncio.TimeoutError:
                raise RelayUnavailable(self.link.last_error or "the MQTT broker is not reachable") from None
        request = secrets.token_hex(12)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request] = future
        try:
            info = self.link.request(topics.kpi(agency), payload, topics.result(agency, request), request.encode())
            try:
                doc = await asyncio.wait_for(future, wait_s)
            except asyncio.TimeoutError:
                try:
                    accepted = info.is_published()
                except (ValueError, RuntimeError):  # paho: not sent at all (queue full, no connection)
                    accepted = False
                log.warning("no ingest result in time", extra={"agency": agency, "request": request,
                                                               "wait_s": wait_s, "broker_accepted": accepted})
                return Submission(request, None, accepted)
        finally:
            self._waiting.pop(request, None)
        return Submission(request, doc["results"], True, bool(doc.get("truncated")))

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, generation: int) -> None:
        parsed = topics.parse_result(topic)
        if parsed is None or retain:
            return
        future = self._waiting.get(parsed[1])
        if future is None or future.done():
            return  # another API node's request, or one that gave up waiting
        try:
            doc = kpi_contract.decode_result(payload)
        except ValueError as exc:
            log.warning("malformed ingest result", extra={"topic": topic, "error": str(exc)[:200]})
            return
        if doc["request"] == parsed[1]:
            future.set_result(doc)
