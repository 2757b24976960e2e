"""The hub's websocket door: the hello, who may be what, and what a client may say after.

Runs the `websockets` library's own server inside `ioc serve` (own port, no
permessage-deflate: JPEG does not shrink and deflate halves fan-out). Every refusal
sends an `error` message with the reason, then closes with a code a page can act on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ioc.core.contracts import wall_frames as frames
from ioc.serve.wall.hub import Client, Hub

log = logging.getLogger("ioc.wall")
MAX_MESSAGE = 4096
HELLO_TIMEOUT_S = 5.0
MAX_VIDEO_OFF = 256  # cameras a client may ask no video for, one by one (each costs the hub memory)
# which account roles may open which kind of client
ALLOWED = {
    "screen": {"screen", "admin", "operator"},
    "tablet": {"leader", "operator", "admin"},
    "console": {"operator", "admin"},
}


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# token -> (user name, account role); raises Refused(4401, ...) when it is not valid
Authorize = Callable[[str], Awaitable[tuple[str, str]]]


def _address(conn: ServerConnection) -> str:
    forwarded = conn.request.headers.get("X-Forwarded-For") if conn.request else None
    if forwarded:
        return forwarded.split(",")[0].strip()[:64]
    peer = conn.remote_address
    return str(peer[0]) if peer else "?"


async def _hello(conn: ServerConnection, authorize: Authorize) -> tuple[str, int | None, str, bool]:
    try:
        raw = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT_S)
    except TimeoutError:
        raise Refused(4408, f"say hello within {HELLO_TIMEOUT_S:.0f} s") from None
    if not isinstance(raw, str):
        raise Refused(4400, "the hello is a JSON text message")
    try:
        hello = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(4400, "the hello is not valid JSON") from None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        raise Refused(4400, 'the first message must be {"type": "hello", ...}')
    role = hello.get("role")
    if role not in ALLOWED:
        raise Refused(4400, "role must be screen, tablet or console")
    screen = hello.get("screen")
    if role == "screen":
        if not isinstance(screen, int) or isinstance(screen, bool) or not 1 <= screen <= 9:
            raise Refused(4400, "screen must be a number from 1 to 9")
    else:
        screen = None
    token = hello.get("token")
    if not isinstance(token, str) or not token or len(token) > 2048:
        raise Refused(4401, "a token is needed: log in, or use the screen token an admin issued")
    video = hello.get("video", True)
    if not isinstance(video, bool):
        raise Refused(4400, "video must be true or false")
    user, account_role = await authorize(token)
    if account_role not in ALLOWED[role]:
        raise Refused(4403, f"a {account_role} account cannot open a {role} client")
    return role, screen, user, video


async def _refuse(conn: ServerConnection, code: int, reason: str) -> None:
    try:
        await conn.send(frames.message("error", reason=reason, code=code).decode())
        await conn.close(code, reason[:120])
    except ConnectionClosed:
        pass


async def close_revoked(conn: ServerConnection) -> None:
    """Close a client whose account was disabled: 4401 tells the page not to retry this token."""
    await _refuse(conn, 4401, "account disabled or removed: log in again")


def _after_hello(hub: Hub, client: Client, raw: str | bytes) -> None:
    if not isinstance(raw, str):
        raise Refused(4400, "clients send JSON text messages only")
    try:
        msg: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(4400, "not valid JSON") from None
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "ping":
        t = msg.get("t")
        hub.reply(client, frames.message("pong", t=t if isinstance(t, (int, float)) else None, now=time.time()))
    elif kind == "video":
        on, camera = msg.get("on"), msg.get("camera")
        if not isinstance(on, bool) or not (camera is None or (isinstance(camera, str) and 0 < len(camera) <= 200)):
            raise Refused(4400, 'video: {"type": "video", "on": true|false, "camera"?: "<id>"}')
        if not on and camera is not None and len(client.video_off) >= MAX_VIDEO_OFF and camera not in client.video_off:
            raise Refused(4400, f"video off for more than {MAX_VIDEO_OFF} cameras: turn it off altogether")
        hub.set_video(client, on, camera)
    else:
        raise Refused(4400, f"unknown message type {str(kind)[:40]!r}")


def make_handler(hub: Hub, authorize: Authorize, max_clients: int) -> Callable[[ServerConnection], Awaitable[None]]:
    async def handler(conn: ServerConnection) -> None:
        address = _address(conn)
        if len(hub.clients) >= max_clients:
            await _refuse(conn, 1013, "the hub is full, try again later")
            return
        try:
            role, screen, user, video = await _hello(conn, authorize)
        except Refused as r:
            log.warning("wall client refused", extra={"address": address, "code": r.code, "reason": r.reason})
            await _refuse(conn, r.code, r.reason)
            return
        except ConnectionClosed:
            return
        client = Client(conn, role, screen, user, address, video=video)
        hub.add(client)
        budget = MessageBudget()
        try:
            async for raw in conn:
                if not budget.take(time.monotonic()):
                    raise Refused(4429, f"more than {MESSAGES_PER_S:g} messages a second: slow down")
                _after_hello(hub, client, raw)
        except Refused as r:
            log.warning("wall client closed", extra={"client": client.id, "address": address, "reason": r.reason})
            await _refuse(conn, r.code, r.reason)
        except ConnectionClosed:
            pass
        finally:
            hub.remove(client)

    return handler


MESSAGES_PER_S = 20.0  # a page sends a ping every few seconds and a video wish now and then
MESSAGE_BURST = 300  # a page that reconnects says its per-camera video wishes again, at once


class MessageBudget:
    """A token bucket per client: what a page needs, many times over; a client that floods
    the hub with messages is closed rather than answered."""

    def __init__(self) -> None:
        self.tokens = float(MESSAGE_BURST)
        self.at = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(float(MESSAGE_BURST), self.tokens + (now - self.at) * MESSAGES_PER_S)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _only_ws_path(conn: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?")[0] != "/ws":
        return conn.respond(HTTPStatus.NOT_FOUND, "the wall hub listens on /ws\n")
    return None


async def start_server(hub: Hub, authorize: Authorize, host: str, port: int, *, max_clients: int = 5000) -> Server:
    return await serve(
        make_handler(hub, authorize, max_clients), host, port,
        compression=None, max_size=MAX_MESSAGE, max_queue=4, ping_interval=15, ping_timeout=30,
        close_timeout=5, process_request=_only_ws_path, server_header=None,
        logger=logging.getLogger("ioc.wall.websockets"),
    )
