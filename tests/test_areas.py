"""Areas over time: the checks on a unit history, the shipped 2025 reform, the stored versions
and what the history tells the ingest and the series (issue 14, items 1 and 2)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from ioc.core.catalogue.area_files import read_area_csv
from ioc.core.catalogue.areas import AreaSetError, check_area_set
from ioc.core.catalogue.lineage import Source, series_sources, units_at_level, validities
from ioc.core.catalogue.shipped import shipped_area_rows, shipped_areas, shipped_successions
from ioc.core.storage import catalogue
from tests.conftest import REPO
from tests.test_cli import ioc

UNITS = """code,parent_code,level,name_vi,name_en,valid_from,valid_to
P1,,province,Tỉnh Một,One Province,,2025-06-30
P2,,province,Tỉnh Hai,Two Province,,2025-06-30
P3,,province,Tỉnh Ba,Three Province,2025-07-01,
D1,P1,district,Huyện Một,One District,,2025-06-30
"""
SUCCESSIONS = """old_code,new_code,effective,share
P1,P3,2025-07-01,1
P2,P3,2025-07-01,1
D1,P3,2025-07-01,1
"""


def problems(units: str, successions: str = SUCCESSIONS) -> list[str]:
    a, _ = read_area_csv(units, "units.csv")
    _, s = read_area_csv(successions, "successions.csv")
    return check_area_set(a, s)


def test_a_consistent_history_has_no_problems() -> None:
    assert problems(UNITS) == []


def test_unknown_parent_names_the_row() -> None:
    found = problems(UNITS + "C1,D9,commune,Xã Một,One Commune,,\n")
    assert found == ["units.csv row 6: parent_code D9 of area C1 is not a known area"]


def test_a_cycle_in_parents_names_a_row_and_the_loop() -> None:
    units = UNITS + "X1,X2,zone,Khu 1,Zone 1,,\nX2,X3,zone,Khu 2,Zone 2,,\nX3,X1,zone,Khu 3,Zone 3,,\n"
    found = problems(units)
    assert found == ["units.csv row 6: a cycle in parents: X1 -> X2 -> X3 -> X1"]


def test_overlapping_periods_of_one_code_name_both_rows() -> None:
    units = UNITS + "P3,,province,Tỉnh Ba cũ,Old Three,2020-01-01,2025-07-01\n"
    found = [p for p in problems(units) if "overlaps" in p]
    assert found == ["units.csv row 4: area P3 valid 2025-07-01..… overlaps units.csv row 6 (valid 2020-01-01..2025-07-01)"]


def test_a_unit_that_ends_needs_successors() -> None:
    found = problems(UNITS, "old_code,new_code,effective,share\nP1,P3,2025-07-01,1\nD1,P3,2025-07-01,1\n")
    assert found == ["units.csv row 3: area P2 ends on 2025-06-30 but no succession names its successor(s) from 2025-07-01"]


def test_shares_of_a_split_must_sum_to_one() -> None:
    units = UNITS + "P4,,province,Tỉnh Bốn,Four Province,2025-07-01,\n"
    succ = SUCCESSIONS.replace("P1,P3,2025-07-01,1\n", "P1,P3,2025-07-01,0.6\nP1,P4,2025-07-01,0.3\n")
    found = problems(units, succ)
    assert found == ["successions.csv row 2, successions.csv row 3: the shares of area P1's successors from "
                     "2025-07-01 sum to 0.9, not 1"]


def test_successions_must_fit_the_periods() -> None:
    succ = SUCCESSIONS + "P1,P9,2025-07-01,1\nP3,P1,2026-01-01,1\n"
    found = problems(UNITS, succ)
    assert "successions.csv row 5: new_code P9 is not a known area" in found
    assert "successions.csv row 6: no version of area P3 ends on 2025-12-31 (the day before effective 2026-01-01): set its valid_to" in found
    assert "successions.csv row 6: area P1 has no version valid on 2026-01-01" in found


def test_bad_cells_name_row_and_column() -> None:
    with pytest.raises(AreaSetError) as err:
        read_area_csv(UNITS + "C1,P1,village,Xã,Commune,2025-13-01,\nC2,P1,commune,,Two,,\n", "units.csv")
    text = "\n".join(err.value.problems)
    assert "units.csv row 6, column valid_from: '2025-13-01' is not a date (YYYY-MM-DD)" in text
    assert "units.csv row 7, column name_vi:" in text
    with pytest.raises(AreaSetError) as err:
        read_area_csv("old_code,new_code,effective,share\nP1,P3,2025-07-01,half\nP2,P3,2025-07-01,1.5\n", "s.csv")
    assert err.value.problems[0] == "s.csv row 2, column share: 'half' is not a number"
    assert err.value.problems[1].startswith("s.csv row 3, column share:")
    with pytest.raises(AreaSetError) as err:
        read_area_csv("code,level,name_vi,name_en,colour\n", "u.csv")
    assert err.value.problems == ["u.csv row 1: column parent_code is missing", "u.csv row 1: unknown column 'colour'"]


def test_the_shipped_history_covers_the_2025_reform() -> None:
    areas, succ = shipped_area_rows()  # checked whole on loading
    assert check_area_set(areas, succ) == []
    provinces = [(a.area.code, a.area.valid_from, a.area.valid_to) for a in areas if a.area.level == "province"]
    provinces.sort(key=lambda p: (p[0], p[1] or date.min))
    assert provinces == [("35", None, date(2025, 6, 30)), ("36", None, date(2025, 6, 30)),
                         ("37", None, date(2025, 6, 30)), ("37", date(2025, 7, 1), None)]
    districts = [a.area for a in areas if a.area.level == "district"]
    assert len(districts) == 6 and all(d.valid_to == date(2025, 6, 30) for d in districts)
    # the official list of the new communes comes through `ioc areas import`, not guessed here
    assert not any(a.area.level == "commune" and a.area.valid_from for a in areas)
    assert {(s.succession.old_code, s.succession.new_code) for s in succ} >= {("35", "37"), ("36", "37"), ("37", "37")}


def test_validity_reasons_name_the_successor() -> None:
    v = validities(shipped_areas(), shipped_successions())
    assert v["35"].problem(date(2025, 6, 30)) is None
    assert v["35"].problem(date(2025, 7, 1)) == "area 35 ended on 2025-06-30; report for its successor 37 (Tỉnh Ninh Bình)"
    assert v["37"].problem(date(2025, 7, 1)) is None and v["37"].problem(date(2024, 1, 1)) is None
    assert "13285" not in v  # communes: valid until the import says otherwise


def test_series_sources_across_the_reform() -> None:
    sources = series_sources("37", shipped_areas(), shipped_successions())
    reform = date(2025, 7, 1)
    assert sorted(sources, key=lambda s: (s.code, s.since or date.min)) == [
        Source("35", 1.0, None, reform), Source("36", 1.0, None, reform),
        Source("37", 1.0, None, reform), Source("37", 1.0, reform, None),
    ]  # Hà Nam's districts are inside Hà Nam: not counted twice
    # a split applies its share, and a later reform chains
    units, _ = read_area_csv(UNITS + "P4,,province,Tỉnh Bốn,Four Province,2025-07-01,\n", "u.csv")
    _, succ = read_area_csv(SUCCESSIONS.replace("P1,P3,2025-07-01,1\n", "P1,P3,2025-07-01,0.75\nP1,P4,2025-07-01,0.25\n"), "s.csv")
    got = {s.code: s.share for s in series_sources("P4", [u.area for u in units], [s.succession for s in succ])}
    assert got == {"P4": 1.0, "P1": 0.25}


async def test_versions_and_successions_are_stored_and_listed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        stored = await catalogue.list_areas(conn)
        assert {(a.code, a.valid_from) for a in stored} >= {("35", None), ("37", None), ("37", date(2025, 7, 1))}
        on_july = await catalogue.list_areas(conn, level="province", on=date(2025, 7, 1))
        assert [(a.code, a.valid_from) for a in on_july] == [("37", date(2025, 7, 1))]
        succ = await catalogue.list_successions(conn)
        assert {(s.old_code, s.new_code, s.effective, s.share) for s in succ} >= {("35", "37", date(2025, 7, 1), 1.0)}


def _cli_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)})
    return env


async def _area_state(pool: asyncpg.Pool) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    async with pool.acquire() as conn:
        areas = await conn.fetch("SELECT * FROM areas ORDER BY code, valid_from NULLS FIRST")
        succ = await conn.fetch("SELECT * FROM area_successions ORDER BY old_code, effective, new_code")
    return [tuple(r) for r in areas], [tuple(r) for r in succ]


async def test_areas_import_is_all_or_nothing(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    env = _cli_env(db_url)
    units = tmp_path / "units.csv"
    succ = tmp_path / "successions.csv"
    units.write_text("code,parent_code,level,name_vi,name_en,valid_from,valid_to\n"
                     "IMP1,,zone,Khu thử,Test Zone,,2025-06-30\n"
                     "IMP2,,zone,Khu mới,New Zone,2025-07-01,\n"
                     "IMP21,IMP2,zone,Khu con,Sub Zone,2025-07-01,\n", encoding="utf-8")
    succ.write_text("old_code,new_code,effective,share\nIMP1,IMP2,2025-07-01,1\n", encoding="utf-8")

    # a bad row in one file: nothing of either file is stored, and the row and column are named
    before = await _area_state(pool)
    bad_units = tmp_path / "bad-units.csv"
    bad_units.write_text(units.read_text(encoding="utf-8") + "IMP22,IMP2,zone,Khu hai,Two,2025-07-01,2025-02-30\n",
                         encoding="utf-8")
    out = ioc(env, "areas", "import", str(bad_units), str(succ))
    assert out.returncode == 1, out.stdout
    assert "bad-units.csv row 5, column valid_to: '2025-02-30' is not a date (YYYY-MM-DD)" in out.stderr
    assert "nothing imported" in out.stderr
    # rows that parse but do not fit the stored history: the ending unit has no successor
    out = ioc(env, "areas", "import", str(units))
    assert out.returncode == 1
    assert "units.csv row 2: area IMP1 ends on 2025-06-30 but no succession names its successor(s) from 2025-07-01" in out.stderr
    assert await _area_state(pool) == before

    out = ioc(env, "areas", "import", str(units), str(succ))
    assert out.returncode == 0, out.stderr
    assert "imported 3 unit version(s) and 1 succession(s)" in out.stdout
    after_areas, after_succ = await _area_state(pool)
    assert len(after_areas) == len(before[0]) + 3 and len(after_succ) == len(before[1]) + 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'areas.imported'") >= 1

    # a later file that would end the new province without successors, or make a cycle,
    # is refused against what is stored; the stored history stays as it was
    cyc = tmp_path / "cycle.csv"
    cyc.write_text("code,parent_code,level,name_vi,name_en,valid_from,valid_to\n"
                   "IMP2,IMP21,zone,Khu mới,New Zone,2025-07-01,\n", encoding="utf-8")
    out = ioc(env, "areas", "import", str(cyc))
    assert out.returncode == 1 and "a cycle in parents: IMP2 -> IMP21 -> IMP2" in out.stderr
    assert await _area_state(pool) == (after_areas, after_succ)
    # importing the same files again changes nothing
    assert ioc(env, "areas", "import", str(units), str(succ)).returncode == 0
    assert await _area_state(pool) == (after_areas, after_succ)


def test_units_at_a_level_below_a_successor_and_its_predecessors() -> None:
    areas, succ = shipped_areas(), shipped_successions()
    communes = units_at_level(series_sources("37", areas, succ), "commune", areas, succ)
    # Hà Nam's 98 communes: through its districts until the reform, then under the new Ninh
    # Bình (their districts gone, as a breakdown places them: units_below)
    assert len(communes) == 98 and len({c.code for c in communes}) == 98
    assert {(c.since, c.until, c.share) for c in communes} == {(None, None, 1.0)}
    districts = units_at_level(series_sources("37", areas, succ), "district", areas, succ)
    assert sorted(d.code for d in districts) == ["347", "349", "350", "351", "352", "353"]
