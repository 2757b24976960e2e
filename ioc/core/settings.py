"""Settings for every `ioc` service, read once at start.

Values come from `IOC_*` environment variables and, optionally, a TOML file named by
`IOC_SETTINGS_FILE` (environment wins over the file). Validation happens here so that a
bad value stops the service at start with a message naming the setting, instead of
failing later in the middle of ingest.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it."""


class MqttTarget(BaseModel):
    """The broker address and credentials parsed from `IOC_MQTT_URL`."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"scheme must be mqtt:// or mqtts://, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("no host in the URL")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    return MqttTarget(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def parse_shard(text: str, name: str = "IOC_INGEST_SHARD") -> tuple[int, int]:
    """"i/N": this process takes share i of N (ingest agencies, cameras)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SettingsError(f"{name} must look like 0/2, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise SettingsError(f"{name}: need 0 <= i < N, got {text!r}")
    return i, n


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the optional settings file; keys are the setting names without `IOC_`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                self._data = tomllib.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise SettingsError(f"IOC_SETTINGS_FILE: no such file: {path}") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"IOC_SETTINGS_FILE: {path} is not valid TOML: {exc}") from None
            self._data = {k.lower(): v for k, v in self._data.items()}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every setting, with its default. Durations are in seconds unless the name says ms."""

    model_config = SettingsConfigDict(env_prefix="IOC_", extra="ignore", frozen=True)

    database_url: str | None = Field(None, description="postgresql://user:pass@host:5432/db")
    db_pool_min: int = Field(1, ge=1, le=100)
    db_pool_max: int = Field(8, ge=1, le=200)
    mqtt_url: str | None = Field(None, description="mqtt://user:pass@host:1883 or mqtts://...")
    timezone: str = "Asia/Ho_Chi_Minh"

    # ingest
    ingest_worker_id: str = Field(default_factory=lambda: f"ingest-{socket.gethostname()}")
    ingest_shard: str = Field("0/1", pattern=r"^\d+/\d+$", description="i/N: this worker takes agency shard i of N")
    ingest_share_group: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,64}$", description="use a shared subscription instead")
    ingest_max_payload_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    ingest_max_readings_per_message: int = Field(10_000, ge=1, le=1_000_000)
    ingest_future_skew_s: float = Field(300.0, ge=0, le=7 * 86400)
    ingest_batch_max_rows: int = Field(20_000, ge=1, le=500_000)
    ingest_writers: int = Field(2, ge=1, le=8, description="database transactions in flight at once")
    ingest_receive_maximum: int = Field(10_000, ge=10, le=65_535)
    ingest_max_buffered_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    ingest_session_expiry_s: int = Field(7 * 86400, ge=0)
    ingest_heartbeat_s: float = Field(5.0, gt=0, le=300)
    ingest_spool_dir: str = Field(
        "spool", min_length=1,
        description="where the ingest keeps, fsynced, what it acknowledged while the database is away "
                    "(a subdirectory per worker id; relative to the working directory)")
    ingest_spool_max_bytes: int = Field(
        4 * 1024 ** 3, ge=0,
        description="the spool grows no further (messages then wait unacknowledged in the broker); 0 turns it off")

    # cameras
    camera_registry: str | None = Field(None, description="TOML file of [[camera]] tables")
    camera_tile_fps: float = Field(2.0, gt=0, le=10)
    camera_hd_fps: float = Field(0.5, ge=0, le=5)
    camera_hd_always: bool = Field(False, description="HD tiles for every camera, not only those a wall shows large")
    camera_worker_id: str = Field(default_factory=lambda: f"cameras-{socket.gethostname()}")
    camera_reload_s: float = Field(15.0, gt=0, le=3600, description="how often cameras added through the API are picked up")
    camera_rtsp_reader: Literal["own", "ffmpeg"] = Field(
        "own", description="who reads rtsp:// cameras: our RTSP/RTP reader (a frame goes on at its last RTP "
                              "packet) or FFmpeg's (one frame interval later); files and other URLs: FFmpeg")
    camera_keyframe_max_s: float = Field(
        30.0, gt=0, le=3600,
        description="a camera sending no keyframe for longer says so in its status (screens joining cannot start its video)")

    # recording (the camera service writes, the API plays back and exports)
    recordings_dir: str = Field(
        "recordings", min_length=1,
        description="where the MP4 segments go, <dir>/<camera>/<YYYY-MM-DD>/... (relative to the working directory)")
    recording_segment_s: float = Field(4.0, ge=1, le=60, description="segment length, cut on the next keyframe")
    recording_retention_days: int = Field(30, ge=0, le=3650, description="0: no age limit (the quota still applies)")
    recording_quota_bytes: int = Field(0, ge=0, description="all cameras' segments together; 0: no quota")
    recording_clip_before_s: float = Field(10.0, ge=0, le=600, description="an event's clip starts this long before it")
    recording_clip_after_s: float = Field(20.0, ge=0, le=3600, description="and ends this long after it")
    recording_retention_every_s: float = Field(30.0, gt=0, le=3600, description="how often retention runs")
    recording_sub_stream: bool = Field(
        True, description="also record each recorded camera's sub-stream (small replay tiles play it)")
    recording_export_max_s: float = Field(3600.0, gt=0, le=86400, description="the longest span one export may cover")

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    jwt_secret: str | None = Field(None, description="at least 32 characters")
    jwt_ttl_s: int = Field(8 * 3600, ge=60, le=30 * 86400)
    metrics_token: str | None = None
    rollup_refresh_s: float = Field(10.0, gt=0, le=3600)

    # the wall hub (inside `ioc serve`; needs IOC_MQTT_URL)
    wall_port: int = Field(8081, ge=0, le=65535, description="websocket port of the wall hub; 0 turns the hub off")
    wall_public_url: str | None = Field(None, pattern=r"^wss?://", description="hub address pages use behind a proxy")
    wall_switch_delay_s: float = Field(1.5, ge=0, le=60)
    wall_max_clients: int = Field(5000, ge=1, le=100_000)
    wall_client_buffer_bytes: int = Field(512 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    wall_screen_token_days: int = Field(365, ge=1, le=3650)

    # the monthly report (made by `ioc serve` and `ioc report make`)
    report_font: str = Field(
        "", description="a TTF with Vietnamese letters for the PDF; empty: DejaVu Sans or Arial where the system has it")
    report_font_bold: str = Field("", description="its bold face; empty: the bold beside it, else the regular one")
    report_schedule: bool = Field(True, description="make last month's reports from the 1st of each month")
    report_hour: int = Field(6, ge=0, le=23, description="the local hour of the 1st from which they are made")
    report_check_s: float = Field(300.0, gt=0, le=86400, description="how often a node looks for a report to make")

    storage_mode: Literal["auto", "plain", "timescale"] = "auto"
    # storage (TimescaleDB only)
    retention_days: int = Field(0, ge=0, description="0 keeps readings forever")
    compress_after_days: int = Field(30, ge=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, v: str | None) -> str | None:
        if v is not None:
            parse_mqtt_url(v)
        return v

    @field_validator("jwt_secret")
    @classmethod
    def _check_secret(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 32:
            raise ValueError("must be at least 32 characters")
        return v

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from datetime import datetime

        try:
            zone = ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        offset = datetime.now(zone).utcoffset()
        if offset is not None and offset.total_seconds() % 3600:
            # daily roll-ups are built from UTC hours
            raise ValueError(f"{v} is not a whole number of hours from UTC; daily roll-ups need one")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file = os.environ.get("IOC_SETTINGS_FILE")
        return (init_settings, env_settings, _TomlFileSource(settings_cls, Path(file) if file else None))

    # -- accessors that turn "optional" into "required by this service" ----------------
    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError("IOC_DATABASE_URL is not set (e.g. postgresql://ioc@127.0.0.1:5432/ioc)")
        return self.database_url

    def require_mqtt(self) -> MqttTarget:
        if not self.mqtt_url:
            raise SettingsError("IOC_MQTT_URL is not set (e.g. mqtt://ioc-ingest:secret@127.0.0.1:1883)")
        return parse_mqtt_url(self.mqtt_url)

    def recordings_root(self) -> Path:
        """The recordings directory, created and proven writable (SettingsError if it is not)."""
        from ioc.core.recordings import check_dir

        root = Path(self.recordings_dir).absolute()
        try:
            check_dir(root)
        except OSError as exc:
            raise SettingsError(f"IOC_RECORDINGS_DIR: {root} is not a writable directory: {exc.strerror or exc}") from None
        return root

    def require_jwt_secret(self) -> str:
        if not self.jwt_secret:
            raise SettingsError("IOC_JWT_SECRET is not set (at least 32 random characters)")
        return self.jwt_secret


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's report into one line per bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "IOC_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
