"""Simulated cameras: video files looped through the camera service's own capture path.

By default the demo draws its own clips once, into `<data dir>/videos`: a street seen from a
pole, with motorbikes, cars and a bus moving along their lanes, a few pedestrians, the
camera's name burnt in. Each mover crosses a whole number of times per clip, so the loop
has no visible seam, and there is always motion, so the picture-health checks (frozen,
black, blurred, turned) see a healthy camera. `--video FILE` (repeatable) plays the user's
own files instead. Either way the registry lists them as `file:///...` sources and
`ioc cameras` reads them exactly as it reads RTSP, paced at the file's rate. The clips are
H.264 (PyAV's libx264), so the wall plays them live like real cameras.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

WIDTH, HEIGHT, FPS, SECONDS = 960, 540, 15, 20
CLIP_VERSION = 4  # bump when the drawing or the encoding changes, so old clips are redrawn

# Phủ Lý's camera sites (the wall shows ten today)
SITES = [
    ("Nút giao Lê Hoàn - Trần Phú", 20.5437, 105.9137, "13285"),
    ("Quảng trường trung tâm tỉnh", 20.5415, 105.9186, "13291"),
    ("Cầu Hồng Phú", 20.5468, 105.9224, "13285"),
    ("Cầu Châu Giang", 20.5489, 105.9118, "13285"),
    ("Bến xe khách Phủ Lý", 20.5302, 105.9151, "13285"),
    ("Bệnh viện Đa khoa tỉnh - đường Lê Hoàn", 20.5381, 105.9102, "13285"),
    ("Quốc lộ 1A - nút giao Nam Cao", 20.5221, 105.9203, "13285"),
    ("Nút giao Đinh Tiên Hoàng - Trần Hưng Đạo", 20.5402, 105.9160, "13285"),
    ("Khu đô thị Bắc Châu Giang", 20.5561, 105.9155, "13285"),
    ("Trung tâm Phục vụ hành chính công tỉnh", 20.5423, 105.9171, "13285"),
]


def ascii_name(text: str) -> str:
    """OpenCV's fonts have no Vietnamese letters: drop the marks, keep the words."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class DemoCamera:
    id: str
    name: str
    lat: float
    lon: float
    area: str
    video: Path


def draw_clip(path: Path, index: int, title: str) -> None:
    """Write one seamless clip to `path` (via a temporary file, so a half-written one never shows)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1000 + index)
    frames = FPS * SECONDS
    background = _background(rng, index)
    movers = _movers(rng)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    writer = H264Writer(tmp)
    caption = f"CAM {index + 1:02d}  {ascii_name(title)}"
    caption_w = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.65, 1)[0][0]
    try:
        for f in range(frames):
            img = background.copy()
            phase = f / frames
            for m in movers:
                m.draw(img, phase)
            # the camera's own caption bottom left and mark top right: the wall draws the tile's
            # title top left and the picture's age bottom right
            cv2.rectangle(img, (0, HEIGHT - 34), (caption_w + 20, HEIGHT), (20, 20, 20), -1)
            cv2.putText(img, caption, (10, HEIGHT - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.65,
                        (255, 255, 255), 1, cv2.LINE_AA)
            cv2.putText(img, "IOC HA NAM - DEMO", (WIDTH - 215, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        (0, 210, 255), 1, cv2.LINE_AA)
            writer.write(img)
    finally:
        writer.close()
    os.replace(tmp, path)


class H264Writer:
    """H.264 in MP4 through PyAV's libx264, as a camera would send it: a keyframe every second
    and no B-frames, so the wall plays the demo's cameras live (WebCodecs decodes H.264; the
    MPEG-4 Part 2 that OpenCV's writer makes is not playable in browsers)."""

    def __init__(self, path: Path) -> None:
        import av

        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=FPS)
        self.stream.width, self.stream.height, self.stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        ctx = self.stream.codec_context
        ctx.gop_size = FPS
        ctx.max_b_frames = 0
        ctx.options = {"preset": "veryfast", "profile": "main", "keyint_min": str(FPS), "sc_threshold": "0"}

    def write(self, bgr: object) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")  # type: ignore[arg-type]
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def _background(rng: object, index: int) -> object:
    import cv2
    import numpy as np

    r = rng  # numpy Generator
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    sky = (200 - 10 * (index % 3), 170, 120)
    img[:] = sky
    # buildings along the far side of the street
    x = 0
    while x < WIDTH:
        w = int(r.integers(60, 140))
        h = int(r.integers(90, 220))
        colour = tuple(int(c) for c in r.integers(90, 210, 3))
        cv2.rectangle(img, (x, 230 - h), (x + w, 230), colour, -1)
        for wy in range(230 - h + 12, 225, 22):
            for wx in range(x + 8, x + w - 12, 18):
                lit = r.random() < 0.5
                cv2.rectangle(img, (wx, wy), (wx + 9, wy + 12), (150, 220, 240) if lit else (60, 60, 70), -1)
        x += w + int(r.integers(2, 12))
    # pavement, road, lane marks, kerb, trees
    cv2.rectangle(img, (0, 230), (WIDTH, 260), (150, 150, 155), -1)
    cv2.rectangle(img, (0, 260), (WIDTH, 500), (70, 72, 75), -1)
    cv2.rectangle(img, (0, 500), (WIDTH, HEIGHT), (140, 145, 150), -1)
    for y in (320, 380, 440):
        for x0 in range(0, WIDTH, 60):
            cv2.line(img, (x0, y), (x0 + 30, y), (230, 230, 230), 2)
    cv2.line(img, (0, 380), (WIDTH, 380), (0, 200, 255), 3)
    for x0 in range(40, WIDTH, 170):
        cv2.rectangle(img, (x0 + 8, 505), (x0 + 14, 540), (40, 70, 100), -1)
        cv2.circle(img, (x0 + 11, 500), 24, (40, 120 + (x0 % 50), 40), -1)
    noise = r.integers(0, 12, img.shape, dtype=np.uint8)
    return cv2.add(img, noise)


@dataclass(frozen=True)
class _Mover:
    lane_y: int
    kind: str  # car | bike | bus | walker
    colour: tuple[int, int, int]
    start: float  # 0..1 of the way along
    laps: int  # crossings per clip: a whole number, so the loop is seamless
    direction: int  # +1 left to right, -1 right to left

    def draw(self, img: object, phase: float) -> None:
        import cv2

        span = WIDTH + 200
        pos = (self.start + self.laps * phase) % 1.0
        x = int(-100 + pos * span) if self.direction > 0 else int(WIDTH + 100 - pos * span)
        y = self.lane_y
        if self.kind == "car":
            cv2.rectangle(img, (x - 45, y - 24), (x + 45, y + 4), self.colour, -1)
            cv2.rectangle(img, (x - 25, y - 40), (x + 25, y - 22), self.colour, -1)
            cv2.rectangle(img, (x - 20, y - 36), (x + 20, y - 25), (200, 220, 230), -1)
            for wx in (x - 28, x + 28):
                cv2.circle(img, (wx, y + 5), 9, (20, 20, 20), -1)
        elif self.kind == "bus":
            cv2.rectangle(img, (x - 90, y - 60), (x + 90, y + 4), self.colour, -1)
            for wx in range(x - 80, x + 80, 28):
                cv2.rectangle(img, (wx, y - 52), (wx + 20, y - 32), (200, 220, 230), -1)
            for wx in (x - 60, x + 60):
                cv2.circle(img, (wx, y + 5), 11, (20, 20, 20), -1)
        elif self.kind == "bike":
            cv2.circle(img, (x - 12, y), 7, (20, 20, 20), -1)
            cv2.circle(img, (x + 12, y), 7, (20, 20, 20), -1)
            cv2.rectangle(img, (x - 12, y - 12), (x + 12, y - 4), self.colour, -1)
            cv2.rectangle(img, (x - 4, y - 32), (x + 4, y - 12), (60, 60, 160), -1)
            cv2.circle(img, (x, y - 38), 7, self.colour, -1)  # helmet
        else:
            step = int(6 * abs(((self.laps * phase * 40) % 2) - 1))
            cv2.line(img, (x, y - 10), (x - 5 + step, y + 8), (50, 50, 50), 3)
            cv2.line(img, (x, y - 10), (x + 5 - step, y + 8), (50, 50, 50), 3)
            cv2.rectangle(img, (x - 5, y - 30), (x + 5, y - 10), self.colour, -1)
            cv2.circle(img, (x, y - 36), 6, (120, 160, 200), -1)


def _movers(rng: object) -> list[_Mover]:
    r = rng
    out: list[_Mover] = []

    def colour() -> tuple[int, int, int]:
        return tuple(int(c) for c in r.integers(30, 240, 3))  # type: ignore[return-value]

    lanes = [(300, -1), (350, -1), (410, 1), (470, 1)]
    for lane_y, direction in lanes:
        for _ in range(int(r.integers(3, 6))):
            out.append(_Mover(lane_y + int(r.integers(-6, 6)), "bike", colour(), float(r.random()),
                              int(r.integers(1, 4)), direction))
        for _ in range(int(r.integers(1, 3))):
            out.append(_Mover(lane_y, "car", colour(), float(r.random()), int(r.integers(1, 3)), direction))
    out.append(_Mover(350, "bus", (40, 140, 30), float(r.random()), 1, -1))
    for _ in range(3):
        out.append(_Mover(int(r.integers(250, 258)), "walker", colour(), float(r.random()), 1,
                          1 if r.random() < 0.5 else -1))
        out.append(_Mover(int(r.integers(520, 530)), "walker", colour(), float(r.random()), 1,
                          1 if r.random() < 0.5 else -1))
    return sorted(out, key=lambda m: m.lane_y)


def prepare(data_dir: Path, count: int, videos: list[Path]) -> list[DemoCamera]:
    """The cameras to simulate: the user's files, or `count` generated clips (drawn on first use)."""
    out: list[DemoCamera] = []
    if videos:
        for i, v in enumerate(videos):
            v = v.resolve()
            if not v.is_file():
                raise FileNotFoundError(f"--video {v}: no such file")
            name, lat, lon, area = SITES[i % len(SITES)]
            out.append(DemoCamera(f"pl-{i + 1:02d}", f"{name} ({v.name})", lat, lon, area, v))
        return out
    folder = data_dir / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name, lat, lon, area = SITES[i % len(SITES)]
        path = folder / f"demo-{i + 1:02d}-v{CLIP_VERSION}.mp4"
        if not path.exists():
            draw_clip(path, i, name)
        out.append(DemoCamera(f"pl-{i + 1:02d}", name, lat, lon, area, path))
    return out


def registry_toml(cameras: list[DemoCamera]) -> str:
    """The `[[camera]]` registry `ioc cameras` reads."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    parts = ["# Written by `ioc demo` on every start; edit the demo's --video/--cameras options instead.\n"]
    for c in cameras:
        url = c.video.as_uri()
        parts.append(
            f"[[camera]]\nid = {q(c.id)}\nname = {q(c.name)}\nlat = {c.lat}\nlon = {c.lon}\narea = {q(c.area)}\n"
            f"main_url = {q(url)}\nsub_url = {q(url)}\ntags = [\"demo\"]\n"
        )
    return "\n".join(parts)
