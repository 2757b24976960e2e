"""A small RTSP 1.0 client for one H.264 video track, RTP interleaved on the RTSP connection.

Blocking, for the camera's reader thread (camera/capture.py): one TCP connection carries the
requests and the media (`RTP/AVP/TCP`, what FFmpeg's `rtsp_transport;tcp` does), which goes
through NAT and firewalls and loses no packets on a busy LAN. Why not FFmpeg's: it ends an
access unit only when the next one starts (camera/rtp_h264.py); the RTSP part is small.

- Basic and Digest authentication (RFC 2617, with or without qop=auth), from the URL's user
  and password; cameras answer the first request with 401 and the challenge.
- The SDP's first video track: payload type, `sprop-parameter-sets` (the SPS/PPS a decoder
  starts from), `packetization-mode` (0 or 1; 2, interleaved, is refused).
- A track that is not H.264 raises `UnsupportedCodec`: the caller reads that camera through
  FFmpeg instead (one session at a time: this one is torn down first).
- Keep-alive: GET_PARAMETER (OPTIONS if the camera does not list it) every half of the
  session timeout the camera gave in SETUP; its answer is read and skipped among the media.
- Every failure is an `RtspError` whose message says what went wrong, never the password.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import select
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

USER_AGENT = "ioc-camera"
DEFAULT_SESSION_TIMEOUT_S = 60.0


class RtspError(RuntimeError):
    """The camera refused, answered something unusable, or hung up."""


class UnsupportedCodec(RtspError):
    """The camera's video is not H.264 (or not a packetisation we depacketise)."""

    def __init__(self, codec: str, why: str) -> None:
        super().__init__(why)
        self.codec = codec


@dataclass(frozen=True, slots=True)
class Track:
    """The video track the SDP describes."""

    control: str  # absolute URL to SETUP
    payload_type: int
    codec: str  # encoding name as the SDP says it, e.g. "H264"
    clock_rate: int
    parameter_sets: tuple[bytes, ...]  # SPS and PPS NAL units from sprop-parameter-sets
    packetization_mode: int


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated ones joined by "\n"
    body: bytes


def parse_sdp(sdp: str, base: str) -> Track:
    """The first video track of a session description; RtspError or UnsupportedCodec if unusable."""
    media = re.split(r"^(?=m=)", sdp.replace("\r\n", "\n"), flags=re.M)
    video = next((m for m in media if m.startswith("m=video")), None)
    if video is None:
        raise RtspError("the camera's SDP has no video track")
    m = re.match(r"m=video \d+(?:/\d+)? \S+ (\d+)", video)
    if m is None:
        raise RtspError("the camera's SDP has a malformed m=video line")
    pt = int(m.group(1))
    rtpmap = re.search(rf"^a=rtpmap:{pt} ([\w.-]+)/(\d+)", video, re.M)
    if rtpmap is None:
        if pt == 26:
            raise UnsupportedCodec("JPEG", "the camera sends MJPEG (static payload type 26)")
        raise RtspError(f"the camera's SDP has no rtpmap for payload type {pt}")
    codec, clock = rtpmap.group(1), int(rtpmap.group(2))
    if codec.upper() != "H264":
        raise UnsupportedCodec(codec.upper(), f"the camera sends {codec.upper()}, not H.264")
    fmtp = re.search(rf"^a=fmtp:{pt} (.*)$", video, re.M)
    params = {}
    for item in (fmtp.group(1) if fmtp else "").split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.lower()] = value.strip()
    try:
        mode = int(params.get("packetization-mode", "0"))
        sets = tuple(base64.b64decode(s, validate=True) for s in params.get("sprop-parameter-sets", "").split(",") if s)
    except ValueError as exc:
        raise RtspError(f"the camera's SDP has a malformed fmtp line: {exc}") from None
    if mode not in (0, 1):
        raise UnsupportedCodec("H264", f"H.264 packetization-mode {mode} (interleaved) is not handled")
    control = re.search(r"^a=control:(\S+)", video, re.M)
    url = control.group(1) if control else ""
    if url == "*" or not url:
        url = base
    elif not re.match(r"^rtsps?://", url, re.I):
        url = urljoin(base if base.endswith("/") else base + "/", url)
    return Track(url, pt, codec.upper(), clock, sets, mode)


class _Auth:
    """Answers a camera's challenge: Digest when offered, else Basic."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.scheme: str | None = None
        self.params: dict[str, str] = {}
        self.nc = 0

    def challenge(self, header: str) -> bool:
        """Take the best scheme of the WWW-Authenticate headers; False when there is none."""
        offers = [h.strip() for h in header.split("\n") if h.strip()]
        digest = next((h for h in offers if h.lower().startswith("digest ")), None)
        if digest is not None:
            self.scheme = "digest"
            self.params = {k.lower(): v1 or v2 for k, v1, v2 in
                           re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))', digest[7:])}
            self.nc = 0
            return "nonce" in self.params
        if any(h.lower().startswith("basic") for h in offers):
            self.scheme = "basic"
            return True
        return False

    def header(self, method: str, uri: str) -> str | None:
        if self.scheme == "basic":
            return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.scheme != "digest":
            return None
        p = self.params
        realm, nonce = p.get("realm", ""), p["nonce"]

        def md5(s: str) -> str:
            return hashlib.md5(s.encode("utf-8")).hexdigest()  # noqa: S324 (RFC 2617 requires it)

        ha1, ha2 = md5(f"{self.user}:{realm}:{self.password}"), md5(f"{method}:{uri}")
        fields = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        qop = p.get("qop", "")
        if "auth" in [q.strip() for q in qop.split(",")]:
            self.nc += 1
            cnonce = os.urandom(8).hex()
            response = md5(f"{ha1}:{nonce}:{self.nc:08x}:{cnonce}:auth:{ha2}")
            fields += ["qop=auth", f"nc={self.nc:08x}", f'cnonce="{cnonce}"']
        else:
            response = md5(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{response}"')
        if "opaque" in p:
            fields.append(f'opaque="{p["opaque"]}"')
        if "algorithm" in p:
            fields.append(f"algorithm={p['algorithm']}")
        return "Digest " + ", ".join(fields)


class RtspSession:
    """One camera stream: `open()` (OPTIONS, DESCRIBE, SETUP, PLAY), then `read()` its RTP
    packets, then `close()` (TEARDOWN)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "rtsp":
            raise RtspError(f"not an rtsp:// URL ({parts.scheme}://)")
        self.host, self.port = parts.hostname or "", parts.port or 554
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        self.url = parts._replace(netloc=f"{netloc}:{self.port}").geturl()  # no credentials
        self._auth = _Auth(unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
        self.timeout_s = timeout_s
        self.track: Track | None = None
        self.session: str | None = None
        self.session_timeout_s = DEFAULT_SESSION_TIMEOUT_S
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None
        # what came in and is not read yet: bytes, never resized in place, so the packets
        # `read_packets` hands out can be views of it
        self._buf = b""
        self._pos = 0
        self._cseq = 0
        self._public = ""
        self._last_request = 0.0
        self._channel = 0
        self.sdp = ""
        self.keepalives_answered = 0  # answers to keep-alives (read among the media)

    # -- the requests
    def open(self) -> Track:
        """Connect and start the video; the track it plays."""
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise RtspError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # reads wait in poll(), then recv() what is there: a socket timeout would cost one more
        # system call per read to set it (a read per picture and camera: 250 a second for ten)
        self._sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._public = self.request("OPTIONS", self.url).headers.get("public", "")
        answer = self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        base = answer.headers.get("content-base") or answer.headers.get("content-location") or self.url
        self.sdp = answer.body.decode("utf-8", "replace")
        self.track = parse_sdp(self.sdp, base)
        answer = self.request("SETUP", self.track.control, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        session = answer.headers.get("session", "")
        self.session = session.split(";")[0].strip() or None
        m = re.search(r"timeout\s*=\s*(\d+)", session)
        if m:
            self.session_timeout_s = max(float(m.group(1)), 2.0)
        m = re.search(r"interleaved=(\d+)", answer.headers.get("transport", ""))
        self._channel = int(m.group(1)) if m else 0
        if "TCP" not in answer.headers.get("transport", "TCP").upper():
            raise RtspError("the camera would not send RTP over the RTSP connection (TCP)")
        self.request("PLAY", self.url, {"Range": "npt=0.000-"})
        return self.track

    def close(self) -> None:
        """TEARDOWN (best effort: the camera may be gone) and hang up."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            if self.session:
                self._sock = sock
                self._send("TEARDOWN", self.url, {}, timeout_s=0.5)
        except (OSError, RtspError):
            pass
        finally:
            self._sock = None
            self._poll = None
            sock.close()

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Response:
        """Send a request and wait for its answer (media arriving meanwhile is dropped: we
        only wait like this before PLAY). Answers 401 once with the credentials of the URL."""
        for attempt in (1, 2):
            cseq = self._send(method, url, headers or {})
            deadline = time.monotonic() + self.timeout_s
            while True:
                item = self._next(deadline)
                if item is None:
                    raise RtspError(f"{method}: no answer from {self.host}:{self.port} within {self.timeout_s:g} s")
                if isinstance(item, Response) and item.headers.get("cseq", str(cseq)) == str(cseq):
                    break
            if item.status == 401 and attempt == 1 and self._auth is not None \
                    and self._auth.challenge(item.headers.get("www-authenticate", "")):
                continue
            if item.status == 401:
                raise RtspError(f"{method}: 401 Unauthorized: " + (
                    "wrong user name or password" if self._auth else "the camera wants a user name and password"))
            if item.status == 404:
                raise RtspError(f"{method}: 404 Not Found: no such stream path on the camera")
            if item.status != 200:
                raise RtspError(f"{method}: the camera answered {item.status} {item.reason}")
            return item
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, headers: dict[str, str], timeout_s: float | None = None) -> int:
        if self._sock is None:
            raise RtspError("the connection is closed")
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        auth = self._auth.header(method, url) if self._auth is not None else None
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        try:
            self._sock.settimeout(self.timeout_s if timeout_s is None else timeout_s)  # only while it writes
            try:
                self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            finally:
                self._sock.setblocking(False)
        except OSError as exc:
            raise RtspError(f"{method}: the connection failed: {exc.strerror or exc or 'timed out'}") from None
        self._last_request = time.monotonic()
        return self._cseq

    # -- the media
    def read(self, timeout_s: float) -> tuple[bytes, float] | None:
        """The next RTP packet of the video and the wall-clock time its bytes came in; None
        when none came within `timeout_s`. Keeps the session alive meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._keep_alive()
            item = self._next(deadline)
            if item is None:
                return None
            if isinstance(item, tuple) and item[0] == self._channel:
                return bytes(item[1]), self._arrived
            if isinstance(item, Response):
                self._answered(item)

    def read_packets(self, timeout_s: float) -> tuple[list[memoryview], float] | None:
        """Every RTP packet of the video already in (at least one: waits up to `timeout_s`),
        as views of the received bytes, and the wall-clock time they came in; None when none
        came. A camera sends a picture's packets in one burst and one read takes them all:
        the reader's loop then turns once per picture, not once per packet."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._keep_alive()
            packets = self._take()
            if packets:
                return packets, self._arrived
            buf, pos = self._buf, self._pos
            if pos < len(buf) and buf[pos] != 0x24:  # an RTSP message: a keep-alive's answer
                item = self._next(deadline)
                if item is None:
                    return None
                if isinstance(item, Response):
                    self._answered(item)
                elif item[0] == self._channel:
                    return [item[1]], self._arrived
            elif not self._fill(deadline):
                return None

    def _take(self) -> list[memoryview]:
        """The whole interleaved packets of the video's channel at the head of the buffer."""
        buf, pos, n, channel = self._buf, self._pos, len(self._buf), self._channel
        out: list[memoryview] = []
        view: memoryview | None = None
        while pos + 4 <= n and buf[pos] == 0x24:
            end = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
            if end > n:
                break
            if buf[pos + 1] == channel:
                if view is None:
                    view = memoryview(buf)
                out.append(view[pos + 4:end])
            pos = end
        self._pos = pos
        return out

    def _keep_alive(self) -> None:
        if time.monotonic() - self._last_request > self.session_timeout_s / 2:
            self._send("GET_PARAMETER" if "GET_PARAMETER" in self._public else "OPTIONS", self.url, {})

    def _answered(self, answer: Response) -> None:
        self.keepalives_answered += 1
        if answer.status in (405, 501):  # GET_PARAMETER not allowed after all: OPTIONS then
            self._public = ""

    _arrived = 0.0

    def _fill(self, deadline: float) -> bool:
        sock, poll = self._sock, self._poll
        if sock is None or poll is None:
            raise RtspError("the connection is closed")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poll.poll(remaining * 1000.0):
                return False
            try:
                data = sock.recv(1 << 16)
                break
            except BlockingIOError:
                continue  # woken without data after all
            except OSError as exc:
                raise RtspError(f"the connection failed: {exc.strerror or exc}") from None
        if not data:
            raise RtspError("the camera closed the connection")
        self._arrived = time.time()
        buf, pos = self._buf, self._pos
        self._buf = buf[pos:] + data if pos < len(buf) else data
        self._pos = 0
        return True

    def _next(self, deadline: float) -> tuple[int, memoryview] | Response | None:
        """The next interleaved packet (channel, bytes) or RTSP answer; None on timeout."""
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) > pos:
                if buf[pos] == 0x24:  # '$': interleaved binary data
                    if len(buf) >= pos + 4:
                        size = int.from_bytes(buf[pos + 2:pos + 4], "big")
                        if len(buf) >= pos + 4 + size:
                            self._pos = pos + 4 + size
                            return buf[pos + 1], memoryview(buf)[pos + 4:pos + 4 + size]
                else:
                    end = buf.find(b"\r\n\r\n", pos)
                    if end >= 0:
                        message = self._message(pos, end)
                        if message is not None:
                            return message
                        continue
                    if len(buf) - pos > 64 * 1024:
                        raise RtspError("the camera sent something that is neither RTSP nor interleaved RTP")
            if not self._fill(deadline):
                return None

    def _message(self, pos: int, end: int) -> Response | None:
        """Parse the RTSP message at `pos` (its head ends at `end`) if its body is all in; a
        request from the camera (ANNOUNCE, GET_PARAMETER...) is consumed and ignored."""
        head = self._buf[pos:end].decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}\n{value.strip()}" if key in headers else value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise RtspError("the camera sent a malformed Content-Length") from None
        if len(self._buf) < end + 4 + length:
            if not self._fill(time.monotonic() + self.timeout_s):
                raise RtspError("the camera's answer was cut short")
            return self._message(self._pos, self._buf.find(b"\r\n\r\n", self._pos))
        body = self._buf[end + 4:end + 4 + length]
        self._pos = end + 4 + length
        m = re.match(r"RTSP/1\.\d (\d{3}) ?(.*)", head[0])
        if m is None:
            if not re.match(r"[A-Z_]+ \S+ RTSP/1\.\d", head[0]):
                raise RtspError(f"the camera sent something that is not RTSP: {head[0][:60]!r}")
            return None
        return Response(int(m.group(1)), m.group(2), headers, body)
