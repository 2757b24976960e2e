"""Wall layouts: tiles on a grid over the 3 x 3 screens, and which tiles each screen draws.

A layout is data an operator edits (TOML presets in `dashboards/layouts/`, saved copies in
PostgreSQL), so every rule a screen relies on (the grid divides into nine screens, tiles
stay on the wall, ids are unique, a tile names what it shows) is checked here, once, with a
message that names the tile.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ioc.core.buckets import parse_bucket

TileKind = Literal["camera", "kpi", "chart", "camera_health", "alerts", "clock", "text", "ranking", "map"]
SCREENS = 9
_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_KPI = r"^[a-z][a-z0-9_]{0,31}\.[a-z0-9_]{1,64}$"


class LayoutError(ValueError):
    """A layout that a screen could not draw; the message names the tile."""


class Tile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    kind: TileKind
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    w: int = Field(ge=1)
    h: int = Field(ge=1)
    title_vi: str = Field("", max_length=200)
    title_en: str = Field("", max_length=200)
    camera: str | None = Field(None, pattern=_ID)
    kpi: str | None = Field(None, pattern=_KPI)
    area: str | None = Field(None, pattern=r"^[0-9]{1,10}$")
    bucket: str = "1d"
    hours: int = Field(24 * 30, ge=1, le=24 * 366 * 5)
    text_vi: str = Field("", max_length=2000)
    text_en: str = Field("", max_length=2000)
    tz: str = "Asia/Ho_Chi_Minh"
    # ranking: its KPI by the units at `level` below `area` (the API's default level when
    # None) over `period` (local: this month or this year so far), the `top` best shown;
    # map: the units at `level` below `area`, coloured by the KPI over `period`
    level: Literal["province", "district", "commune", "zone"] | None = None
    period: Literal["month", "last_month", "year"] = "month"
    top: int = Field(10, ge=1, le=100)

    @model_validator(mode="after")
    def _needs(self) -> Tile:
        if self.kind == "camera" and self.camera is None:
            raise ValueError("a camera tile needs `camera`")
        if self.kind in ("kpi", "chart", "ranking", "map") and (self.kpi is None or self.area is None):
            raise ValueError(f"a {self.kind} tile needs `kpi` and `area`")
        parse_bucket(self.bucket)  # BucketError is a ValueError: pydantic reports it on the tile
        return self

    def touches(self, region: Region) -> bool:
        return (self.x < region.x + region.w and region.x < self.x + self.w
                and self.y < region.y + region.h and region.y < self.y + self.h)

    def pixel_width(self, layout: Layout) -> int:
        return self.w * 5760 // layout.cols


class Region(BaseModel):
    x: int
    y: int
    w: int
    h: int


class Layout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    name_vi: str = Field(min_length=1, max_length=200)
    name_en: str = Field("", max_length=200)
    cols: int = Field(12, ge=3, le=96)
    rows: int = Field(12, ge=3, le=96)
    tiles: list[Tile] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _fits(self) -> Layout:
        if self.cols % 3 or self.rows % 3:
            raise ValueError(f"cols and rows must divide by 3 (three screens each way), got {self.cols}x{self.rows}")
        seen: set[str] = set()
        for t in self.tiles:
            if t.id in seen:
                raise ValueError(f"tile id {t.id!r} is used twice")
            seen.add(t.id)
            if t.x + t.w > self.cols or t.y + t.h > self.rows:
                raise ValueError(f"tile {t.id!r} ({t.x},{t.y} {t.w}x{t.h}) runs off the {self.cols}x{self.rows} wall")
        return self

    def region(self, screen: int) -> Region:
        """The cells screen 1-9 covers, counting row by row from the top left."""
        if not 1 <= screen <= SCREENS:
            raise LayoutError(f"screen must be 1-{SCREENS}, got {screen}")
        cw, ch = self.cols // 3, self.rows // 3
        return Region(x=(screen - 1) % 3 * cw, y=(screen - 1) // 3 * ch, w=cw, h=ch)

    def tiles_for(self, screen: int | None) -> list[Tile]:
        if screen is None:
            return list(self.tiles)
        region = self.region(screen)
        return [t for t in self.tiles if t.touches(region)]

    def tile(self, tile_id: str) -> Tile | None:
        return next((t for t in self.tiles if t.id == tile_id), None)

    def unknown_cameras(self, known: set[str] | dict[str, str]) -> list[Tile]:
        """Camera tiles whose camera the registry (`known`) does not have."""
        return [t for t in self.tiles if t.kind == "camera" and t.camera and t.camera not in known]

    def with_pins(self, pins: dict[str, str]) -> Layout:
        """The layout with operators' pinned cameras in place of what its tiles showed."""
        if not pins:
            return self
        tiles = []
        for t in self.tiles:
            cam = pins.get(t.id)
            tiles.append(t if cam is None else t.model_copy(update={"kind": "camera", "camera": cam}))
        return self.model_copy(update={"tiles": tiles})


def unknown_camera_note(layout: Layout, tile: Tile) -> str:
    """What `ioc serve` and `ioc layouts check` say of a tile whose camera the registry lacks."""
    return f"layout {layout.id!r}, tile {tile.id!r}: camera {tile.camera!r} is not in the camera registry"


def parse_layout(doc: dict[str, Any], *, where: str = "layout") -> Layout:
    try:
        return Layout.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise LayoutError(f"{where}: {loc or 'layout'}: {first['msg']}") from None


def load_presets(folder: Path) -> dict[str, Layout]:
    """Every `*.toml` in the folder; one bad file stops the start with its name in the message."""
    out: dict[str, Layout] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise LayoutError(f"{path}: {exc}") from None
        layout = parse_layout(doc, where=str(path))
        if layout.id in out:
            raise LayoutError(f"{path}: layout id {layout.id!r} is used by another preset")
        out[layout.id] = layout
    return out
