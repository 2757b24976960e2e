"""A websocket client that floods the hub and never reads cannot grow the hub's memory:
replies past its buffer limit are dropped, a message rate past what pages need closes it,
and the others carry on (issue: +220 MB after 4.9 million pings)."""

from __future__ import annotations

import asyncio
import time

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.rigs.serve import ServeProcess
from tests.test_wall_hub import logins, open_client  # noqa: F401 - a fixture


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_client_that_floods_pings_and_never_reads_is_closed_and_costs_nothing(
        wall_api: ServeProcess, logins: dict[str, str]) -> None:  # noqa: F811
    pid = wall_api.proc.pid  # type: ignore[union-attr]
    before = rss_kb(pid)
    fast = await open_client(wall_api.ws_url, logins["leader"], "tablet")
    await fast.wait("layout")
    async with connect(wall_api.ws_url, compression=None, max_size=None) as flood:
        await flood.send(orjson.dumps({"type": "hello", "role": "tablet", "token": logins["leader"]}).decode())
        flood.transport.pause_reading()  # a tablet on a dead link: it sends, it never reads
        ping = orjson.dumps({"type": "ping", "t": 1.0}).decode()
        sent, t0, closed = 0, time.monotonic(), None
        try:
            while time.monotonic() - t0 < 10 and sent < 200_000:
                await flood.send(ping)
                sent += 1
                if sent % 500 == 0:
                    await asyncio.sleep(0)
        except ConnectionClosed as exc:
            closed = exc
        if closed is None:  # it may not have noticed while not reading: let it read the close
            flood.transport.resume_reading()
            try:
                await asyncio.wait_for(flood.wait_closed(), 10)
            except TimeoutError:
                pass
        code = flood.close_code
    assert code in (4429, 1006), (code, sent)  # told why, or cut off
    # the other client was served all along, and the hub kept no backlog for the flooder
    await fast.ws.send(orjson.dumps({"type": "ping", "t": 2.0}).decode())
    await fast.wait("pong", timeout=10)
    await asyncio.sleep(1.0)
    grew = rss_kb(pid) - before
    assert grew < 50_000, f"the hub grew by {grew} kB for one flooding client ({sent} pings)"
    await fast.close()


async def test_a_client_that_sends_protocol_pings_and_never_reads_is_cut_off(
        wall_api: ServeProcess, logins: dict[str, str]) -> None:  # noqa: F811
    """PING frames are answered by the websocket library itself, outside the hub's message
    budget: the pongs pile up unsent, and the hub cuts the client off past its hard cap."""
    from websockets.frames import Frame, Opcode

    async with connect(wall_api.ws_url, compression=None, max_size=None) as flood:
        await flood.send(orjson.dumps({"type": "hello", "role": "tablet", "token": logins["leader"]}).decode())
        flood.transport.pause_reading()
        ping = Frame(Opcode.PING, b"p" * 125).serialize(mask=True)
        for _ in range(300):  # 300 x 1,000 pings: ~38 MB of pongs, past what the kernel buffers hold
            flood.transport.write(ping * 1000)
            await asyncio.sleep(0.01)
        await asyncio.sleep(3.0)  # the hub's tick, once a second, finds it over the cap
        flood.transport.resume_reading()
        try:
            await asyncio.wait_for(flood.wait_closed(), 20)
        except TimeoutError:
            pass
        assert flood.close_code == 1006, flood.close_code  # aborted: no closing handshake for it
    log = wall_api.log_text()
    assert "wall client cut off: it does not read" in log
