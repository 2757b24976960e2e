"""An MQTT 5 and 3.1.1 broker in Python, for `ioc demo` and machines without Mosquitto.

Why our own: every IOC service speaks MQTT 5 (session expiry, Receive Maximum, retain
handling, reason codes, shared subscriptions), and no broker installable from PyPI does
all of that with password files and per-user ACLs (amqtt and hbmqtt speak 3.1.1 only).
It reads the files `ioc broker config` writes and keeps Mosquitto's rules where the
services depend on them; production runs Mosquitto or a broker cluster (README, "Scaling").

Modules: `codec` (wire format), `topics` (names, filters, matching), `access` (passwords
and ACL), `session` (per-client state and flow control), `broker` (routing, retained
messages, wills), `connection` (one client's protocol), `snapshot` (state across
restarts), `server` (listening, signals, keep-alives).
"""
