"""Simulated agencies: each logs in to the broker with its own account and publishes its KPIs.

Run by `ioc demo` as `python -m ioc.extras.demo.agencies <config.json>` (the config, mode 0600,
holds the broker address and the agencies' passwords). Each agency publishes, as a real
integrator would (README, "For an agency's integrator"), JSON arrays with QoS 1 to
`ioc/v1/kpi/<agency>`: first the last 30 days of history, then every few seconds what
changed (today's counts as they grow, sensors every minute, monthly figures when a month
starts). It listens on `ioc/v1/ack/<agency>` and logs every refusal the ingest reports.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import paho.mqtt.client as mqtt

from ioc.extras.demo.figures import Reading, Series, catalogue_series, current, history, just_closed
from ioc.core.contracts import topics
from ioc.core.logs import setup_logging

log = logging.getLogger("ioc.demo.agencies")
CHUNK = 2000  # readings per message: well under the ingest's 10,000 and 1 MiB


class Agency:
    def __init__(self, agency_id: str, password: str, host: str, port: int, series: list[Series]) -> None:
        self.id = agency_id
        self.series = series
        self.sent: dict[tuple[str, str, datetime], tuple[int, float]] = {}
        self.published = 0
        self.refused = 0
        self.connected = threading.Event()
        self._said_refused = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{agency_id}-sim", protocol=mqtt.MQTTv5)
        c.username_pw_set(agency_id, password)
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(50)
        c.reconnect_delay_set(1, 15)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_ack
        self.client = c
        self.host, self.port = host, port

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            if not self._said_refused:
                log.warning("the broker refused the agency's login", extra={"agency": self.id, "reason": str(reason)})
                self._said_refused = True
            return
        self._said_refused = False
        client.subscribe(topics.ack(self.id), qos=1)
        self.connected.set()
        log.info("agency connected", extra={"agency": self.id})

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()

    def _on_ack(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        self.refused += int(body.get("rejected_count") or 0)
        first = (body.get("rejected") or [{}])[0]
        log.warning("the ingest refused readings", extra={"agency": self.id, "status": body.get("status"),
                                                           "count": body.get("rejected_count"), "first": first})

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, readings: list[Reading]) -> int:
        """Publish what was not sent yet, or what grew since (a count, with a higher rev); return
        how many readings went out. An older rev is never sent after a newer one."""
        fresh = []
        for r in readings:
            key = (r.kpi, r.area, r.ts)
            before = self.sent.get(key)
            if before is None or (r.rev > before[0] and r.value != before[1]):
                fresh.append(r)
                self.sent[key] = (r.rev, r.value)
        for i in range(0, len(fresh), CHUNK):
            body = orjson.dumps([r.as_json() for r in fresh[i:i + CHUNK]])
            self.client.publish(topics.kpi(self.id), body, qos=1)
        self.published += len(fresh)
        return len(fresh)

    def forget_before(self, ts: datetime) -> None:
        self.sent = {k: v for k, v in self.sent.items() if k[2] >= ts}


def run(config: dict[str, Any], stop: threading.Event) -> None:
    tz = ZoneInfo(config.get("timezone", "Asia/Ho_Chi_Minh"))
    step_s = int(config.get("step_s", 10))
    tick_s = float(config.get("tick_s", 5.0))
    days = int(config.get("history_days", 30))
    all_series = catalogue_series()
    agencies = [Agency(aid, pw, config["host"], int(config["port"]), all_series[aid])
                for aid, pw in config["agencies"].items() if aid in all_series]
    for a in agencies:
        a.start()
    try:
        deadline = time.monotonic() + 30
        for a in agencies:
            a.connected.wait(max(0.0, deadline - time.monotonic()))
        now = datetime.now(tz)
        for a in agencies:
            n = a.send(history(a.series, now, step_s=step_s, history_days=days))
            log.info("history published", extra={"agency": a.id, "readings": n, "days": days})
        next_report = time.monotonic() + 60
        next_prune = time.monotonic() + 3600
        while not stop.wait(tick_s):
            now = datetime.now(tz)
            for a in agencies:
                # a period that just ended gets its final count, then the current ones go out
                a.send(just_closed(a.series, now, step_s=step_s, lookback_s=4 * tick_s)
                       + current(a.series, now, step_s=step_s))
            if time.monotonic() > next_prune:
                next_prune = time.monotonic() + 3600
                for a in agencies:
                    a.forget_before(now - timedelta(days=2))
            if time.monotonic() > next_report:
                next_report = time.monotonic() + 60
                log.info("agencies publishing", extra={"published": {a.id: a.published for a in agencies},
                                                       "refused": sum(a.refused for a in agencies)})
    finally:
        for a in agencies:
            a.stop()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m ioc.extras.demo.agencies <config.json>")
    with open(args[0], encoding="utf-8") as f:
        config = json.load(f)
    setup_logging(os.environ.get("IOC_LOG_LEVEL", "INFO"), os.environ.get("IOC_LOG_FORMAT", "json"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(config, stop)
    log.info("agencies stopped")


if __name__ == "__main__":
    main()
