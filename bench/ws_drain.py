"""Raw websocket clients for the wall benchmarks: the handshake and the hello by hand, then
plain non-blocking reads, so that dozens of clients cost a child process little and nothing
of a library's own queueing hides how the hub writes to them."""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import Iterator

import orjson


def _masked(opcode: int, data: bytes) -> bytes:
    """A client-to-server frame (clients must mask)."""
    mask = os.urandom(4)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | 126) + struct.pack("!H", len(data)) if len(data) >= 126 \
        else struct.pack("!BB", 0x80 | opcode, 0x80 | len(data))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def ws_client(port: int, hello: dict[str, object], path: str = "/ws",
              rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """A websocket client by hand: the upgrade, one masked text frame (the hello), and the
    socket left non-blocking for the caller's reads; with it, the bytes of the first frames
    already read with the upgrade's answer."""
    s = socket.socket()
    if rcvbuf is not None:  # a small receive buffer: a stalled reader's backlog waits on the sender's side
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    rest = answer.split(b"\r\n\r\n", 1)[1]
    s.sendall(_masked(0x1, orjson.dumps(hello)))
    s.setblocking(False)
    return s, rest


def pong(s: socket.socket, payload: bytes) -> None:
    """Answer the server's ping, so a long run is not cut off as a dead client."""
    try:
        s.send(_masked(0xA, payload))
    except (BlockingIOError, OSError):
        pass


class FrameReader:
    """Server-to-client websocket frames (unmasked, unfragmented as the hub writes them) out
    of a byte stream read in arbitrary pieces."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, memoryview]]:
        """(opcode, payload) for every whole frame the buffer now holds."""
        self.buf += data
        at = 0
        buf = self.buf
        n = len(buf)
        out: list[tuple[int, memoryview]] = []
        while n - at >= 2:
            opcode, size = buf[at] & 0x0F, buf[at + 1] & 0x7F
            head = 2
            if size == 126:
                if n - at < 4:
                    break
                size, head = struct.unpack_from("!H", buf, at + 2)[0], 4
            elif size == 127:
                if n - at < 10:
                    break
                size, head = struct.unpack_from("!Q", buf, at + 2)[0], 10
            if n - at < head + size:
                break
            out.append((opcode, memoryview(bytes(buf[at + head:at + head + size]))))
            at += head + size
        del self.buf[:at]
        return iter(out)
