"""The one grammar of time buckets (`15m`, `1h`, `6h`, `1d`, `1w`, `1M`), for the series API,
the layouts' chart tiles and anything else that names a bucket: a layout cannot ask for a
bucket the API refuses, or the other way round."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_BUCKET = re.compile(r"(\d{1,4})(m|h|d|w|M)")
EXAMPLES = "5m, 15m, 1h, 6h, 1d, 1w or 1M"


class BucketError(ValueError):
    """A bucket that does not follow the grammar; the message shows it."""


@dataclass(frozen=True)
class Bucket:
    text: str
    count: int
    unit: str  # m minutes, h hours, d days, w weeks, M calendar months

    @property
    def approx(self) -> timedelta:
        return {
            "m": timedelta(minutes=self.count),
            "h": timedelta(hours=self.count),
            "d": timedelta(days=self.count),
            "w": timedelta(weeks=self.count),
            "M": timedelta(days=30 * self.count),
        }[self.unit]


def parse_bucket(text: str) -> Bucket:
    m = _BUCKET.fullmatch(text)
    if not m or int(m.group(1)) == 0:
        raise BucketError(f"bucket {text[:20]!r} must look like {EXAMPLES}")
    return Bucket(text, int(m.group(1)), m.group(2))
