"""A camera's own H.264, one access unit per message, from the camera service to the pages.

The same bytes travel both hops: the camera service publishes them on
`topics.live_camera(id, "video/main" | "video/sub")` (QoS 0, never retained: a late frame is
worth nothing), and the hub writes them unchanged, as one binary websocket message, to every
client that shows that camera's stream live. Nothing on the way decodes or re-encodes.

    b"IOCV" | u16 big-endian header length | header (UTF-8 JSON) | access unit

header: {"camera", "stream" ("main" | "sub"), "seq" (counts access units of this camera
and stream from 1, per reader: a reader that reopens starts again), "captured_at" (epoch s,
float: when the camera service received it), "key" (bool: an IDR picture, where a decoder
may start), "codec" (WebCodecs codec string, "avc1.PPCCLL"), "width", "height"}.

The access unit is Annex B (start codes), and every keyframe carries its SPS and PPS in
front of the picture, so a decoder configured with just the codec string can start at any
keyframe and follows a camera that changes resolution or parameter sets mid-stream (a new
codec, width or height in a keyframe's header means: configure again).
"""

from __future__ import annotations

from typing import Literal, TypedDict

from ioc.core.contracts import framing

MAGIC = b"IOCV"
Stream = Literal["main", "sub"]
STREAMS: tuple[Stream, ...] = ("main", "sub")


class VideoHeader(TypedDict):
    camera: str
    stream: str
    seq: int
    captured_at: float
    key: bool
    codec: str
    width: int
    height: int


def encode_video(header: VideoHeader, access_unit: bytes | memoryview) -> bytes:
    return framing.pack(MAGIC, header, access_unit)


def decode_video(payload: bytes | bytearray | memoryview) -> tuple[VideoHeader, memoryview]:
    """The header and a view of the access unit (no copy); ValueError for anything else."""
    head, body = framing.unpack(MAGIC, payload, "video frame")
    if (not isinstance(head.get("camera"), str) or head.get("stream") not in STREAMS
            or not isinstance(head.get("key"), bool) or not isinstance(head.get("seq"), int)):
        raise ValueError("video frame header lacks camera, stream, key or seq")
    return head, body


def avc_codec_string(sps: bytes) -> str:
    """WebCodecs' codec string for an H.264 SPS NAL unit (with or without its start code):
    profile_idc, constraint flags and level_idc, as `avc1.PPCCLL`."""
    body = sps.lstrip(b"\x00")
    if body[:1] == b"\x01":
        body = body[1:]
    if len(body) < 4 or body[0] & 0x1F != 7:
        raise ValueError("not an H.264 SPS NAL unit")
    return f"avc1.{body[1]:02x}{body[2]:02x}{body[3]:02x}"
