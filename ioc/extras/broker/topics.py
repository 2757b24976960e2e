"""Topic names and filters: validity, matching, shared-subscription names.

Kept apart from the broker so the rules (`+` and `#` only as whole levels, `$` topics not
matched by a leading wildcard, `$share/<group>/<filter>`) are stated once and tested
directly; the ACL uses the same matcher for its own filters.
"""

from __future__ import annotations

SHARE_PREFIX = "$share/"
MAX_TOPIC_BYTES = 65_535


def valid_topic_name(topic: str) -> bool:
    """A name a PUBLISH may carry: non-empty, no wildcards."""
    return bool(topic) and "+" not in topic and "#" not in topic and len(topic.encode()) <= MAX_TOPIC_BYTES


def valid_filter(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """("group", "filter") for `$share/group/filter`, (None, filter) otherwise.

    Raises ValueError for a malformed shared name (no filter, or a group name with
    wildcards), which the broker answers with "topic filter invalid".
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not sep or not group or not rest or "+" in group or "#" in group:
        raise ValueError(f"malformed shared subscription {topic_filter!r}")
    return group, rest


def matches(topic_filter: str, topic: str) -> bool:
    """Whether a topic name falls under a filter."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def overlaps(a: str, b: str) -> bool:
    """Whether some topic name matches both filters (used to refuse a SUBSCRIBE no
    read rule could ever satisfy)."""
    if a.startswith("$") != b.startswith("$"):
        return False  # a '$' topic is reached only by a filter that names its first level
    return _levels_overlap(a.split("/"), b.split("/"))


def _levels_overlap(a: list[str], b: list[str]) -> bool:
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != "+" and y != "+" and x != y:
            return False
    return True
