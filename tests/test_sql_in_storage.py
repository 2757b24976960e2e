"""SQL lives in the core's storage package: services and the core call named query functions.

A string in code (not a docstring or comment) that reads like SQL outside
`ioc/core/storage/` fails this test, so a route handler, a CLI command or a service cannot
grow its own query again: it asks storage for a named, typed function instead, and each
table's queries (and the audit log's single write) stay in one place.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.code_strings import code_strings

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["ioc", "ingest", "camera"]
STORAGE = "ioc/core/storage/"
# Each exemption says why it may keep SQL outside storage.
EXEMPT = {
    "ioc/extras/": "the extras (embedded broker, demo) set up their own throwaway databases",
}
SQL_TEXT = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ (\w+ )?SET|DELETE FROM|CREATE |ALTER |COPY )\b")


def sql_literals_in_python(path: Path, root: Path = REPO) -> list[str]:
    """Where a string in code (f-string parts included, docstrings not) reads like SQL."""
    return [f"{path.relative_to(root)}:{line}: {value.strip()[:70]!r}"
            for line, value in code_strings(path) if SQL_TEXT.search(value)]


def _exempt(rel: str) -> bool:
    return rel.startswith(STORAGE) or any(rel == e or (e.endswith("/") and rel.startswith(e)) for e in EXEMPT)


def test_no_sql_outside_storage() -> None:
    offenders: list[str] = []
    for top in SHIPPED:
        for path in sorted((REPO / top).rglob("*.py")):
            if "__pycache__" not in path.parts and not _exempt(path.relative_to(REPO).as_posix()):
                offenders += sql_literals_in_python(path)
    assert not offenders, "SQL outside ioc/core/storage (add a named query function there):\n" + "\n".join(offenders)


def test_the_sql_check_finds_a_query(tmp_path: Path) -> None:
    """The check itself: SQL in a constant or an f-string is found; a docstring or prose is not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""SELECT in a docstring is prose."""\n'
        'Q = "SELECT 1"\n'
        'def f(t):\n'
        '    """Says UPDATE x SET y."""\n'
        '    return f"DELETE FROM {t} WHERE true"\n'
        'W = "select the layout to show"\n'
        'U = "UPDATE alerts a SET ended_at = now()"\n'
    )
    found = sorted(sql_literals_in_python(bad, tmp_path))
    assert [f.split(":")[1] for f in found] == ["2", "5", "7"]


def test_the_audit_log_is_written_one_way() -> None:
    """Only `ioc.core.storage.audit.record` inserts into the audit log."""
    writers = [p.relative_to(REPO).as_posix() for top in SHIPPED for p in (REPO / top).rglob("*.py")
               if "INSERT INTO audit_log" in p.read_text(encoding="utf-8")]
    assert writers == ["ioc/core/storage/audit.py"]
