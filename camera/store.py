"""Cameras that admins add through the API, kept in PostgreSQL for the camera service.

The registry file stays the way to declare a province's cameras in bulk; the API is for
the one added on a Tuesday afternoon. Both end up as `Camera` objects, validated by the
same model, and a file camera always wins over an API one with the same id.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError

from camera.registry import Camera, RegistryError
from ioc.accounts import audit


class CameraConflict(ValueError):
    """The change cannot be made (exists already, or belongs to the registry file)."""


def definition(cam: Camera) -> str:
    doc: dict[str, Any] = cam.model_dump(mode="json", exclude={"password"})
    if cam.password is not None:
        doc["password"] = cam.password.get_secret_value()
    return orjson.dumps(doc).decode()


def parse_camera(doc: dict[str, Any]) -> Camera:
    try:
        cam = Camera(**doc)
        _ = cam.mode
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RegistryError(f"{'.'.join(str(p) for p in err['loc']) or 'camera'}: {err['msg']}") from None
    return cam


async def api_cameras(conn: asyncpg.Connection) -> list[Camera]:
    rows = await conn.fetch("SELECT definition FROM cameras WHERE source = 'api' ORDER BY id")
    return [parse_camera(orjson.loads(r["definition"])) for r in rows]


async def put_camera(conn: asyncpg.Connection, cam: Camera, actor: str, *, create: bool) -> None:
    async with conn.transaction():
        source = await conn.fetchval("SELECT source FROM cameras WHERE id = $1 FOR UPDATE", cam.id)
        if source == "file":
            raise CameraConflict(f"camera {cam.id!r} comes from the registry file: change it there")
        if create and source is not None:
            raise CameraConflict(f"camera {cam.id!r} exists already")
        if not create and source is None:
            raise LookupError(cam.id)
        await conn.execute(
            """INSERT INTO cameras (id, name, lat, lon, area, stream_url, mode, tags, source, definition)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'api', $9::jsonb)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
                   area = EXCLUDED.area, stream_url = EXCLUDED.stream_url, mode = EXCLUDED.mode,
                   tags = EXCLUDED.tags, definition = EXCLUDED.definition, updated_at = now()""",
            cam.id, cam.name, cam.lat, cam.lon, cam.area, cam.stream_url, cam.mode, list(cam.tags), definition(cam),
        )
        await audit(conn, actor, "camera.added" if create else "camera.changed", cam.id,
                    {"stream_url": cam.stream_url, "mode": cam.mode})


async def delete_camera(conn: asyncpg.Connection, camera_id: str, actor: str) -> None:
    async with conn.transaction():
        source = await conn.fetchval("SELECT source FROM cameras WHERE id = $1 FOR UPDATE", camera_id)
        if source is None:
            raise LookupError(camera_id)
        if source == "file":
            raise CameraConflict(f"camera {camera_id!r} comes from the registry file: remove it there")
        await conn.execute("DELETE FROM cameras WHERE id = $1", camera_id)
        await audit(conn, actor, "camera.removed", camera_id, {})
