"""Which broker the service tests run on: Mosquitto (default) or the embedded one.

`IOC_TEST_BROKER=embedded` runs the same tests of the ingest, the wall and the cameras on
`ioc broker run`, the broker `ioc demo` starts where Mosquitto is not installed; `.ci/run`
does both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ioc.core.mqtt.broker_files import BrokerAccount
from tests.rigs.embedded_broker import EmbeddedBrokerRig
from tests.rigs.mosquitto import MosquittoRig

BrokerRig = MosquittoRig | EmbeddedBrokerRig
BROKER = os.environ.get("IOC_TEST_BROKER", "mosquitto")
if BROKER not in ("mosquitto", "embedded"):
    raise RuntimeError(f"IOC_TEST_BROKER must be mosquitto or embedded, not {BROKER!r}")


def make_broker_rig(directory: Path, accounts: Iterable[BrokerAccount], **options: Any) -> BrokerRig:
    if BROKER == "embedded":
        return EmbeddedBrokerRig(directory, accounts, **options)
    return MosquittoRig(directory, accounts, **options)
