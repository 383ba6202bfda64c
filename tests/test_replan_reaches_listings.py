"""A universe's listings corrected after it was planned: the plan that records the change
also plans the days it brings into a window inside the range the ledger records as planned
for that universe (`planned`: the earliest `--from` to the latest `--to`), whatever its own
`--from`/`--to` (found by a review of `plan`: a listing moved to start earlier, then `plan
--from` a later day, left the months between in no unit; `run` never fetched them and
`audit` said nothing, a hole before a ticker's first unit being no hole it judges)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from support import API_KEY, run_cli

from polyledger.ledger import AttemptRecord, Ledger
from polyledger.listings import LINK_GIVEN, Listing
from polyledger.periods import et_today
from polyledger.plan import plan
from polyledger.testing import Listing as MarketListing
from polyledger.testing import StandInServer, SyntheticMarket

D = dt.date
HEADER = "ticker,security_id,list_date,delisted_utc\n"
RANGE = ("--from", "2014-01-01", "--to", "2016-12-31")


def write(path: Path, *rows: str) -> None:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")


def planned(universe: str, *window: str) -> str:
    result = run_cli("plan", "--universe", universe, *window)
    assert result.code == 0, result.out + result.err
    return result.out


def months(ticker: str, ledger: str = "ledger.db", dataset: str = "minute") -> list[str]:
    """The ticker's periods (years for day bars)."""
    with Ledger(ledger, create=False) as opened:
        rows = opened.query(
            "SELECT period FROM units WHERE dataset = :d AND ticker = :t ORDER BY period",
            {"d": dataset, "t": ticker},
        )
    return [row.period for row in rows]


def unit(ticker: str, period: str) -> tuple[str, str, str]:
    with Ledger("ledger.db", create=False) as opened:
        row = opened.query(
            "SELECT period_start, period_end, state FROM units WHERE ticker = :t AND period = :p",
            {"t": ticker, "p": period},
        )[0]
    return row.period_start, row.period_end, row.state


def calendar(first: str, last: str) -> list[str]:
    """The months first..last ('2014-06'), as the ledger names them."""
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


def test_a_listing_corrected_to_start_earlier_gets_its_months_from_a_later_narrower_plan(work):
    """LATE was said to list on 2015-03-02; the universe, planned 2014-2016, is corrected
    to 2014-06-02, then planned for 2016 only. June 2014 to February 2015 lie inside the
    range planned for the universe and inside the listing now: planned, so `run` fetches
    them (on the code before: in no unit, and `audit` exited 0 once the rest settled)."""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", *RANGE)
    assert months("LATE") == calendar("2015-03", "2016-12")
    settle_all_empty()
    write(work / "u.csv", "LATE,CO1,2014-06-02,")
    out = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("LATE") == calendar("2014-06", "2016-12"), out
    assert {unit("LATE", month)[2] for month in calendar("2014-06", "2015-02")} == {"pending"}
    assert unit("LATE", "2014-06") == ("2014-06-01", "2014-06-30", "pending")  # a whole month
    assert "9 units planned outside --from/--to, over 2014-01-01 to 2016-12-31" in out, out
    assert "the listings of 'LATE' changed" in out, out  # which symbols, which range: said
    code, minute = audit()
    assert (code, minute["unplanned"]) == (3, [])  # work left: run again
    settle_all_empty()
    assert audit()[0] == 0


def test_a_delisting_moved_later_gets_its_months_from_an_earlier_plan(work):
    """GONE's last session was said to be 2015-06-30, then 2016-03-31; the universe, planned
    2014-2016, is planned again for 2014 only: July 2015 to March 2016 are planned too. The
    range is the latest `--to` ever given, as `audit` judges it: a plan of 2014 made before
    the correction does not shrink it."""
    write(work / "u.csv", "GONE,CO2,,2015-06-30T00:00:00Z")
    planned("u.csv", *RANGE)
    planned("u.csv", "--from", "2014-01-01", "--to", "2014-12-31")
    assert months("GONE") == calendar("2014-01", "2015-06")
    write(work / "u.csv", "GONE,CO2,,2016-03-31T00:00:00Z")
    planned("u.csv", "--from", "2014-01-01", "--to", "2014-12-31")
    assert months("GONE") == calendar("2014-01", "2016-03")


def test_a_delisting_found_wrong_gets_the_months_through_yesterday_a_plan_without_to_asked(work):
    """Planned without `--to` (through yesterday), GONE's listing ended 2024-03-28; it never
    ended after all. A plan of January and February only plans April through yesterday
    too: the universe was planned through yesterday, and GONE is listed there now."""
    yesterday = et_today() - dt.timedelta(days=1)
    write(work / "u.csv", "GONE,CO2,,2024-03-28T00:00:00Z")
    planned("u.csv", "--from", "2024-01-01")
    assert months("GONE") == calendar("2024-01", "2024-03")
    write(work / "u.csv", "GONE,CO2,,")
    planned("u.csv", "--from", "2024-01-01", "--to", "2024-02-29")
    assert months("GONE") == calendar("2024-01", yesterday.isoformat()[:7])
    assert unit("GONE", yesterday.isoformat()[:7])[1] == yesterday.isoformat()


def test_an_earlier_listing_found_for_a_symbol_gets_its_months(work):
    """SPLT was one listing from 2015; the universe finds an earlier company under the
    symbol (2014-02-03 to 2014-08-29): its months are planned by a plan of 2016."""
    write(work / "u.csv", "SPLT,CO3,2015-01-02,")
    planned("u.csv", *RANGE)
    write(work / "u.csv", "SPLT,CO0,2014-02-03,2014-08-29T00:00:00Z", "SPLT,CO3,2015-01-02,")
    planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("SPLT") == calendar("2014-02", "2014-08") + calendar("2015-01", "2016-12")


def test_the_months_between_two_listings_found_one_are_planned(work):
    """MERG's two windows (to 2014-06-30, from 2015-03-02) turn out to be one company: the
    months between are inside the listing now, and planned by a plan of 2016 (before, they
    were in no unit: `audit` reported them, and only a plan over them planned them)."""
    write(work / "u.csv", "MERG,CO4,2014-01-02,2014-06-30T00:00:00Z", "MERG,CO5,2015-03-02,")
    planned("u.csv", *RANGE)
    assert months("MERG") == calendar("2014-01", "2014-06") + calendar("2015-03", "2016-12")
    write(work / "u.csv", "MERG,CO4,2014-01-02,")
    planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("MERG") == calendar("2014-01", "2016-12")


def test_a_plan_since_a_plan_without_to_adds_the_days_listed_now_and_nothing_after(work):
    """Planned without `--to` some days ago (through that day's yesterday), OPEN's listing
    is corrected to start a month earlier: a plan of April adds February, the month the
    listing gains, and leaves the last month as the plan without `--to` cut it: extending
    to yesterday is the work of such a plan or of `sync`, not of a plan of April."""
    write(work / "u.csv", "OPEN,CO8,2024-03-01,")
    planned("u.csv", "--from", "2024-01-01", "--to", "2024-05-10")
    with sqlite3.connect(work / "ledger.db") as raw:  # as if planned without --to on 2024-05-11
        raw.execute("UPDATE planned SET last_day = NULL, widest_day = NULL")
    write(work / "u.csv", "OPEN,CO8,2024-02-01,")
    out = planned("u.csv", "--from", "2024-04-01", "--to", "2024-04-30")
    assert months("OPEN") == calendar("2024-02", "2024-05")
    assert unit("OPEN", "2024-05")[:2] == ("2024-05-01", "2024-05-10")
    assert "1 unit planned outside --from/--to" in out and "widened" not in out, out


def test_a_unit_a_run_holds_over_the_days_a_listing_gains_is_taken_back_and_widened(work):
    """LATE's February 2015 is planned clipped (10th-20th) by another universe, and a run
    holds it when a.csv's correction brings February into the listing: the unit is taken
    from its run (its worker read the old windows) and widened to the month the range
    planned for a.csv asks, with the months before it."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    write(work / "b.csv", "LATE,,,")  # a bare ticker: the listing a.csv's plan recorded stays
    planned("b.csv", "--from", "2015-02-10", "--to", "2015-02-20")
    with Ledger("ledger.db", create=False) as opened:
        for claimed in opened.claim("w", 600, limit=10_000):
            if claimed.period_start != D(2015, 2, 10):
                opened.settle_empty(claimed, True, AttemptRecord(requests=1))
    assert unit("LATE", "2015-02") == ("2015-02-10", "2015-02-20", "running")
    write(work / "a.csv", "LATE,CO1,2014-06-02,")
    out = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "units queued again" in out, out
    assert unit("LATE", "2015-02") == ("2015-02-01", "2015-02-28", "pending")
    assert months("LATE") == calendar("2014-06", "2016-12")
    code, minute = audit()
    assert (code, minute["unplanned"]) == (3, [])


def test_a_clipped_unit_a_run_holds_in_a_month_a_listing_gains_is_owed_and_audited(work):
    """LATE's February 2015 was planned for its 2nd-5th by another universe, and a run
    holds it when a.csv's correction lists LATE from the 10th: none of the unit's days
    changed, so its run keeps it, and the plan cannot widen it (`busy`). The days it owes
    are `unplanned` for `audit` (exit 1) until a plan after the run widens it."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    write(work / "b.csv", "LATE,,,")
    planned("b.csv", "--from", "2015-02-02", "--to", "2015-02-05")
    with Ledger("ledger.db", create=False) as opened:
        held = [c for c in opened.claim("w", 600, limit=10_000) if c.period_start == D(2015, 2, 2)]
        assert len(held) == 1
    write(work / "a.csv", "LATE,CO1,2015-02-10,")
    out = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "1 partly planned period is being fetched right now" in out, out
    with Ledger("ledger.db", create=False) as opened:
        opened.settle_empty(held[0], True, AttemptRecord(requests=1))  # the run settles what it was given
    assert unit("LATE", "2015-02") == ("2015-02-02", "2015-02-05", "empty_confirmed")
    code, minute = audit()
    assert code == 1 and minute["unplanned"] == [
        {"ticker": "LATE", "first_day": "2015-02-10", "last_day": "2015-02-27", "trading_days": 13}
    ], minute["unplanned"]
    again = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "1 partly planned period widened" in again, again
    assert unit("LATE", "2015-02") == ("2015-02-01", "2015-02-28", "pending")
    assert audit()[1]["unplanned"] == []


def test_a_plan_stopped_once_it_recorded_a_change_has_planned_what_the_change_owes(tmp_path, monkeypatch):
    """The months a change of listings owes are planned before the change is recorded: a
    plan stopped just after recording it (killed, a lost connection) leaves them planned,
    for the next plan sees no change and would never plan them."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        old = Listing("LATE", D(2015, 3, 2), security_id="CO1")
        plan(ledger, [old], "minute", D(2014, 1, 1), D(2016, 12, 31), source="/u.csv")
        ledger.remember_plan("minute", "/u.csv", D(2014, 1, 1), D(2016, 12, 31))  # as `polyledger plan` does
        corrected = [Listing("LATE", D(2014, 6, 2), security_id="CO1")]
        record = Ledger.record_listings

        def recorded_then_killed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            record(self, *args, **kwargs)
            raise KeyboardInterrupt

        with monkeypatch.context() as patched:
            patched.setattr(Ledger, "record_listings", recorded_then_killed)
            with pytest.raises(KeyboardInterrupt):
                plan(ledger, corrected, "minute", D(2016, 1, 1), D(2016, 12, 31), source="/u.csv")
        assert ledger.listings_of("LATE")[0].first_day == D(2014, 6, 2)  # recorded: no change to see again
        again = plan(ledger, corrected, "minute", D(2016, 1, 1), D(2016, 12, 31), source="/u.csv")
        rows = ledger.query("SELECT period FROM units WHERE ticker = 'LATE' ORDER BY period")
    assert [row.period for row in rows] == calendar("2014-06", "2016-12")
    assert (again.backfilled, again.added) == (0, 0)


def test_day_bars_get_the_years_a_corrected_listing_reaches(work):
    """The same for day bars: their units are years."""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", "--dataset", "day", "--from", "2010-01-01", "--to", "2020-12-31")
    write(work / "u.csv", "LATE,CO1,2012-06-01,")
    out = planned("u.csv", "--dataset", "day", "--from", "2020-01-01", "--to", "2020-12-31")
    with Ledger("ledger.db", create=False) as opened:
        years = [row.period for row in opened.query("SELECT period FROM units ORDER BY period")]
    assert years == [str(year) for year in range(2012, 2021)]
    assert "3 units planned outside --from/--to" in out, out


def test_sync_plans_the_months_a_corrected_listing_reaches(work):
    """`sync` plans every remembered plan from its earliest `--from` through the night's
    session: the months a corrected listing reaches are planned and fetched that night
    (by the same `plan`)."""
    market = SyntheticMarket([MarketListing("LATE", bars_per_day=2)], seed=3)
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        write(work / "u.csv", "LATE,CO1,2016-04-01,")
        planned("u.csv", "--from", "2016-01-01", "--to", "2016-06-30")
        assert run_cli("run", "--base-url", server.url).code == 0
        write(work / "u.csv", "LATE,CO1,2016-02-01,")
        synced = run_cli("sync", "--now", "2016-07-01T22:30:00-04:00", "--base-url", server.url)
        assert synced.code == 0, synced.out + synced.err
    assert months("LATE") == calendar("2016-02", "2016-07")
    assert {unit("LATE", month)[2] for month in calendar("2016-02", "2016-07")} == {"done"}


def test_a_change_recorded_by_the_day_plan_plans_the_minute_months_over_their_own_range(work):
    """The change is recorded once, by the first plan that sees it: that plan plans what it
    owes every bar dataset planned from the file, each over its own recorded range and on
    its own grid (minute 2014-2016, day 2010-2020 here), and says so; the minute plan
    after it sees no change and needs none."""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", *RANGE)
    planned("u.csv", "--dataset", "day", "--from", "2010-01-01", "--to", "2020-12-31")
    write(work / "u.csv", "LATE,CO1,2012-06-01,")
    out = planned("u.csv", "--dataset", "day", "--from", "2020-01-01", "--to", "2020-12-31")
    assert "3 units planned outside --from/--to" in out, out  # day 2012-2014
    assert "14 minute units planned (0 widened)" in out, out  # January 2014 - February 2015
    assert months("LATE") == calendar("2014-01", "2016-12")  # not 2012: minute bars were planned from 2014
    again = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "outside --from/--to" not in again, again


def test_a_new_symbol_of_a_new_security_is_not_planned_outside_the_plans_range(work):
    """Only a new symbol of a security the ledger knows under another one (a rename) owes
    its window over the recorded range: a company new to the ledger was not in the range
    planned for the file, and gets what its first plan asks."""
    write(work / "u.csv", "FB,CO1,2012-05-18,")
    planned("u.csv", *RANGE)
    write(work / "u.csv", "FB,CO1,2012-05-18,", "NEWCO,CO2,2014-06-02,")
    out = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("NEWCO") == calendar("2016-01", "2016-12"), out
    assert "outside --from/--to" not in out, out


def test_a_rename_plans_the_new_symbols_months_over_the_range_and_audit_judges_them(work):
    """FB (CO1) planned 2014-2016; renamed META from 2015-06-09 (FB's listing ends the day
    before); the file planned for 2016 only. META's months from June 2015 are planned
    (a symbol new to the listings, of a security the ledger knows under FB), and FB's
    months after the rename are queued again (their days left FB's listing)."""
    write(work / "u.csv", "FB,CO1,2012-05-18,")
    planned("u.csv", *RANGE)
    settle_all_empty()
    write(work / "u.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    out = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("META") == calendar("2015-06", "2016-12"), out
    assert "7 units planned outside --from/--to" in out, out
    settle_all_empty()
    code, minute = audit()
    assert (code, minute["unplanned"]) == (0, []), minute


def test_a_listing_change_recorded_by_the_minute_plan_still_owes_the_day_datasets_years(work):
    """u.csv is planned for minute bars and for day bars, 2014-2016. LATE's listing is
    corrected from 2015-03-02 to 2014-06-02, and the file planned again for 2016, minute
    bars first, then day bars (as the README's everyday use plans one dataset after the
    other). The minute plan records the change and plans June 2014 - February 2015; the
    day plan sees no change any more (`listing_changes` compares with what the minute plan
    just recorded), so day bars of 2014 -- inside LATE's listing and inside the range
    planned for u.csv's day bars -- are in no unit: `run` never fetches them and `audit`,
    which judges only the days between a ticker's units, exits 0 once the rest settle."""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", "--dataset", "minute", "--from", "2014-01-01", "--to", "2016-12-31")
    planned("u.csv", "--dataset", "day", "--from", "2014-01-01", "--to", "2016-12-31")
    assert months("LATE", dataset="day") == ["2015", "2016"]
    write(work / "u.csv", "LATE,CO1,2014-06-02,")
    planned("u.csv", "--dataset", "minute", "--from", "2016-01-01", "--to", "2016-12-31")
    out = planned("u.csv", "--dataset", "day", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("LATE") == calendar("2014-06", "2016-12")  # the minute plan's owed months
    settle_all_empty()
    code, day = audit("day")
    assert months("LATE", dataset="day") == ["2014", "2015", "2016"], (
        f"LATE's day bars of 2014 (listed from 2014-06-02 now, inside u.csv's planned 2014-2016) are in "
        f"no unit; day plan said {out!r}; audit exit {code}, unplanned {day['unplanned']}"
    )


def test_a_moved_universe_file_is_owed_the_range_the_ledger_planned(work):
    """u.csv, planned 2014-2016, is moved to universes/u.csv (a tidy-up, a checkout in
    another folder) and LATE's listing corrected there to start 2014-06-02; the moved file
    is planned for 2016. No range is recorded for the new path (the ledger keys it by the
    absolute path): the change is owed over what the ledger planned from any file, never
    over nothing (found by a review: June 2014 - February 2015 were in no unit, `audit`
    silent)."""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", *RANGE)
    (work / "universes").mkdir()
    (work / "u.csv").rename(work / "universes" / "u.csv")
    write(work / "universes" / "u.csv", "LATE,CO1,2014-06-02,")
    out = planned("universes/u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "contradicts" not in out, out  # its old path is no other file to correct
    settle_all_empty()
    code, minute = audit()
    assert months("LATE") == calendar("2014-06", "2016-12"), out
    assert (code, minute["unplanned"]) == (0, []), minute


def test_two_universe_files_that_disagree_about_a_listing_say_so_by_name(work):
    """a.csv lists LATE from 2014-06-02, b.csv from 2015-03-02; both planned. Each plan
    replaces the symbol's listings whole, so each queues the other's months again (their
    days changed security) on every plan, sync's nightly too: not silent, the plan names
    the symbol and the file it contradicts (found by a review and a new user: the same 7
    units fetched again night after night with no word of why)."""
    write(work / "a.csv", "LATE,CO1,2014-06-02,")
    write(work / "b.csv", "LATE,CO1,2015-03-02,")
    first = planned("a.csv", *RANGE)
    assert "contradicts" not in first, first
    settle_all_empty()
    second = planned("b.csv", *RANGE)
    assert f"the listings of 'LATE' came from {str(work / 'a.csv')!r}, which this file contradicts" in second
    settle_all_empty()
    third = planned("a.csv", *RANGE)
    assert f"came from {str(work / 'b.csv')!r}, which this file contradicts" in third, third
    assert "10 units queued again" in third, third  # June 2014 - March 2015: days listed again
    again = planned("a.csv", *RANGE)  # the same file again: no change, nothing said
    assert "contradicts" not in again and "queued again" not in again, again


def test_a_renamed_companys_new_symbol_gets_the_splits_units_the_file_was_planned_for(work):
    """Splits were planned from u.csv (a unit per ticker); the company is renamed META and
    the file planned for minute bars only: META gets its splits unit from that plan, or
    its adjusted reads would miss a split with `audit` saying splits COMPLETE until a
    `sync` (found by a new user)."""
    write(work / "u.csv", "FB,CO1,2012-05-18,")
    planned("u.csv", *RANGE)
    assert run_cli("plan", "--universe", "u.csv", "--dataset", "splits").code == 0
    write(work / "u.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    out = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "1 splits unit planned for tickers of this universe that had none" in out, out
    with Ledger("ledger.db", create=False) as opened:
        rows = opened.query("SELECT ticker FROM units WHERE dataset = 'splits' ORDER BY ticker")
    assert [row.ticker for row in rows] == ["FB", "META"]
    again = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert "splits units planned" not in again, again


def test_a_file_known_only_from_its_splits_plan_is_owed_the_ledgers_range_like_a_new_path(work):
    """a.csv planned minute 2014-2016 with LATE from 2015-03-02. b.csv, a new file, is
    planned for splits first (a unit per ticker: no range, no listings recorded), then
    for minute 2016 only, with LATE corrected to list from 2014-06-02. b.csv has no bar
    range recorded, exactly like a moved/new path (11428c4): the change must be owed over
    the ledger's planned span. On the code before, the splits row made the path "known" and
    b.csv's (empty) bar ranges owed nothing: June 2014 - February 2015 in no unit (found
    by a review)."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    write(work / "b.csv", "LATE,CO1,2014-06-02,")
    planned("b.csv", "--dataset", "splits")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit()
    assert months("LATE") == calendar("2014-06", "2016-12"), (out, code, minute["unplanned"])


def test_a_splits_plan_sync_forgot_is_not_planned_again_by_a_plan_of_bars(work):
    """Splits were planned from u.csv, then `sync --forget splits` ("sync no longer plans
    splits ... `plan` it again to resume"). A plan of bars from u.csv (and sync's nightly
    plan of them) adds no splits units for its new symbols: the forgotten dataset is not
    planned again unasked (found by a review)."""
    write(work / "u.csv", "FB,CO1,2012-05-18,")
    planned("u.csv", *RANGE)
    planned("u.csv", "--dataset", "splits")
    forgot = run_cli("sync", "--forget", "splits")
    assert forgot.code == 0 and "no longer plans splits" in forgot.out, forgot.out + forgot.err
    write(work / "u.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    out = planned("u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("META", dataset="splits") == [], out


def test_a_new_files_change_is_not_owed_over_years_no_file_planned_for_that_ticker(work):
    """a.csv planned minute 2010-2016 for BIG only; d.csv planned minute 2016 for SMALL
    (listed from 2016-01-04). A new file, c.csv, first planned for 2016, says SMALL listed
    from 2010-01-04. No file ever asked SMALL before 2016: the change is owed
    over the ranges of the files SMALL's listings came from (`listings.source`: d.csv's
    2016), not over every file's span (72 months of 2010-2015 on the code before, found by
    a review)."""
    write(work / "a.csv", "BIG,CO1,2005-01-03,")
    planned("a.csv", "--from", "2010-01-01", "--to", "2016-12-31")
    write(work / "d.csv", "SMALL,CO2,2016-01-04,")
    planned("d.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(work / "c.csv", "SMALL,CO2,2010-01-04,")
    out = planned("c.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("SMALL") == calendar("2016-01", "2016-12"), out


def test_a_listing_corrected_in_two_files_is_owed_over_both_files_ranges(work):
    """a.csv (2014-2016) and b.csv (2016) both hold LATE, listed from 2015-03-02; both are
    corrected to 2014-06-02 and b.csv is planned first. The change is seen once, by b.csv's
    plan: it is owed over the range of every file that holds LATE (a.csv's too, read
    again), or a.csv's plan after it sees no change left and June 2014 - February 2015 are
    in no unit with `audit` silent (found by a review)."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    write(work / "b.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    write(work / "a.csv", "LATE,CO1,2014-06-02,")
    write(work / "b.csv", "LATE,CO1,2014-06-02,")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("LATE") == calendar("2014-06", "2016-12"), out
    again = planned("a.csv", *RANGE)
    settle_all_empty()
    code, minute = audit()
    assert (code, minute["unplanned"]) == (0, []), (again, minute)


def test_a_rename_is_owed_over_a_file_that_holds_the_companys_old_symbol(work):
    """a.csv (2014-2016) and b.csv (2016) both hold FB (CO1); b.csv was planned last, so
    FB's recorded listings came from b.csv. The company is renamed META on 2015-06-09; b.csv
    is corrected and planned first: META's window is owed over the ranges of the files that
    hold META (none but b.csv: a.csv still says FB) and of the files the company's listings
    came from (b.csv). a.csv's range, which held the company under FB, is not owed; a.csv
    corrected since and planned for 2016 sees no change left: META's June - December 2015
    are in no unit, before its first unit, so `audit` is silent. A plain correction has no
    such gap: a.csv, uncorrected, still holds the symbol and is read again."""
    write(work / "a.csv", "FB,CO1,2012-05-18,")
    write(work / "b.csv", "FB,CO1,2012-05-18,")
    planned("a.csv", *RANGE)
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    write(work / "b.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(work / "a.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    again = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit()
    assert months("META") == calendar("2015-06", "2016-12"), (out, again, code, minute["unplanned"])


def test_a_reused_symbols_rename_is_owed_over_its_companys_file_whatever_the_row_order(work):
    """a.csv (2014-2016) holds FB (CO1), its listings' source; b.csv (2016) holds ZZZ. b.csv
    then says FB was renamed META on 2015-06-09, and that an older company (CO9) used META
    in 2005-2010, on the row after. `_owed_ranges` keeps one security per symbol
    (`companies`, the last row's: CO9), so CO1's file a.csv is not found and META's June -
    December 2015 (inside a.csv's range, the company in it under FB) are owed nothing. With
    the rows the other way round they are planned."""
    write(work / "a.csv", "FB,CO1,2012-05-18,")
    planned("a.csv", *RANGE)
    write(work / "b.csv", "ZZZ,CO5,2010-01-04,")
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(
        work / "b.csv",
        "ZZZ,CO5,2010-01-04,",
        "FB,CO1,2012-05-18,2015-06-08T00:00:00Z",
        "META,CO1,2015-06-09,",
        "META,CO9,2005-01-03,2010-12-31T00:00:00Z",
    )
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("META") == calendar("2015-06", "2016-12"), out


def test_a_file_that_does_not_read_now_is_still_owed_its_range(work):
    """a.csv (2014-2016) and b.csv (2016) hold LATE from 2015-03-02 (b.csv planned last: the
    listings' source). Both are corrected to 2014-06-02, a.csv with a typo on another row
    (`brk.a`); b.csv is planned. `_tickers_in` swallows a.csv's InputError: a.csv holds
    nothing, its range is owed nothing. a.csv fixed and planned for 2016 sees no change left:
    June 2014 - February 2015 in no unit, before LATE's first unit, `audit` silent. A file
    that does not read is no evidence it no longer holds the symbol: its range should be
    owed (or the plan should say it could not read it)."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    write(work / "b.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    write(work / "a.csv", "LATE,CO1,2014-06-02,", "brk.a,CO7,2014-01-02,")
    write(work / "b.csv", "LATE,CO1,2014-06-02,")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(work / "a.csv", "LATE,CO1,2014-06-02,", "BRK.A,CO7,2014-01-02,")
    again = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit()
    assert months("LATE") == calendar("2014-06", "2016-12"), (out, again, code, minute["unplanned"])


def test_a_change_a_plan_without_a_file_records_is_owed_over_the_files_that_hold_the_symbol(work):
    """u.csv (2014-2016) holds GONE, delisted 2015-06-30; a plan from Python, given no
    universe file (`source`, which the command line always passes), corrects it to
    2016-03-31 and plans 2014 only. It recorded the change and owed nothing: July 2015 to
    March 2016, inside u.csv's range and the listing now, were in no unit, after GONE's
    last one (no hole `audit` judges), and no later plan sees the change again. It is owed
    over the ranges of the files that hold the symbol, as for a file the ledger has no
    range of."""
    write(work / "u.csv", "GONE,CO2,,2015-06-30T00:00:00Z")
    planned("u.csv", *RANGE)
    corrected = Listing("GONE", None, D(2016, 3, 31), "CO2")
    with Ledger("ledger.db", create=False) as ledger:
        result = plan(ledger, [corrected], "minute", D(2014, 1, 1), D(2014, 12, 31))
    assert months("GONE") == calendar("2014-01", "2016-03")
    assert (result.changed, result.backfilled, result.owed_over) == (
        ("GONE",),
        9,
        (D(2014, 1, 1), D(2016, 12, 31)),
    )


# more changed symbols than SQLite's bound-variable limit (32766 since 3.32) and, with
# their securities, PostgreSQL's (65535): a universe of every US listing comes close
MANY = 40_000
SQLITE_VARIABLE_LIMIT = 32_766  # the default of a stock SQLite >= 3.32 (Debian's builds allow more)


def test_the_files_of_more_changed_symbols_than_sqlite_binds_at_once_are_found(tmp_path):
    """`_owed_ranges` asks the files of every changed symbol and of its securities at once:
    in one IN list each, 40,000 of them exceeded SQLite's limit and the plan stopped
    ("too many SQL variables") after nothing was recorded, every later plan of the file
    the same (found by a review)."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger._connection().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_VARIABLE_LIMIT)
        check_sources_of_many_symbols(ledger)


def check_sources_of_many_symbols(ledger: Ledger) -> None:
    """`listing_sources` and the listings a plan reads first, asked of MANY symbols and
    securities (SQLite here, PostgreSQL in test_postgres), each row found once."""
    ledger.record_listings([Listing("AAA", security_id="CO1", link=LINK_GIVEN)], source="/a.csv")
    ledger.record_listings([Listing("BBB", security_id="CO2", link=LINK_GIVEN)], source="/b.csv")
    tickers = [f"T{i:05d}" for i in range(MANY)]
    securities = [f"S{i:05d}" for i in range(MANY)]
    found = ledger.listing_sources([*tickers, "AAA"], [*securities, "CO1", "CO2"])
    assert sorted(found) == [("AAA", "CO1", "/a.csv"), ("BBB", "CO2", "/b.csv")]  # AAA by both: once
    assert (
        ledger.listing_changes([Listing(t, security_id=s) for t, s in zip(tickers, securities, strict=True)])
        == []
    )
    assert [listing.ticker for listing in ledger.listings(tickers=[*tickers, "BBB", "AAA"])] == ["AAA", "BBB"]
