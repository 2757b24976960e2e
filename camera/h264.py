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


class _Bits:
    """An MSB-first bit reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("SPS cut short")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """The picture size (width, height, after cropping) an SPS NAL unit announces (ITU-T H.264
    7.3.2.1.1), so the video header says it without decoding: a camera that changes resolution
    mid-stream says so in the keyframe that changes it."""
    bits = _Bits(sps[1:].replace(b"\x00\x00\x03", b"\x00\x00"))
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in HIGH_PROFILES:
        chroma = bits.ue()
        if chroma == 3 and bits.u(1):  # separate colour planes: cropped like monochrome
            chroma = 0
        bits.ue(), bits.ue(), bits.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        if bits.u(1):  # scaling matrices: skipped
            for i in range(12 if chroma == 3 else 8):
                if bits.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + bits.se() + 256) % 256
                        last = nxt or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1), bits.se(), bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue(), bits.u(1)  # max_num_ref_frames, gaps_in_frame_num_allowed
    width = (bits.ue() + 1) * 16
    map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    height = (2 - frame_mbs_only) * map_units * 16
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field
    bits.u(1)  # direct_8x8_inference
    if bits.u(1):  # frame cropping
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        unit_x = 1 if chroma in (0, 3) else 2
        unit_y = (1 if chroma in (0, 2, 3) else 2) * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    return width, height


class AccessUnits:
    """Rewrites one stream's packets into contract access units, remembering its parameter sets.

    `extradata` is the stream's: an `avcC` record (MP4: packets are AVCC) or Annex B parameter
    sets (RTSP's SDP: packets are Annex B already)."""

    def __init__(self, extradata: bytes | None) -> None:
        self.length_size = 0  # 0: packets are Annex B
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.codec: str | None = None
        self.width = self.height = 0  # from the SPS; 0 while unknown
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
                    self.width, self.height = sps_dimensions(nal)
                except ValueError:
                    self.codec, self.width, self.height = None, 0, 0
            elif kind == NAL_PPS:
                self.pps = nal

    def convert(self, data: bytes, maybe_key: bool = True) -> tuple[bytes, bool]:
        """The packet as Annex B, and whether it is an IDR picture (where a decoder may start),
        with the last SPS and PPS in front of an IDR that lacks them. `maybe_key=False` (the
        demuxer did not flag it) lets an Annex B picture through unread: cameras send their
        parameter sets with their keyframes, and scanning every picture cost 1% of a core
        per 10 cameras' 25 fps."""
        if not maybe_key and not self.length_size:
            return data, False
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
