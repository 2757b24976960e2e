"""Every word the pages show exists in Vietnamese and in English (dashboards/static/js/i18n.js):
the same keys, the same placeholders, and every key a page asks for is there in both."""

from __future__ import annotations

import re
from pathlib import Path

from ioc.serve.wall.tiledata import PROBLEMS, UNKNOWN

STATIC = Path(__file__).resolve().parent.parent / "dashboards" / "static"
I18N = (STATIC / "js" / "i18n.js").read_text(encoding="utf-8")


def table(name: str) -> dict[str, str]:
    body = re.search(rf"^const {name} = \{{\n(.*?)^\}};", I18N, re.S | re.M)
    assert body, f"no table {name} in i18n.js"
    rows = re.findall(r'^\s*"([^"]+)":\s*"((?:[^"\\]|\\.)*)",?\s*$', body.group(1), re.M)
    lines = [ln for ln in body.group(1).splitlines() if ln.strip() and not ln.strip().startswith("//")]
    assert len(rows) == len(lines), "a line of the table this test cannot read"
    return dict(rows)


VI, EN = table("VI"), table("EN")


def _code(js: Path) -> str:
    """A script without its comments (which quote keys as examples)."""
    text = re.sub(r"/\*.*?\*/", "", js.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"(?m)^\s*//.*$", "", text)


def used_keys() -> set[str]:
    """Keys the pages name literally: t(lang, "key") and showFatal("key") in the scripts,
    data-i18n="key" in the HTML and in the scripts' templates."""
    keys: set[str] = set()
    for js in (STATIC / "js").glob("*.js"):
        code = _code(js)
        keys |= set(re.findall(r'\bt\([^,()]+(?:\(\))?,\s*"([^"]+)"', code))
        keys |= set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', code))
        keys |= set(re.findall(r'"(err\.[a-z_]+)"', code))
    for page in STATIC.glob("*.html"):
        keys |= set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', page.read_text(encoding="utf-8")))
    return keys


def test_both_languages_have_every_key_with_the_same_placeholders() -> None:
    assert VI.keys() == EN.keys(), {"only vi": sorted(VI.keys() - EN.keys()), "only en": sorted(EN.keys() - VI.keys())}
    for key in VI:
        assert VI[key].strip() and EN[key].strip(), key
        assert set(re.findall(r"\{\w+\}", VI[key])) == set(re.findall(r"\{\w+\}", EN[key])), key


def test_every_key_a_page_asks_for_is_in_both_tables() -> None:
    used = used_keys()
    assert len(used) > 30, sorted(used)  # the scan finds the pages' keys at all
    # keys built at run time: a camera's state or fault, an alert's severity
    used |= {f"cam.{p}" for p in (*PROBLEMS, UNKNOWN, "stale", "starting", "no_picture", "unhealthy")}
    used |= {f"sev.{s}" for s in ("critical", "warning", "info")}
    used |= {f"kpi.trend_{d}" for d in ("up", "down", "flat")} | {"kpi.judge_good", "kpi.judge_bad"}
    used |= {"kpi.better_higher", "kpi.better_lower"}
    missing = sorted(k for k in used if k not in VI or k not in EN)
    assert not missing, missing


def test_the_vietnamese_table_speaks_vietnamese() -> None:
    """No English words left in the Vietnamese strings a page shows (as "max" was in charts)."""
    english = re.compile(r"\b(max|min|target|online|offline|loading|error|alerts?)\b", re.I)
    leaks = {k: v for k, v in VI.items() if english.search(v)}
    assert not leaks, leaks
