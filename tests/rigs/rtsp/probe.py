"""A minimal RTSP client that counts H.264 frames without decoding them (pure Python).

For what OpenCV cannot show cheaply: when each frame arrived, whether the stream began with a
keyframe, the RTP timestamps, and a stalled stream whose connection stays open.  It speaks
RTSP 1.0 over one TCP connection with interleaved RTP (what ``rtsp_transport;tcp`` does), and
costs little CPU, so it can stand in for many clients when the server is measured.

    with RtspProbe(url) as probe:
        frames = probe.read_frames(seconds=2.0)      # list[Frame]
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

__all__ = ["Frame", "RtspProbe", "RtspError"]


class RtspError(RuntimeError):
    """The server answered an RTSP request with an error, or hung up."""


@dataclass
class Frame:
    """One access unit as it arrived: the packet with the RTP marker bit closes it."""

    arrival: float  # time.monotonic() of its last packet
    rtp_ts: int
    nal_types: tuple[int, ...]  # H.264 NAL unit types seen in it (5 = IDR, 7 = SPS, 1 = non-IDR)
    size: int  # payload bytes

    @property
    def keyframe(self) -> bool:
        return 5 in self.nal_types


class RtspProbe:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._cseq = 0
        self.session: str | None = None
        self.sdp = ""
        self._nals: list[int] = []
        self._size = 0
        self.closed_by_server = False

    # -- RTSP
    def __enter__(self) -> RtspProbe:
        self.play()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def play(self) -> None:
        parts = urlsplit(self.url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 554), timeout=self.timeout)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._request("OPTIONS", self.url)
        headers, body = self._request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        self.sdp = body.decode("utf-8", "replace")
        base = headers.get("content-base", self.url)
        m = re.search(r"^m=video.*?(?:^a=control:(\S+))", self.sdp, re.M | re.S)
        control = m.group(1) if m else ""
        track = control if control.startswith("rtsp://") else urljoin(base if base.endswith("/") else base + "/", control)
        headers, _ = self._request("SETUP", track, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        self.session = headers.get("session", "").split(";")[0] or None
        self._request("PLAY", self.url, {"Range": "npt=0.000-"})

    def close(self) -> None:
        if self.sock is not None:
            try:
                if not self.closed_by_server:
                    self.sock.settimeout(0.5)
                    self._send("TEARDOWN", self.url, {})
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def _send(self, method: str, url: str, headers: dict[str, str]) -> None:
        assert self.sock is not None
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", "User-Agent: ioc-rtsp-probe"]
        if self.session:
            lines.append(f"Session: {self.session}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _request(self, method: str, url: str, headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
        self._send(method, url, headers or {})
        deadline = time.monotonic() + self.timeout
        while True:
            item = self._next(deadline)
            if item is None:
                raise RtspError(f"{method}: no answer within {self.timeout} s")
            if item[0] == "rtsp":
                status, hdrs, body = item[1]
                if status != 200:
                    raise RtspError(f"{method} {url}: RTSP {status}")
                return hdrs, body

    # -- reading
    def _fill(self, deadline: float) -> bool:
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError):
            return False
        if not data:
            self.closed_by_server = True
            raise RtspError("connection closed by the server")
        self._buf += data
        return True

    def _next(self, deadline: float) -> tuple[str, object] | None:
        """The next interleaved packet ("rtp", (channel, bytes)) or RTSP message; None on timeout."""
        buf = self._buf
        while True:
            if buf[:1] == b"$":
                if len(buf) >= 4:
                    channel, length = buf[1], struct.unpack(">H", buf[2:4])[0]
                    if len(buf) >= 4 + length:
                        pkt = bytes(buf[4 : 4 + length])
                        del buf[: 4 + length]
                        return "rtp", (channel, pkt)
            elif buf:
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    head = buf[:end].decode("latin-1").split("\r\n")
                    hdrs = {}
                    for line in head[1:]:
                        k, _, v = line.partition(":")
                        hdrs[k.strip().lower()] = v.strip()
                    length = int(hdrs.get("content-length", "0"))
                    if len(buf) >= end + 4 + length:
                        body = bytes(buf[end + 4 : end + 4 + length])
                        del buf[: end + 4 + length]
                        m = re.match(r"RTSP/1\.0 (\d+)", head[0])
                        if m is None:  # a request from the server: ignore
                            continue
                        return "rtsp", (int(m.group(1)), hdrs, body)
            if not self._fill(deadline):
                return None

    def next_frame(self, timeout: float) -> Frame | None:
        """The next complete frame, or None if none completes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            item = self._next(deadline)
            if item is None:
                return None
            if item[0] != "rtp":
                continue
            channel, pkt = item[1]  # type: ignore[misc]
            if channel != 0 or len(pkt) < 13:
                continue  # RTCP
            marker = pkt[1] & 0x80
            ts = struct.unpack(">I", pkt[4:8])[0]
            cc = pkt[0] & 0x0F
            payload = pkt[12 + 4 * cc :]
            if pkt[0] & 0x10 and len(payload) >= 4:  # header extension
                ext_len = struct.unpack(">H", payload[2:4])[0]
                payload = payload[4 + 4 * ext_len :]
            if not payload:
                continue
            nal = payload[0] & 0x1F
            if nal == 28 and len(payload) > 1:  # FU-A: the real type, on its start fragment
                if payload[1] & 0x80:
                    self._nals.append(payload[1] & 0x1F)
            elif nal == 24:  # STAP-A: several NAL units
                i = 1
                while i + 2 < len(payload):
                    size = struct.unpack(">H", payload[i : i + 2])[0]
                    if i + 2 < len(payload):
                        self._nals.append(payload[i + 2] & 0x1F)
                    i += 2 + size
            else:
                self._nals.append(nal)
            self._size += len(payload)
            if marker:
                frame = Frame(time.monotonic(), ts, tuple(self._nals), self._size)
                self._nals, self._size = [], 0
                return frame

    def read_frames(self, seconds: float, stop: threading.Event | None = None) -> list[Frame]:
        """Every frame that arrives in the next ``seconds``."""
        frames: list[Frame] = []
        end = time.monotonic() + seconds
        while (now := time.monotonic()) < end and not (stop and stop.is_set()):
            f = self.next_frame(end - now)
            if f is not None:
                frames.append(f)
        return frames
