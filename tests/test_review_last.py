"""Review of 7a4351d..6e32937 (listings.source, `_plan_references`, `_planned_ranges`'s
fallback): each test here failed on the code as reviewed."""

from __future__ import annotations

import json
from pathlib import Path

from support import run_cli

from polyledger.ledger import AttemptRecord, Ledger

HEADER = "ticker,security_id,list_date,delisted_utc\n"
RANGE = ("--from", "2014-01-01", "--to", "2016-12-31")


def write(path: Path, *rows: str) -> None:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")


def planned(universe: str, *args: str) -> str:
    result = run_cli("plan", "--universe", universe, *args)
    assert result.code == 0, result.out + result.err
    return result.out


def periods(ticker: str, dataset: str = "minute") -> list[str]:
    with Ledger("ledger.db", create=False) as opened:
        rows = opened.query(
            "SELECT period FROM units WHERE dataset = :d AND ticker = :t ORDER BY period",
            {"d": dataset, "t": ticker},
        )
    return [row.period for row in rows]


def calendar(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    found = []
    while f"{year:04d}-{month:02d}" <= last:
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def settle_all_empty() -> None:
    with Ledger("ledger.db", create=False) as opened:
        for claimed in opened.claim("w", 60, limit=10_000):
            opened.settle_empty(claimed, True, AttemptRecord(requests=1))


def audit(dataset: str = "minute") -> tuple[int, dict]:
    result = run_cli("audit", "--json")
    report = json.loads(result.out)
    return result.code, next(d for d in report["datasets"] if d["dataset"] == dataset)


def test_a_file_known_only_from_its_splits_plan_is_owed_the_ledgers_range_like_a_new_path(work):
    """a.csv planned minute 2014-2016 with LATE from 2015-03-02. b.csv, a new file, is
    planned for splits first (a unit per ticker: no range, no listings recorded), then
    for minute 2016 only, with LATE corrected to list from 2014-06-02. b.csv has no bar
    range recorded, exactly like a moved/new path (11428c4): the change must be owed over
    the ledger's planned span. `_planned_ranges` counts the splits row as "known path"
    and returns b.csv's (empty) bar ranges: June 2014 - February 2015 in no unit."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    write(work / "b.csv", "LATE,CO1,2014-06-02,")
    planned("b.csv", "--dataset", "splits")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit()
    assert periods("LATE") == calendar("2014-06", "2016-12"), (out, code, minute["unplanned"])


def test_a_splits_plan_sync_forgot_is_not_planned_again_by_a_plan_of_bars(work):
    """Splits were planned from u.csv, then `sync --forget splits` ("sync no longer plans
    splits ... `plan` it again to resume"). `_plan_references` reads the remembered plans
    with forgotten=True, so every later plan of bars from u.csv (and sync's nightly plan
    of them: the same `plan.plan`) adds splits units for its new symbols, which `run`
    then fetches: the forgotten dataset is planned again without being asked."""
    write(work / "u.csv", "FB,CO1,2012-05-18,")
    planned("u.csv", *RANGE)
    planned("u.csv", "--dataset", "splits")
    forgot = run_cli("sync", "--forget", "splits")
    assert forgot.code == 0 and "no longer plans splits" in forgot.out, forgot.out + forgot.err
    write(work / "u.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    out = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert periods("META", "splits") == [], out


def test_a_new_files_change_is_not_owed_over_years_no_file_planned_for_that_ticker(work):
    """a.csv planned minute 2010-2016 for BIG only; d.csv planned minute 2016 for SMALL
    (listed from 2016-01-04). A new file, c.csv, first planned for 2016, says SMALL listed
    from 2010-01-04. No file ever asked SMALL before 2016, yet the fallback of
    `_planned_ranges` (the hull of every file's ranges, 11428c4) owes SMALL every month of
    2010-2015 (72 units `run` will fetch): a cost taken from another ticker's range. The
    bound should be the ranges of the files the symbol's listings came from
    (`listings.source`), here d.csv's 2016."""
    write(work / "a.csv", "BIG,CO1,2005-01-03,")
    planned("a.csv", "--from", "2010-01-01", "--to", "2016-12-31")
    write(work / "d.csv", "SMALL,CO2,2016-01-04,")
    planned("d.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(work / "c.csv", "SMALL,CO2,2010-01-04,")
    out = planned("c.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert periods("SMALL") == calendar("2016-01", "2016-12"), out


def test_a_moved_file_is_not_told_it_contradicts_its_own_old_path(work):
    """u.csv is moved to universes/u.csv and LATE's listing corrected there (the scenario
    of 11428c4's test). The plan says the listings "came from <old path>/u.csv, which this
    file contradicts ... universe files that disagree ... queue each other's months again
    on every plan (correct one of them)": the old path is the same universe, no longer on
    disk; there is no second file to correct. (Only a message, but one telling the user to
    correct a file that does not exist.)"""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", *RANGE)
    (work / "universes").mkdir()
    (work / "u.csv").rename(work / "universes" / "u.csv")
    write(work / "universes" / "u.csv", "LATE,CO1,2014-06-02,")
    out = planned("universes/u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "contradicts" not in out or "no longer" in out, out
