"""MQTT 3.1.1 and 5.0 wire format: the pieces the embedded broker reads and writes.

Decoding works on one packet's body (the bytes after the fixed header) and raises
`MalformedPacket` for anything a conforming client would not send, so the connection code
has one place to turn bad input into a DISCONNECT with reason 0x81 and a log line naming
the client. Encoding builds whole packets; PUBLISH is split into a prefix and a suffix
around the packet identifier so one message fanned out to many subscribers is encoded once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

# packet types (high nibble of the first byte)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

# reason codes the broker sends
SUCCESS = 0x00
DISCONNECT_WITH_WILL = 0x04
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_ID_NOT_VALID = 0x85
BAD_USERNAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_SHUTTING_DOWN = 0x8B
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_ID_NOT_FOUND = 0x92
PACKET_TOO_LARGE = 0x95
TOPIC_ALIAS_INVALID = 0x94

# MQTT 3.1.1 CONNACK return codes for the same refusals
V3_REFUSED = {UNSUPPORTED_PROTOCOL_VERSION: 1, CLIENT_ID_NOT_VALID: 2, SERVER_SHUTTING_DOWN: 3,
              BAD_USERNAME_OR_PASSWORD: 4, NOT_AUTHORIZED: 5}

# property identifiers
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_CONTENT_TYPE = 0x03
P_RESPONSE_TOPIC = 0x08
P_CORRELATION_DATA = 0x09
P_SUBSCRIPTION_ID = 0x0B
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_AUTH_METHOD = 0x15
P_AUTH_DATA = 0x16
P_REQUEST_PROBLEM_INFO = 0x17
P_WILL_DELAY = 0x18
P_REQUEST_RESPONSE_INFO = 0x19
P_RESPONSE_INFO = 0x1A
P_SERVER_REFERENCE = 0x1C
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_MAXIMUM_QOS = 0x24
P_RETAIN_AVAILABLE = 0x25
P_USER_PROPERTY = 0x26
P_MAXIMUM_PACKET_SIZE = 0x27
P_WILDCARD_AVAILABLE = 0x28
P_SUBSCRIPTION_ID_AVAILABLE = 0x29
P_SHARED_AVAILABLE = 0x2A

_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: dict[int, int] = {
    P_PAYLOAD_FORMAT: _BYTE, P_MESSAGE_EXPIRY: _FOUR, P_CONTENT_TYPE: _STRING, P_RESPONSE_TOPIC: _STRING,
    P_CORRELATION_DATA: _BINARY, P_SUBSCRIPTION_ID: _VARINT, P_SESSION_EXPIRY: _FOUR,
    P_ASSIGNED_CLIENT_ID: _STRING, P_SERVER_KEEP_ALIVE: _TWO, P_AUTH_METHOD: _STRING, P_AUTH_DATA: _BINARY,
    P_REQUEST_PROBLEM_INFO: _BYTE, P_WILL_DELAY: _FOUR, P_REQUEST_RESPONSE_INFO: _BYTE,
    P_RESPONSE_INFO: _STRING, P_SERVER_REFERENCE: _STRING, P_REASON_STRING: _STRING,
    P_RECEIVE_MAXIMUM: _TWO, P_TOPIC_ALIAS_MAXIMUM: _TWO, P_TOPIC_ALIAS: _TWO, P_MAXIMUM_QOS: _BYTE,
    P_RETAIN_AVAILABLE: _BYTE, P_USER_PROPERTY: _PAIR, P_MAXIMUM_PACKET_SIZE: _FOUR,
    P_WILDCARD_AVAILABLE: _BYTE, P_SUBSCRIPTION_ID_AVAILABLE: _BYTE, P_SHARED_AVAILABLE: _BYTE,
}
_REPEATABLE = {P_USER_PROPERTY, P_SUBSCRIPTION_ID}
# what a PUBLISH may carry from publisher to subscriber unchanged
_FORWARDED = {P_PAYLOAD_FORMAT, P_MESSAGE_EXPIRY, P_CONTENT_TYPE, P_RESPONSE_TOPIC, P_CORRELATION_DATA,
              P_USER_PROPERTY}


class MalformedPacket(ValueError):
    """The bytes are not a valid MQTT packet; the connection must be closed."""

    def __init__(self, why: str, reason: int = MALFORMED_PACKET) -> None:
        super().__init__(why)
        self.reason = reason


Properties = dict[int, Any]


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it); raises IndexError when the buffer ends inside it."""
    value = 0
    shift = 0
    for _ in range(4):
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


class Reader:
    """Reads fields from one packet body, bounds-checked."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def left(self) -> int:
        return self.end - self.pos

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MalformedPacket("packet ends early")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise MalformedPacket("packet ends early")
        v = (self.buf[self.pos] << 8) | self.buf[self.pos + 1]
        self.pos += 2
        return v

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise MalformedPacket("packet ends early")
        (v,) = struct.unpack_from(">I", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def varint(self) -> int:
        try:
            v, self.pos = decode_varint(self.buf, self.pos)
        except IndexError:
            raise MalformedPacket("packet ends early") from None
        return v

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > self.end:
            raise MalformedPacket("length field runs past the packet")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket("string contains U+0000")
        return text

    def rest(self) -> bytes:
        v = self.buf[self.pos : self.end]
        self.pos = self.end
        return bytes(v)

    def properties(self) -> Properties:
        length = self.varint()
        stop = self.pos + length
        if stop > self.end:
            raise MalformedPacket("properties run past the packet")
        props: Properties = {}
        saved_end, self.end = self.end, stop
        try:
            while self.pos < stop:
                ident = self.varint()
                kind = _PROPERTY_TYPES.get(ident)
                if kind is None:
                    raise MalformedPacket(f"unknown property 0x{ident:02x}")
                value: Any
                if kind == _BYTE:
                    value = self.byte()
                elif kind == _TWO:
                    value = self.u16()
                elif kind == _FOUR:
                    value = self.u32()
                elif kind == _VARINT:
                    value = self.varint()
                elif kind == _STRING:
                    value = self.string()
                elif kind == _BINARY:
                    value = self.binary()
                else:
                    value = (self.string(), self.string())
                if ident in _REPEATABLE:
                    props.setdefault(ident, []).append(value)
                elif ident in props:
                    raise MalformedPacket(f"property 0x{ident:02x} given twice", PROTOCOL_ERROR)
                else:
                    props[ident] = value
        finally:
            self.end = saved_end
        return props


def encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def encode_binary(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def encode_properties(props: Properties) -> bytes:
    body = property_body(props)
    return encode_varint(len(body)) + body


def property_body(props: Properties) -> bytes:
    """Properties encoded without their leading length."""
    out = bytearray()
    for ident, value in props.items():
        kind = _PROPERTY_TYPES[ident]
        values = value if ident in _REPEATABLE else [value]
        for v in values:
            out += encode_varint(ident)
            if kind == _BYTE:
                out.append(v)
            elif kind == _TWO:
                out += struct.pack(">H", v)
            elif kind == _FOUR:
                out += struct.pack(">I", v)
            elif kind == _VARINT:
                out += encode_varint(v)
            elif kind == _STRING:
                out += encode_string(v)
            elif kind == _BINARY:
                out += encode_binary(v)
            else:
                out += encode_string(v[0]) + encode_string(v[1])
    return bytes(out)


def forwarded_properties(props: Properties) -> bytes:
    """The PUBLISH properties a subscriber receives, encoded without their length; the
    Message Expiry Interval is not among them: each delivery sends what is left of it."""
    return property_body({k: v for k, v in props.items() if k in _FORWARDED and k != P_MESSAGE_EXPIRY})


def expiry_property(seconds_left: int) -> bytes:
    return property_body({P_MESSAGE_EXPIRY: seconds_left})


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


# -- decoded client packets ----------------------------------------------------------


@dataclass
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Properties = field(default_factory=dict)


@dataclass
class Connect:
    level: int  # 4 = MQTT 3.1.1, 5 = MQTT 5.0
    client_id: str
    clean_start: bool
    keepalive: int
    username: str | None
    password: bytes | None
    will: Will | None
    props: Properties


def read_connect(body: bytes) -> Connect:
    r = Reader(body)
    name = r.binary()
    level = r.byte()
    if name not in (b"MQTT", b"MQIsdp"):
        raise MalformedPacket(f"protocol name {name!r}", PROTOCOL_ERROR)
    if level not in (4, 5):
        # the caller answers with "unsupported protocol version" in the client's dialect
        raise MalformedPacket(f"protocol level {level}", UNSUPPORTED_PROTOCOL_VERSION)
    flags = r.byte()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag set")
    keepalive = r.u16()
    props = r.properties() if level == 5 else {}
    client_id = r.string()
    will = None
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacket("will QoS 3")
        will_props = r.properties() if level == 5 else {}
        will_topic = r.string()
        will_payload = r.binary()
        will = Will(will_topic, will_payload, will_qos, bool(flags & 0x20), will_props)
    elif will_qos or flags & 0x20:
        raise MalformedPacket("will QoS or retain without a will")
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    if r.left():
        raise MalformedPacket("bytes after the CONNECT payload")
    return Connect(level, client_id, bool(flags & 0x02), keepalive, username, password, will, props)


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int
    props: Properties


def read_publish(flags: int, body: bytes, level: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    r = Reader(body)
    topic = r.string()
    packet_id = 0
    if qos:
        packet_id = r.u16()
        if packet_id == 0:
            raise MalformedPacket("PUBLISH with packet identifier 0")
    props = r.properties() if level == 5 else {}
    return Publish(topic, r.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id, props)


@dataclass
class SubscriptionRequest:
    topic_filter: str
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int


def read_subscribe(body: bytes, level: int) -> tuple[int, list[SubscriptionRequest], Properties]:
    r = Reader(body)
    packet_id = r.u16()
    props = r.properties() if level == 5 else {}
    requests = []
    while r.left():
        topic_filter = r.string()
        options = r.byte()
        if level == 5:
            if options & 0xC0 or (options >> 4) & 0x03 == 3:
                raise MalformedPacket("reserved subscription option bits set")
        elif options & 0xFC:
            raise MalformedPacket("reserved subscription option bits set")
        qos = options & 0x03
        if qos == 3:
            raise MalformedPacket("subscription QoS 3")
        requests.append(SubscriptionRequest(topic_filter, qos, bool(options & 0x04), bool(options & 0x08),
                                            (options >> 4) & 0x03))
    if not requests:
        raise MalformedPacket("SUBSCRIBE without a topic filter", PROTOCOL_ERROR)
    return packet_id, requests, props


def read_unsubscribe(body: bytes, level: int) -> tuple[int, list[str]]:
    r = Reader(body)
    packet_id = r.u16()
    if level == 5:
        r.properties()
    filters = []
    while r.left():
        filters.append(r.string())
    if not filters:
        raise MalformedPacket("UNSUBSCRIBE without a topic filter", PROTOCOL_ERROR)
    return packet_id, filters


def read_ack(body: bytes) -> tuple[int, int]:
    """(packet id, reason code) of PUBACK, PUBREC, PUBREL, PUBCOMP."""
    r = Reader(body)
    packet_id = r.u16()
    reason = r.byte() if r.left() else SUCCESS
    return packet_id, reason


def read_disconnect(body: bytes, level: int) -> tuple[int, Properties]:
    if level != 5 or not body:
        return SUCCESS, {}
    r = Reader(body)
    reason = r.byte()
    props = r.properties() if r.left() else {}
    return reason, props


# -- packets the broker sends ----------------------------------------------------------


def connack(level: int, session_present: bool, reason: int, props: Properties | None = None) -> bytes:
    if level == 5:
        return packet(0x20, bytes((int(session_present), reason)) + encode_properties(props or {}))
    code = 0 if reason == SUCCESS else V3_REFUSED.get(reason, 5)
    return packet(0x20, bytes((int(session_present and code == 0), code)))


def ack(kind: int, packet_id: int, reason: int, level: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""
    first = (kind << 4) | (0x02 if kind == PUBREL else 0)
    if level == 5 and reason != SUCCESS:
        return packet(first, struct.pack(">HB", packet_id, reason))
    return packet(first, struct.pack(">H", packet_id))


def suback(packet_id: int, codes: list[int], level: int) -> bytes:
    if level == 5:
        return packet(0x90, struct.pack(">H", packet_id) + b"\x00" + bytes(codes))
    return packet(0x90, struct.pack(">H", packet_id) + bytes(c if c < 0x80 else 0x80 for c in codes))


def unsuback(packet_id: int, codes: list[int], level: int) -> bytes:
    if level == 5:
        return packet(0xB0, struct.pack(">H", packet_id) + b"\x00" + bytes(codes))
    return packet(0xB0, struct.pack(">H", packet_id))


PINGRESP_PACKET = b"\xd0\x00"


def disconnect(reason: int, why: str | None = None) -> bytes:
    """A v5 DISCONNECT (3.1.1 has no server-sent DISCONNECT: the broker just closes)."""
    props = encode_properties({P_REASON_STRING: why[:200]} if why else {})
    return packet(0xE0, bytes((reason,)) + props)


class OutgoingPublish:
    """One message encoded once per protocol level, completed per subscriber.

    A subscriber's copy differs only in the QoS, DUP and RETAIN bits, the packet identifier
    and (v5) subscription identifiers, so the topic and the payload are joined once.
    """

    __slots__ = ("topic_field", "payload", "props_raw", "_cache")

    def __init__(self, topic: str, payload: bytes, props_raw: bytes) -> None:
        self.topic_field = encode_string(topic)
        self.payload = payload
        self.props_raw = props_raw  # forwarded v5 properties, without their length
        self._cache: dict[tuple[int, int], bytes] = {}  # (level, first byte) of QoS 0 copies

    def encode(self, level: int, qos: int, retain: bool, packet_id: int, dup: bool = False,
               subscription_ids: tuple[int, ...] = ()) -> bytes:
        flags = 0x30 | (qos << 1) | int(retain) | (0x08 if dup else 0)
        if qos == 0 and not subscription_ids:
            key = (level, flags)
            cached = self._cache.get(key)
            if cached is None:
                cached = self._cache[key] = self._build(level, flags, b"", ())
            return cached
        pid = struct.pack(">H", packet_id) if qos else b""
        return self._build(level, flags, pid, subscription_ids)

    def _build(self, level: int, flags: int, pid: bytes, subscription_ids: tuple[int, ...]) -> bytes:
        if level == 5:
            props = self.props_raw
            if subscription_ids:
                props = props + b"".join(encode_varint(P_SUBSCRIPTION_ID) + encode_varint(s) for s in subscription_ids)
            variable = self.topic_field + pid + encode_varint(len(props)) + props
        else:
            variable = self.topic_field + pid
        size = len(variable) + len(self.payload)
        return b"".join((bytes((flags,)), encode_varint(size), variable, self.payload))
