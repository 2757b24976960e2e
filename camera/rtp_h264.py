"""H.264 access units out of RTP packets (RFC 6184), ended by the marker bit.

Why our own: FFmpeg's RTSP demuxer and H.264 parser end an access unit only when the next
one begins, one frame interval (40 ms at 25 fps) after its last packet came in. The RTP
marker bit says "this packet ends the picture"; a camera that never sets it still ends a
picture by starting the next one with a new RTP timestamp (then we are no faster than
FFmpeg, but no slower).

Packetisation modes 0 and 1: single NAL unit packets, STAP-A (several NAL units in one
packet) and FU-A (one NAL unit over several packets). STAP-B, MTAP and FU-B (interleaved
mode 2) are refused by the SDP check (camera/rtsp_client.py) and counted here if they turn
up. A gap in the sequence numbers means a lost packet: the access unit it belongs to is
dropped whole (a decoder handed half a picture conceals the rest with garbage, and the
browsers show that garbage until the next keyframe), and so is every unit after it up to
the next IDR, since they predict from the damaged one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

START = b"\x00\x00\x00\x01"
NAL_IDR = 5
STAP_A, FU_A = 24, 28
RTP_HEADER = struct.Struct(">BBHII")


class RtpError(ValueError):
    """A packet that is not RTP version 2 or whose headers overrun it."""


Packet = bytes | memoryview  # one RTP packet: a view of the receive buffer costs no copy


@dataclass(frozen=True, slots=True)
class RtpPacket:
    seq: int
    timestamp: int
    marker: bool
    payload_type: int
    payload: Packet


def _payload_bounds(packet: Packet, b0: int) -> tuple[int, int]:
    """Where the payload starts and ends, past CSRCs and a header extension, before padding."""
    n = len(packet)
    if n < 12:
        raise RtpError(f"RTP packet of {n} bytes, shorter than its header")
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, not 2")
    start = 12 + 4 * (b0 & 0x0F)
    end = n
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if start + 4 > end:
            raise RtpError("RTP header extension cut short")
        start += 4 + 4 * int.from_bytes(packet[start + 2:start + 4], "big")
    if b0 & 0x20:  # padding: its last byte says how much
        end -= packet[-1]
    if start > end:
        raise RtpError("RTP headers overrun the packet")
    return start, end


def parse_rtp(packet: Packet) -> RtpPacket:
    """The RTP header fields and the payload (CSRCs, header extension and padding removed)."""
    if len(packet) < 12:
        raise RtpError(f"RTP packet of {len(packet)} bytes, shorter than its header")
    b0, b1, seq, ts, _ssrc = RTP_HEADER.unpack_from(packet)
    start, end = _payload_bounds(packet, b0)
    return RtpPacket(seq, ts, bool(b1 & 0x80), b1 & 0x7F, packet[start:end])


@dataclass(slots=True)
class AccessUnit:
    """One picture as Annex B, with the time its last packet came in (its capture time)."""

    data: bytes
    key: bool  # holds an IDR slice: a decoder can start here
    timestamp: int  # RTP, 90 kHz
    arrived: float  # wall clock (time.time()) of its last packet
    nal_types: tuple[int, ...]


@dataclass(slots=True)
class _Building:
    """A unit coming in, kept as the pieces of its Annex B bytes (start codes, NAL headers and
    views of the packets' payloads), joined once when it ends: no copy per packet."""

    timestamp: int
    pieces: list[Packet] = field(default_factory=list)
    types: list[int] = field(default_factory=list)  # of its NAL units, in order
    fragment: bool = False  # an FU-A NAL unit still coming in
    broken: bool = False


class Depacketizer:
    """Feeds on one stream's RTP packets in arrival order; gives back finished access units.

    Counters for the camera's status: `lost` packets (sequence gaps), `dropped` access units
    (damaged, or waiting for a keyframe after damage), `unsupported` payloads."""

    def __init__(self, payload_type: int | None = None) -> None:
        self.payload_type = payload_type
        self.lost = 0
        self.dropped = 0
        self.unsupported = 0
        self.without_marker = 0  # units ended by a new timestamp: the camera does not set the marker
        self._seq: int | None = None
        self._unit: _Building | None = None
        self._need_key = True  # nothing before the first IDR decodes

    def push(self, raw: Packet, arrived: float) -> list[AccessUnit]:
        """The access units this packet finishes (usually none or one; two when it also ends
        a previous unit whose marker never came). Raises RtpError for a packet that is not RTP."""
        out: list[AccessUnit] = []
        self.feed(raw, arrived, out)
        return out

    def feed(self, raw: Packet, arrived: float, out: list[AccessUnit]) -> None:
        """`push` appending to `out`: the reader's path, ~2,000 packets a second for ten 1080p
        cameras, so the header is read in place and nothing is allocated per packet but views."""
        if not isinstance(raw, memoryview):
            raw = memoryview(raw)  # its payload's slices are views then, not copies
        if len(raw) < 12:
            raise RtpError(f"RTP packet of {len(raw)} bytes, shorter than its header")
        b0, b1, seq, timestamp, _ssrc = RTP_HEADER.unpack_from(raw)
        if b0 == 0x80:  # version 2, no padding, extension or CSRC: what cameras send
            payload = raw[12:]
        else:
            start, end = _payload_bounds(raw, b0)
            payload = raw[start:end]
        if self.payload_type is not None and b1 & 0x7F != self.payload_type:
            return  # another payload on the same channel (e.g. comfort noise): not ours
        gap = self._sequence(seq)
        if gap is None:
            return  # a duplicate or a late packet: already counted as lost
        unit = self._unit
        if unit is not None and unit.timestamp != timestamp:
            if not gap:
                self.without_marker += 1
            self._finish(unit, arrived, out)
            unit = None
        if unit is None:
            unit = self._unit = _Building(timestamp)
        if gap:
            unit.broken = True  # the lost packets may have been this unit's (or all of one)
        if payload:
            self._payload(unit, payload)
        if b1 & 0x80:  # the marker: this packet ends the picture
            self._finish(unit, arrived, out)

    def _sequence(self, seq: int) -> int | None:
        """Packets lost just before this one (0: none), or None for one that came too late."""
        last, self._seq = self._seq, seq
        if last is None:
            return 0
        ahead = (seq - last) & 0xFFFF
        if ahead == 1:
            return 0
        if ahead == 0 or ahead >= 0x8000:  # repeated or older: ignore it, keep our place
            self._seq = last
            return None
        self.lost += ahead - 1
        return ahead - 1

    def _payload(self, unit: _Building, payload: Packet) -> None:
        kind = payload[0] & 0x1F
        if unit.fragment and kind != FU_A:
            unit.fragment, unit.broken = False, True  # a fragmented unit without its end
        if 1 <= kind <= 23:
            unit.pieces += (START, payload)
            unit.types.append(kind)
        elif kind == STAP_A:
            i, n = 1, len(payload)
            while i + 2 <= n:
                size = (payload[i] << 8) | payload[i + 1]
                if size == 0 or i + 2 + size > n:
                    unit.broken = True
                    return
                unit.pieces += (START, payload[i + 2:i + 2 + size])
                unit.types.append(payload[i + 2] & 0x1F)
                i += 2 + size
        elif kind == FU_A and len(payload) >= 2:
            head = payload[1]
            if head & 0x80:  # start: the NAL header rebuilt from the indicator and FU header
                if unit.fragment:
                    unit.broken = True
                unit.fragment = True
                unit.pieces += (START, _BYTE[(payload[0] & 0xE0) | (head & 0x1F)])
                unit.types.append(head & 0x1F)
            elif not unit.fragment:
                unit.broken = True  # the start fragment was lost
                return
            unit.pieces.append(payload[2:])
            if head & 0x40:  # end
                unit.fragment = False
        else:
            self.unsupported += 1
            unit.broken = True

    def _finish(self, unit: _Building, arrived: float, out: list[AccessUnit]) -> None:
        self._unit = None
        if unit.fragment:
            unit.broken = True
        types = unit.types
        key = NAL_IDR in types
        if unit.broken or not types:
            self._need_key = True
            self.dropped += 1 if types or unit.broken else 0
            return
        if self._need_key and not key:
            self.dropped += 1
            return
        self._need_key = False
        out.append(AccessUnit(b"".join(unit.pieces), key, unit.timestamp, arrived, tuple(types)))


_BYTE = [bytes((i,)) for i in range(256)]  # a rebuilt NAL header without allocating one
