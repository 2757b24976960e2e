"""H.264 access units as the video contract wants them: Annex B, SPS and PPS on every keyframe.

Cameras over RTSP already give Annex B (FFmpeg's RTP depacketiser writes start codes), with
SPS/PPS in the SDP and, on most cameras, again in front of each IDR. MP4 files give AVCC:
each NAL unit behind a 1-4 byte big-endian length, the parameter sets only once, in the
`avcC` box (the stream's extradata). `AccessUnits` turns either into what a browser's
decoder can start on at any keyframe, without decoding anything: it only walks NAL headers.
"""

from __future__ import annotations

from collections.abc import Iterator

from ioc.core.contracts.video_frame import avc_codec_string

START = b"\x00\x00\x00\x01"
NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8


def annexb_nals(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B buffer, without their start codes."""
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < n:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = n if j < 0 else j
        # a 4-byte start code (or trailing zero bytes) leaves zeros at the end of this unit
        nal = data[start:end].rstrip(b"\x00") if j >= 0 else data[start:end]
        if nal:
            yield nal
        i = j


def avcc_nals(data: bytes, length_size: int) -> Iterator[bytes]:
    """The NAL units of an AVCC buffer (each behind a `length_size`-byte length)."""
    i, n = 0, len(data)
    while i + length_size <= n:
        size = int.from_bytes(data[i:i + length_size], "big")
        i += length_size
        if size <= 0 or i + size > n:
            raise ValueError(f"AVCC NAL unit of {size} bytes overruns the {n}-byte packet")
        yield data[i:i + size]
        i += size


def parse_avcc(extradata: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """(NAL length size, SPS list, PPS list) of an `avcC` record (ISO 14496-15)."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("not an avcC record")
    length_size = (extradata[4] & 0x03) + 1
    i = 5
    out: list[list[bytes]] = []
    for mask in (0x1F, 0xFF):  # SPS count in 5 bits, PPS count in 8
        if i >= len(extradata):
            raise ValueError("avcC record cut short")
        count = extradata[i] & mask
        i += 1
        units = []
        for _ in range(count):
            size = int.from_bytes(extradata[i:i + 2], "big")
            units.append(extradata[i + 2:i + 2 + size])
            i += 2 + size
        out.append(units)
    return length_size, out[0], out[1]


class AccessUnits:
    """Rewrites one stream's packets into contract access units, remembering its parameter sets.

    `extradata` is the stream's: an `avcC` record (MP4: packets are AVCC) or Annex B parameter
    sets (RTSP's SDP: packets are Annex B already)."""

    def __init__(self, extradata: bytes | None) -> None:
        self.length_size = 0  # 0: packets are Annex B
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.codec: str | None = None
        if extradata and extradata[0] == 1:
            self.length_size, sps, pps = parse_avcc(extradata)
            self._remember(sps[:1] + pps[:1])
        elif extradata:
            self._remember(list(annexb_nals(extradata)))

    def _remember(self, nals: list[bytes]) -> None:
        for nal in nals:
            kind = nal[0] & 0x1F
            if kind == NAL_SPS and nal != self.sps:
                self.sps = nal
                try:
                    self.codec = avc_codec_string(nal)
                except ValueError:
                    self.codec = None
            elif kind == NAL_PPS:
                self.pps = nal

    def convert(self, data: bytes) -> tuple[bytes, bool]:
        """The packet as Annex B, and whether it is an IDR picture (where a decoder may start),
        with the last SPS and PPS in front of an IDR that lacks them."""
        nals = list(avcc_nals(data, self.length_size) if self.length_size else annexb_nals(data))
        kinds = {nal[0] & 0x1F for nal in nals}
        if NAL_SPS in kinds or NAL_PPS in kinds:
            self._remember([n for n in nals if n[0] & 0x1F in (NAL_SPS, NAL_PPS)])
        key = NAL_IDR in kinds
        if key and NAL_SPS not in kinds and self.sps is not None and self.pps is not None:
            nals = [self.sps, self.pps, *nals]
        elif not self.length_size:
            return data, key  # Annex B already, nothing to add: the packet as it came
        return b"".join(START + nal for nal in nals), key
