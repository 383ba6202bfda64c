"""Review of the day's changes (fa31484..ca1f42f): failing tests, one per defect claimed.

(a) `plan` plans the months a change of listings brings into a window over the range the
    ledger records as planned for the universe file (`plan._owed`). The change is seen by
    exactly one plan -- the one that records it -- and that plan owes the months of one
    dataset only, of one symbol's listings only: the other datasets planned from the same
    file, and a renamed company's new symbol, are left with months in no unit that
    `audit` does not judge (before a ticker's first unit).
(b) `adjust.security_on` gives a split (dividend) listed under a symbol to "the one
    company among the symbol's that traded under another of its symbols" on the event's
    day: a company that *left* the symbol (renamed away) is taken for the owner of the
    events of the company that took the symbol after it.
(c) information bars: the new number check refuses a Decimal or a 0-d array threshold that
    built bars before, and lets a Fraction bars_per_day through to a polars crash.
(Pre-existing, asked about by the brief) two universe files that disagree about a
listing re-queue each other's units night after night; a split the API lists on two
dates is fetched again every night of the lookback.

Deterministic: real SQLite ledgers, a stand-in API on 127.0.0.1, fixed dates."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import warnings
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support import run_cli
from test_infobars import HAND

import polyledger
from polyledger.datasets.reference import plan_reference
from polyledger.errors import InputError
from polyledger.fetch.runner import Run, RunOptions
from polyledger.infobars import information_bars
from polyledger.ledger import AttemptRecord, Ledger
from polyledger.plan import plan
from polyledger.storage import BarStore
from polyledger.testing import Listing, Split, StandInServer, SyntheticMarket
from polyledger.universe import read_members

D = dt.date
HEADER = "ticker,security_id,list_date,delisted_utc\n"
KEY = "review-today-key"


def write(path: Path, *rows: str) -> None:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")


def planned(universe: str, *args: str) -> str:
    result = run_cli("plan", "--universe", universe, *args)
    assert result.code == 0, result.out + result.err
    return result.out


def periods(dataset: str, ticker: str) -> list[str]:
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


def audit_of(dataset: str) -> tuple[int, dict]:
    result = run_cli("audit", "--json")
    report = json.loads(result.out)
    return result.code, next(d for d in report["datasets"] if d["dataset"] == dataset)


# --- (a) the months a change of listings owes -------------------------------------------------


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
    assert periods("day", "LATE") == ["2015", "2016"]
    write(work / "u.csv", "LATE,CO1,2014-06-02,")
    planned("u.csv", "--dataset", "minute", "--from", "2016-01-01", "--to", "2016-12-31")
    out = planned("u.csv", "--dataset", "day", "--from", "2016-01-01", "--to", "2016-12-31")
    assert periods("minute", "LATE") == calendar("2014-06", "2016-12")  # the minute plan's owed months
    settle_all_empty()
    code, day = audit_of("day")
    assert periods("day", "LATE") == ["2014", "2015", "2016"], (
        f"LATE's day bars of 2014 (listed from 2014-06-02 now, inside u.csv's planned 2014-2016) are in "
        f"no unit; day plan said {out!r}; audit exit {code}, unplanned {day['unplanned']}"
    )


def test_a_rename_plans_the_new_symbols_months_over_the_range_planned_for_the_universe(work):
    """u.csv held FB, open-ended (CO1), planned for 2022. The company is renamed: the
    rebuilt file ends FB on 2022-06-08 and lists META (CO1) from 2022-06-09. A plan of the
    file for 2023 records the change: FB's units after June 2022 are queued again (they
    now lie outside FB's listing, and the API has no FB bars after the rename), but META --
    a symbol with no listing before, so no `ListingChange` -- gets only 2023. The company's
    bars of 2022-06-09 .. 2022-12-31 are in no unit (inside META's listing and inside the
    range planned for u.csv), and `audit` does not judge days before META's first unit."""
    write(work / "u.csv", "FB,CO1,2012-05-18,")
    planned("u.csv", "--from", "2022-01-01", "--to", "2022-12-31")
    write(work / "u.csv", "FB,CO1,2012-05-18,2022-06-08T00:00:00Z", "META,CO1,2022-06-09,")
    out = planned("u.csv", "--from", "2023-01-01", "--to", "2023-12-31")
    settle_all_empty()
    code, minute = audit_of("minute")
    assert periods("minute", "META")[:7] == calendar("2022-06", "2022-12"), (
        f"CO1's months June-December 2022 under META are in no unit: META has {periods('minute', 'META')[:3]}..."
        f"; plan said {out!r}; audit exit {code}, unplanned {minute['unplanned']}"
    )


def test_a_moved_universe_file_loses_the_range_its_changes_are_owed_over(work):
    """u.csv, planned 2014-2016, is moved to universes/u.csv (a tidy-up, or a checkout in
    another folder) and LATE's listing corrected there to start 2014-06-02; the moved file
    is planned for 2016. `_planned_range` looks the range up by the file's absolute path
    only: none is recorded for the new path, so nothing is owed, and June 2014 - February
    2015 of LATE -- inside the listing and inside the range the ledger records as planned
    for that same universe -- are in no unit, with `audit` silent about them."""
    write(work / "u.csv", "LATE,CO1,2015-03-02,")
    planned("u.csv", "--from", "2014-01-01", "--to", "2016-12-31")
    (work / "universes").mkdir()
    shutil.move(work / "u.csv", work / "universes" / "u.csv")
    write(work / "universes" / "u.csv", "LATE,CO1,2014-06-02,")
    out = planned("universes/u.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit_of("minute")
    assert periods("minute", "LATE") == calendar("2014-06", "2016-12"), (
        f"LATE's June 2014 - February 2015 are in no unit; plan said {out!r}; audit exit {code}, "
        f"unplanned {minute['unplanned']}"
    )


def test_two_universe_files_that_disagree_about_a_listing_requeue_each_other_every_night(work):
    """Pre-existing (the same on fa31484), asked about by the brief. a.csv lists LATE from
    2014-06-02, b.csv from 2015-03-02 (two builds, two filters, a hand-kept file); both are
    planned 2014-2016, as `sync` plans every remembered plan every night. Each plan replaces
    LATE's listings with its own: a.csv's queues again the empty months b.csv's windows
    explained (shown here), and b.csv's would queue the done months whose bars a.csv's
    attributed (their security_id flips from CO1 to none and back). Nothing changed in either file, yet every "night"
    queues units again: fetched again night after night, and which security the bars carry
    depends on which plan ran last."""
    write(work / "a.csv", "LATE,CO1,2014-06-02,")
    write(work / "b.csv", "LATE,CO1,2015-03-02,")
    window = ("--from", "2014-01-01", "--to", "2016-12-31")
    requeued = []
    for _night in range(3):
        said = planned("a.csv", *window) + planned("b.csv", *window)
        settle_all_empty()  # the night's run
        requeued.append("queued again" in said)
    assert requeued[1:] == [False, False], (
        f"nights 2 and 3 queued LATE's units again with neither universe file changed: {requeued}"
    )


# --- (b) security_on and a reused symbol ------------------------------------------------------


def _fetch(folder: Path, server: StandInServer, datasets: tuple[str, ...]) -> None:
    with Ledger(folder / "ledger.db") as ledger:
        run = Run(
            ledger,
            BarStore(folder / "data"),
            api_key=KEY,
            base_url=server.url,
            options=RunOptions(workers=1, rate=500, adjusted=False, datasets=datasets),
        )
        assert run.execute().outcome == "finished"


def _reused_after_a_rename(folder: Path, other_split: Split) -> None:
    """RENCO traded as OLD until 2019-06-28 and as NEW from 2019-07-01 (a rename; it never
    split). Another company, OTHERCO, lists under the freed symbol OLD from 2019-09-03 and
    makes `other_split` (listed under OLD, its symbol). Raw day bars of 2019, and the
    splits of both symbols, fetched."""
    old = Listing("OLD", delist_date=D(2019, 6, 28), bars_per_day=20, company="renco", renamed=True)
    new = Listing("NEW", list_date=D(2019, 7, 1), bars_per_day=20, company="renco")
    reuse = Listing("OLD", list_date=D(2019, 9, 3), bars_per_day=20, company="other", splits=(other_split,))
    (folder / "u.csv").write_text(
        HEADER + "OLD,RENCO,,2019-06-28\nNEW,RENCO,2019-07-01,\nOLD,OTHERCO,2019-09-03,\n", encoding="utf-8"
    )
    with Ledger(folder / "ledger.db") as ledger:
        plan_reference(ledger, ["OLD", "NEW"], "splits", D(2020, 1, 2))
        plan(ledger, read_members(folder / "u.csv"), "day", D(2019, 1, 1), D(2019, 12, 31))
    with StandInServer(SyntheticMarket([old, new, reuse], seed=3), api_keys=(KEY,)) as server:
        _fetch(folder, server, ("splits", "day"))


def _renco_split_factors(folder: Path, **read: object) -> list[float]:
    """The distinct adjusted / raw close ratios of RENCO's bars in a read."""
    with polyledger.open(folder / "ledger.db", folder / "data") as dl, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = dl.bars("day", **read).collect()  # type: ignore[arg-type]
        adjusted = dl.bars("day", adjust="splits", **read).collect()  # type: ignore[arg-type]
    renco = (adjusted["close"] / raw["close"]).filter(raw["security_id"] == "RENCO")
    assert renco.len() > 100
    return sorted(set(renco.round(9).to_list()))


def test_another_companys_split_under_a_reused_symbol_does_not_adjust_the_company_that_left_it(tmp_path):
    """RENCO left the symbol OLD (renamed to NEW); OTHERCO took OLD and split 1:2 on
    2019-10-01, inside OTHERCO's own listing of OLD. Read by RENCO's current symbol,
    `dl.bars("day", tickers=["NEW"], adjust="splits")`: `_related_listings` gives RENCO's
    listings only (OTHERCO's listing of OLD is not RENCO's), `_split_rows` reads OLD's
    splits (OTHERCO's), and `security_on("OLD", 2019-10-01)` finds no listing of OLD
    covering the day among them, then falls back to "the one company among OLD's that
    traded under another of its symbols" that day: RENCO, as NEW. RENCO's bars before
    2019-10-01 are halved and their volumes doubled by a split it never made; before the
    day's change the split was (rightly) no company's here. Read as security="RENCO" it is
    right (OTHERCO's listing is then among the listings)."""
    _reused_after_a_rename(tmp_path, Split(D(2019, 10, 1), 1, 2))
    assert _renco_split_factors(tmp_path, security="RENCO") == [1.0]  # consistent: no split of RENCO's
    factors = _renco_split_factors(tmp_path, tickers=["NEW"])
    assert factors == [1.0], f"RENCO's bars read as NEW adjusted by OTHERCO's 1:2 split: factors {factors}"


def test_a_split_of_a_reused_symbol_dated_between_its_companies_is_not_given_to_the_one_that_left(tmp_path):
    """The same two companies; OTHERCO's split is listed under OLD dated 2019-08-26, a few
    days before OTHERCO's first recorded session of OLD (2019-09-03): a listing date a few
    days off, or a split made just before the listing. On that day no listing of OLD is
    open. `security_on` takes the one company of OLD's that traded under another symbol
    then -- RENCO as NEW -- although OLD is RENCO's *earlier* symbol: the API lists a
    company's events under the symbol it has now or later (polygon-io/issues#253, the
    change's own rationale), never under one it left, which another company holds now.
    RENCO's whole series before 2019-08-26 is halved, even read as security="RENCO"."""
    _reused_after_a_rename(tmp_path, Split(D(2019, 8, 26), 1, 2))
    factors = _renco_split_factors(tmp_path, security="RENCO")
    assert factors == [1.0], f"RENCO's bars adjusted by a split listed under the symbol it left: {factors}"


# --- (pre-existing) a split listed on two dates, fetched again every night -------------------


def test_a_split_the_api_lists_on_two_dates_is_not_fetched_again_every_night(tmp_path, monkeypatch):
    """Pre-existing (the same on fa31484 with ids), asked about by the brief. The API lists
    one 10-for-1 split on two dates (SHOP's, 2022-06-22 and 2022-06-29); `copy_to_ledger`
    keeps the real date's record in the file and drops the other (`one_date_each`). The
    market-wide listing sync compares with still shows both: the dropped record is "a
    record the file does not hold", so the splits unit is queued again every night the
    two dates are inside the lookback (about five weeks), fetched, the record dropped
    again, and queued again the next night."""
    from types import SimpleNamespace

    from polyledger import sync_refs

    store = BarStore(tmp_path / "data")
    store.ensure_writable()
    kept = pl.DataFrame(
        {"ticker": ["SHOP"], "execution_date": [D(2022, 6, 29)], "split_from": [1.0], "split_to": [10.0],
         "adjustment_type": ["forward_split"], "historical_adjustment_factor": [0.1], "id": ["S-29"]},
        schema={"ticker": pl.String, "execution_date": pl.Date, "split_from": pl.Float64, "split_to": pl.Float64,
                "adjustment_type": pl.String, "historical_adjustment_factor": pl.Float64, "id": pl.String},
    )  # fmt: skip
    import io

    buffer = io.BytesIO()
    kept.write_parquet(buffer)
    store._put("splits/ticker=SHOP/part.parquet", buffer.getvalue())
    listed = {
        ("S-22", "SHOP", D(2022, 6, 22), 1.0, 10.0, "forward_split"),  # the record one_date_each dropped
        ("S-29", "SHOP", D(2022, 6, 29), 1.0, 10.0, "forward_split"),
    }
    unit = SimpleNamespace(ticker="SHOP", state="done", file_path="splits/ticker=SHOP/part.parquet")
    monkeypatch.setattr(sync_refs.queries, "settled_reference_units", lambda ledger, dataset: [unit])
    monkeypatch.setattr(sync_refs.queries, "tickers_with_splits_since", lambda ledger, since: {"SHOP"})
    monkeypatch.setattr(sync_refs, "since_when", lambda ledger, dataset: D(2022, 6, 1))
    monkeypatch.setattr(sync_refs, "announced", lambda client, dataset, since: {"SHOP": listed})
    queued: list[list[str]] = []
    ledger = SimpleNamespace(
        reset_settled=lambda dataset, tickers: queued.append(tickers), set_setting=lambda key, value: None
    )
    nights = [sync_refs.refresh(ledger, store, None, "splits", D(2022, 7, 1 + n)) for n in range(3)]  # type: ignore[arg-type]
    assert nights == [[], [], []], f"SHOP's splits unit queued again night after night: {nights}"


# --- (c) information bars: numbers the new check refuses, or lets through to crash ------------


@pytest.mark.parametrize(
    "threshold",
    [Decimal("5"), np.array(5.0)],
    ids=["Decimal", "0-d ndarray"],
)
def test_a_threshold_that_is_a_decimal_or_a_0d_array_still_builds_bars(threshold):
    """A fixed threshold read from PostgreSQL (NUMERIC comes back as `decimal.Decimal`:
    `SELECT avg(...)` through psycopg), or left as a 0-d array by numpy code, built bars on
    fa31484 (`float(threshold)` is all the threshold is used through). The day's check
    asks `isinstance(value, numbers.Real)`, which neither is: a legitimate, positive,
    finite number is refused with "must be positive and finite (a number)"."""
    want = information_bars(HAND, "volume", threshold=5.0)
    got = information_bars(HAND, "volume", threshold=threshold)
    assert got.equals(want)


def test_a_bars_per_day_the_check_accepts_is_not_a_crash_deep_in_polars():
    """`bars_per_day=Fraction(1)` passes the day's check (a `numbers.Real`, positive,
    finite), then fails deep inside (numpy divides into an object array, polars refuses
    `is_not_nan` on it): the bare polars error the check exists to prevent. Either it is
    refused in one line or it is used as the number it is (`float(bars_per_day)`)."""
    want = information_bars(HAND, "volume", bars_per_day=1.0)
    try:
        got = information_bars(HAND, "volume", bars_per_day=Fraction(1))
    except InputError:
        return
    assert got.equals(want)
