"""Which MQTT client ids belong to the services, so that no agency can ever hold one.

A broker keeps one session per client id, and a CONNECT with an id in use takes that
session over: the client holding it is disconnected and, with a clean start, its queued
messages are gone. Mosquitto does not tie a client id to an account, so an agency that
presented the ingest's id kicked the ingest off and the readings the broker had
acknowledged to other agencies meanwhile were lost.

The generated Mosquitto configuration (``broker_files``) therefore forces every agency's
client id to be its username (``use_username_as_clientid``) on the listeners agencies use,
and lets the services, which need ids of their own per worker (``--shard i/N``, one per API
node), in only on a listener whose password file holds service accounts alone. What is left
is a name clash: an agency *named* like a service's client id. Service client ids start
with one of :data:`SERVICE_PREFIXES` (the defaults ``ingest-<host>``, ``cameras-<host>``,
``ioc-api-<host>-<pid>``, and the compose file's workers do), and no agency may be given a
name that does.
"""

from __future__ import annotations

__all__ = ["SERVICE_PREFIXES", "reserved_for_services", "why_reserved"]

#: Client ids starting with these belong to services; agency names may not.
SERVICE_PREFIXES: tuple[str, ...] = ("ingest", "camera", "ioc-")


def reserved_for_services(name: str) -> bool:
    """Whether ``name`` lies in the services' client-id namespace."""
    return name.startswith(SERVICE_PREFIXES)


def why_reserved(name: str) -> str:
    """The one-line refusal for an agency named into the services' namespace."""
    return (f"agency id {name!r} is reserved: ids starting with "
            f"{', '.join(repr(p) for p in SERVICE_PREFIXES)} are the services' MQTT client ids "
            "(an agency's client id is its name)")
