"""The camera registry: which cameras exist, where they are, and how to reach them.

Cameras come from a TOML file (`[[camera]]` tables; `camera/examples/phu-ly.toml` is Phủ
Lý's ten) and, later, from the API. Credentials are kept apart from the URLs so that logs,
status messages and API answers show URLs without them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

StreamMode = Literal["sub-full", "main-keyframes"]


class RegistryError(ValueError):
    """The registry file is wrong; the message names the camera and the field."""


class Camera(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")
    name: str = Field(min_length=1, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    area: str | None = Field(None, pattern=r"^[0-9A-Za-z._-]{1,32}$")
    main_url: str
    sub_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tags: tuple[str, ...] = ()
    # which stream feeds the tiles: the sub-stream decoded fully (cheap at 640x360), or
    # the main stream decoded on keyframes only (~1 fps, for cameras without a sub-stream)
    tile_stream: Literal["auto", "sub", "main"] = "auto"

    @field_validator("main_url", "sub_url")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme == "file":
            # a local video file, looped at its own frame rate (demos, tests, recorded footage)
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError("a file URL needs an absolute path: file:///videos/camera-1.mp4")
            return v
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError("must be an rtsp:// URL with a host, or a file:/// URL of a video file")
        if parts.username or parts.password:
            raise ValueError("put credentials in username/password, not in the URL (they would show in logs)")
        return v

    @property
    def mode(self) -> StreamMode:
        if self.tile_stream == "main" or (self.tile_stream == "auto" and not self.sub_url):
            return "main-keyframes"
        if self.sub_url is None:
            raise RegistryError(f"camera {self.id}: tile_stream = 'sub' needs a sub_url")
        return "sub-full"

    @property
    def stream_url(self) -> str:
        """The URL the tiles come from, without credentials (safe to log)."""
        return self.sub_url if self.mode == "sub-full" and self.sub_url else self.main_url

    def open_url(self, stream: Literal["main", "sub"] | None = None) -> str:
        """The URL to open (the tiles' stream, or the one named), with credentials: never log it."""
        url = self.stream_url if stream is None else self.main_url if stream == "main" else self.sub_url
        if url is None:
            raise RegistryError(f"camera {self.id}: no {stream} stream")
        if not self.username or url.startswith("file:"):
            return url
        parts = urlsplit(url)
        secret = self.password.get_secret_value() if self.password else ""
        netloc = f"{quote(self.username, safe='')}:{quote(secret, safe='')}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def load_registry(path: Path) -> list[Camera]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"camera registry {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"camera registry {path}: not valid TOML: {exc}") from None
    cameras: list[Camera] = []
    for i, entry in enumerate(raw.get("camera", [])):
        try:
            cam = Camera(**entry)
            _ = cam.mode
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise RegistryError(f"camera registry {path}: camera #{i + 1} ({entry.get('id', '?')}): {field}: {err['msg']}") from None
        cameras.append(cam)
    ids = [c.id for c in cameras]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RegistryError(f"camera registry {path}: duplicate camera ids: {', '.join(dupes)}")
    return cameras

