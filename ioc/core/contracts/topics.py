"""Every MQTT topic the IOC uses, in one place.

Producers build topics with the functions here, consumers parse them with the `parse_*`
functions, the broker ACL is rendered from the filters: so a topic can only change here.
Agency ids, camera ids and node ids are single topic levels (validated where they are
created: no `/`, `+` or `#`).
"""

from __future__ import annotations

from typing import Literal

PREFIX = "ioc/v1"

# -- agencies -> ingest -> agencies ---------------------------------------------------------
KPI_PREFIX = f"{PREFIX}/kpi/"
KPI_ALL = f"{PREFIX}/kpi/+"
ACK_ALL = f"{PREFIX}/ack/+"
#: ThingsBoard's device API topic, for gateways configured for it (ARCHITECTURE.md)
THINGSBOARD_TELEMETRY = "v1/devices/me/telemetry"


def kpi(agency: str) -> str:
    """Where an agency publishes its readings; the agency is the MQTT username."""
    return f"{KPI_PREFIX}{agency}"


def agency_of_kpi_topic(topic: str) -> str | None:
    """The agency a KPI topic names, or None when the topic is not one (or has extra levels)."""
    if not topic.startswith(KPI_PREFIX):
        return None
    rest = topic[len(KPI_PREFIX):]
    return rest if rest and "/" not in rest else None


def ack(agency: str) -> str:
    """Where the ingest tells an agency what it refused."""
    return f"{PREFIX}/ack/{agency}"


RESULT_PREFIX = f"{PREFIX}/result/"
RESULT_ALL = f"{PREFIX}/result/#"


def result(agency: str, request: str) -> str:
    """Where the ingest answers one message that asked for per-reading results (MQTT 5
    Response Topic): the API's HTTP submissions, or an agency's own MQTT 5 client."""
    return f"{RESULT_PREFIX}{agency}/{request}"


def results_of(agency: str) -> str:
    """The filter of every answer to one agency's requests."""
    return f"{RESULT_PREFIX}{agency}/+"


def parse_result(topic: str) -> tuple[str, str] | None:
    """(agency, request) of a result topic, else None (also for extra levels or wildcards)."""
    if not topic.startswith(RESULT_PREFIX):
        return None
    parts = topic[len(RESULT_PREFIX):].split("/")
    if len(parts) != 2 or not all(parts) or any(c in topic for c in "+#"):
        return None
    return parts[0], parts[1]


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription (`$share/<group>/<filter>`)."""
    return f"$share/{group}/{topic_filter}"


# -- live state for the walls (retained) -----------------------------------------------------
LIVE_PREFIX = f"{PREFIX}/live/"
LIVE_ALL = f"{PREFIX}/live/#"
LIVE_KPI_ALL = f"{PREFIX}/live/kpi/#"
LIVE_CAMERA_ALL = f"{PREFIX}/live/camera/#"

CameraChannel = Literal["tile", "tile/hd", "status", "event", "video/main", "video/sub"]
CAMERA_CHANNELS: tuple[CameraChannel, ...] = ("tile", "tile/hd", "status", "event", "video/main", "video/sub")


def live_kpi(kpi_id: str, area: str) -> str:
    return f"{LIVE_PREFIX}kpi/{kpi_id}/{area}"


def live_camera(camera: str, channel: CameraChannel) -> str:
    return f"{LIVE_PREFIX}camera/{camera}/{channel}"


def parse_live_kpi(topic: str) -> tuple[str, str] | None:
    """(kpi, area) of a live KPI topic, else None."""
    parts = topic.split("/")
    if len(parts) == 6 and topic.startswith(LIVE_PREFIX + "kpi/"):
        return parts[4], parts[5]
    return None


def parse_live_camera(topic: str) -> tuple[str, str] | None:
    """(camera, channel) of a live camera topic, else None; the channel may be one this
    version does not know (a newer camera service), which the caller ignores."""
    if not topic.startswith(LIVE_PREFIX + "camera/"):
        return None
    parts = topic.split("/", 5)
    if len(parts) < 6 or not parts[4]:
        return None
    return parts[4], parts[5]


# -- commands to the camera service -----------------------------------------------------------
CMD_ALL = f"{PREFIX}/cmd/#"
CMD_CAMERA_ALL = f"{PREFIX}/cmd/camera/#"
CAMERA_REFERENCE_ALL = f"{PREFIX}/cmd/camera/+/reference"


def camera_reference(camera: str) -> str:
    """An operator accepts a camera's current view as its reference (payload: who)."""
    return f"{PREFIX}/cmd/camera/{camera}/reference"


def parse_camera_reference(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 6 and topic.startswith(f"{PREFIX}/cmd/camera/") and parts[5] == "reference" and parts[4]:
        return parts[4]
    return None


# -- services' presence (retained, with wills) ------------------------------------------------
STATUS_ALL = f"{PREFIX}/status/#"
STATUS_INGEST_ALL = f"{PREFIX}/status/ingest/#"
STATUS_CAMERA_ALL = f"{PREFIX}/status/camera/#"
#: what the compose health check of the broker reads (nothing publishes it: a timeout is health)
STATUS_HEALTH = f"{PREFIX}/status/health"


def ingest_presence(worker: str) -> str:
    return f"{PREFIX}/status/ingest/{worker}"


def camera_presence(worker: str) -> str:
    return f"{PREFIX}/status/camera/{worker}"


# -- the walls' shared state between API nodes (retained) -------------------------------------
WALL_ALL = f"{PREFIX}/wall/#"
WALL_STATE = f"{PREFIX}/wall/state"
WALL_ALERTS = f"{PREFIX}/wall/alerts"
WALL_DEMAND_PREFIX = f"{PREFIX}/wall/demand/"
WALL_DEMAND_ALL = f"{PREFIX}/wall/demand/+"
WALL_DEMAND_TREE = f"{PREFIX}/wall/demand/#"


def wall_demand(node: str) -> str:
    """Which cameras one API node's screens show large (HD tiles)."""
    return f"{WALL_DEMAND_PREFIX}{node}"


def parse_wall_demand(topic: str) -> str | None:
    """The node a demand topic names, else None."""
    if topic.startswith(WALL_DEMAND_PREFIX):
        node = topic[len(WALL_DEMAND_PREFIX):]
        return node if node and "/" not in node else None
    return None
