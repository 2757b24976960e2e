"""Small real MQTT clients for tests: an agency that publishes, a listener that collects."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import orjson
import paho.mqtt.client as mqtt


class Client:
    def __init__(self, host: str, port: int, username: str, password: str, client_id: str | None = None) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=mqtt.MQTTv5)
        self.c.username_pw_set(username, password)
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.connect_reason: Any = None
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connect_reason = reason
        if not reason.is_failure:
            self._connected.set()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def wait_connected(self, timeout: float = 10.0) -> "Client":
        if not self._connected.wait(timeout):
            raise TimeoutError(f"not connected: {self.connect_reason}")
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos)
        if not done.wait(5):
            raise TimeoutError("no SUBACK")

    def publish(self, topic: str, payload: Any, qos: int = 1, retain: bool = False) -> None:
        data = payload if isinstance(payload, (bytes, str)) else orjson.dumps(payload)
        info = self.c.publish(topic, data, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def publish_many(self, topic: str, payloads: list[Any], qos: int = 1) -> None:
        infos = [self.c.publish(topic, p if isinstance(p, (bytes, str)) else orjson.dumps(p), qos=qos) for p in payloads]
        for i in infos:
            i.wait_for_publish(30)

    def wait_for(self, pred: Callable[[list[mqtt.MQTTMessage]], bool], timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.messages)
            if pred(snapshot):
                return snapshot
            time.sleep(0.02)
        with self._lock:
            topics = sorted({m.topic for m in self.messages})
            raise TimeoutError(f"condition not met in {timeout} s; got {len(self.messages)} messages on "
                               f"{len(topics)} topics: {topics[:30]}")

    def json_on(self, topic_prefix: str) -> list[Any]:
        with self._lock:
            return [orjson.loads(m.payload) for m in self.messages if m.topic.startswith(topic_prefix)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
