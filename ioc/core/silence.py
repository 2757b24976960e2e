"""When an agency counts as silent: the one rule behind the wall's "agency silent" alert and
the monthly report's late and missing reports.

An agency owes a reading every `interval` of its KPIs (the catalogue's `interval`). It is
silent once the time since its last reading passes that interval plus a grace of half of
it (at least a minute): a daily report sent at 09:00 instead of 08:00 is not an alarm, one
missing a whole day is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MIN_GRACE = timedelta(seconds=60)


def silence_threshold(every: timedelta) -> timedelta:
    """How long after its last reading an agency owing one every `every` counts as silent."""
    return every + max(every * 0.5, MIN_GRACE)


def is_silent(last: datetime, now: datetime, every: timedelta) -> bool:
    return now - last > silence_threshold(every)
