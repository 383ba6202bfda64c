"""audit --quality: defects seeded in the stand-in are found where they were put, clean data
gives no flags, and corrupt files the download itself would never write are caught too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import requests
from support import API_KEY, run_cli, write_universe

from polyledger.checks.quality import CHECKS, check_quality
from polyledger.ledger import AttemptRecord, Ledger, PlannedUnit
from polyledger.storage import BarStore
from polyledger.testing import Defects, Listing, StandInServer, SyntheticMarket
from polyledger.testing.market import ET, et_midnight_ms

D = dt.date
START, END = D(2024, 1, 1), D(2024, 3, 31)
MARKET = SyntheticMarket(
    [
        Listing("QA", bars_per_day=120),
        Listing("QB", bars_per_day=80),
        Listing("QC", bars_per_day=60),
        Listing("QD", bars_per_day=40),
    ],
    seed=5,
)
TIGHT = 1e-9  # the stand-in's minute bars add up to its daily bars exactly


def bar_time(ticker: str, day: dt.date, index: int) -> int:
    """The start (epoch ms) of the ticker's index-th true minute bar of a session."""
    bars = MARKET.minute_bars(ticker, et_midnight_ms(day), et_midnight_ms(day + dt.timedelta(days=1)))
    return int(bars["t"][index])


DROPPED = ("QA", D(2024, 2, 14))
REPEATED = ("QB", D(2024, 1, 10))
BAD_LOW = ("QC", D(2024, 3, 7))
SHORT = ("QB", D(2024, 3, 20))  # QB's March ends here, silently
DEFECTS = Defects(
    drop={(DROPPED[0], bar_time(*DROPPED, 10))},
    repeat={(REPEATED[0], bar_time(*REPEATED, 5))},
    bad_low={(BAD_LOW[0], bar_time(*BAD_LOW, 3))},
    short_months={SHORT},
)


def download(folder: Path, tickers: list[str], defects: Defects | None) -> Path:
    """plan minute + day bars for START..END and run them against the stand-in."""
    ledger, data = folder / "ledger.db", folder / "data"
    universe = write_universe(folder / "universe.csv", tickers)
    where = ("--from", START, "--to", END, "--ledger", ledger)
    for dataset in ("minute", "day"):
        plan = run_cli("plan", "--universe", universe, "--dataset", dataset, *where)
        assert plan.code == 0, plan.err
    # small pages: what a defect hides must not break pagination (QB's range ends mid-page)
    with StandInServer(MARKET, api_keys=(API_KEY,), page_cap=1_000, defects=defects) as server:
        fast = ("--workers", "2", "--rate", "5000")
        result = run_cli("run", "--base-url", server.url, *fast, "--ledger", ledger, "--data", data)
    assert result.code == 0, result.err + result.out
    return folder


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYGON_API_KEY", API_KEY)
        patch.delenv("MASSIVE_API_KEY", raising=False)
        yield download(tmp_path_factory.mktemp("seeded"), ["QA", "QB", "QC", "QD"], DEFECTS)


def stored_flags(ledger: Ledger) -> set[tuple]:
    rows = ledger.query("SELECT dataset, ticker, session_date, check_name FROM quality_flags")
    return {tuple(row) for row in rows}


def check_counts(ledger: Ledger) -> dict[str, int]:
    rows = ledger.query("SELECT check_name, count(*) AS n FROM quality_flags GROUP BY 1")
    return {row.check_name: row.n for row in rows}


def short_sessions() -> list[str]:
    """QB's true sessions after the short month's last served date."""
    ticker, last = SHORT
    days = MARKET.day_bars(ticker, et_midnight_ms(last + dt.timedelta(days=1)), et_midnight_ms(D(2024, 4, 1)))
    return [dt.datetime.fromtimestamp(t / 1000, tz=ET).date().isoformat() for t in days["t"]]


def test_each_seeded_defect_is_found_where_it_was_put_and_nothing_else(seeded):
    with Ledger(seeded / "ledger.db") as ledger:
        report = check_quality(ledger, seeded / "data", volume_tolerance=TIGHT)
        flags = stored_flags(ledger)
        duplicate_unit = ledger.query(
            "SELECT u.ticker, u.period FROM quality_flags f JOIN units u ON u.id = f.unit_id "
            "WHERE f.check_name = 'duplicates_dropped'"
        )
    missing = short_sessions()
    assert len(missing) == 6  # Thu 21 .. Thu 28 March (Good Friday, the 29th, is no session)
    assert flags == {
        ("minute", DROPPED[0], DROPPED[1].isoformat(), "volume_mismatch"),
        ("minute", REPEATED[0], None, "duplicates_dropped"),
        ("minute", BAD_LOW[0], BAD_LOW[1].isoformat(), "ohlc_violation"),
        *{("minute", SHORT[0], day, "missing_session") for day in missing},
    }
    assert [tuple(row) for row in duplicate_unit] == [("QB", "2024-01")]
    assert not report.clean
    assert report.counts["missing_session"] == 6 and report.counts["volume_mismatch"] == 1
    assert report.files == 4 * 3 + 4  # minute months + one (clipped) day year per ticker
    as_json = report.to_dict()
    assert as_json["clean"] is False and as_json["flags"] == 9
    assert set(as_json["counts"]) == set(CHECKS)
    assert "QC" in as_json["examples"]["ohlc_violation"][0]


def test_flags_are_a_queryable_table_replaced_by_each_check(seeded):
    with Ledger(seeded / "ledger.db") as ledger:
        check_quality(ledger, seeded / "data", volume_tolerance=TIGHT)
        first = check_counts(ledger)
        assert first == {
            "volume_mismatch": 1,
            "duplicates_dropped": 1,
            "ohlc_violation": 1,
            "missing_session": 6,
        }
        check_quality(ledger, seeded / "data", volume_tolerance=TIGHT)
        assert check_counts(ledger) == first  # replaced, not added to
        # the dropped bar is a sliver of its session's volume: a real-data tolerance lets it pass
        default = check_quality(ledger, seeded / "data")
        assert default.counts["volume_mismatch"] == 0
        assert "volume_mismatch" not in check_counts(ledger)
        # checking the day bars alone leaves the minute findings in place
        day_only = check_quality(ledger, seeded / "data", datasets=["day"])
        assert day_only.clean and check_counts(ledger)["missing_session"] == 6


def test_truth_stays_complete_while_the_download_saw_the_defects(seeded):
    """The stand-in's truth helpers ignore defects: the ledger's rows fall short of them."""
    with Ledger(seeded / "ledger.db") as ledger:
        rows = {
            (r.ticker, r.period): r.rows
            for r in ledger.query("SELECT ticker, period, rows FROM units WHERE dataset = 'minute'")
        }
    true_rows = MARKET.minute_bars("QB", et_midnight_ms(D(2024, 3, 1)), et_midnight_ms(D(2024, 4, 1))).height
    assert rows[("QB", "2024-03")] < true_rows
    true_rows = MARKET.minute_bars("QA", et_midnight_ms(D(2024, 2, 1)), et_midnight_ms(D(2024, 3, 1))).height
    assert rows[("QA", "2024-02")] == true_rows - 1


def test_a_clean_download_has_no_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", API_KEY)
    folder = download(tmp_path, ["QA", "QD"], None)
    with Ledger(folder / "ledger.db") as ledger:
        report = check_quality(ledger, folder / "data", volume_tolerance=TIGHT)
        assert report.clean, report.to_dict()
        stored = ledger.query("SELECT sum(rows) AS n FROM units WHERE state = 'done'")[0].n
        assert report.bars == stored > 5_000  # every stored bar was read
        assert ledger.query("SELECT count(*) AS n FROM quality_flags")[0].n == 0


# --- files the download never writes -------------------------------------------------------


def et_ms(day: dt.date, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ET).timestamp() * 1000)


def make_bars(
    ticker: str, times: list[int], closes: list[float] | None = None, **columns: list
) -> pl.DataFrame:
    """Bars in the stored schema: open = close (a flat body), high/low 1% around it."""
    closes = closes or [10.0] * len(times)
    frame = pl.DataFrame(
        {
            "ticker": [ticker] * len(times),
            "timestamp": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "open": closes,
            "high": [c * 1.01 for c in closes],
            "low": [c * 0.99 for c in closes],
            "close": closes,
            "volume": [100.0] * len(times),
            "vwap": closes,
            "transactions": [3] * len(times),
            "otc": pl.Series([None] * len(times), dtype=pl.Boolean),
        }
    )
    return frame.with_columns(**{name: pl.Series(values) for name, values in columns.items()})


class Files:
    """A ledger whose done units own files written as given (sorted or not, good or bad).
    Each unit is claimed as it is added: leave no other unit pending before adding one."""

    def __init__(self, folder: Path) -> None:
        self.ledger = Ledger(folder / "ledger.db")
        self.data = folder / "data"
        self.store = BarStore(self.data)

    def add(
        self, dataset: str, ticker: str, start: dt.date, end: dt.date, bars: pl.DataFrame, adjusted=True
    ) -> None:
        self.ledger.add_units([PlannedUnit(dataset, ticker, start, end)])
        (unit,) = self.ledger.claim("test", 60)
        stored = self.store.write_unit(dataset, ticker, start, bars)
        self.ledger.settle_done(unit, stored, adjusted, AttemptRecord(bars=bars.height))

    def add_empty(self, dataset: str, ticker: str, start: dt.date, end: dt.date) -> None:
        self.ledger.add_units([PlannedUnit(dataset, ticker, start, end)])
        (unit,) = self.ledger.claim("test", 60)
        self.ledger.settle_empty(unit, True, AttemptRecord())

    def flags(self, **options) -> set[tuple]:
        check_quality(self.ledger, self.data, **options)
        rows = self.ledger.query("SELECT ticker, session_date, check_name, value FROM quality_flags")
        return {
            (r.ticker, r.session_date, r.check_name, round(r.value, 4) if r.value else r.value) for r in rows
        }


@pytest.fixture
def files(tmp_path) -> Iterator[Files]:
    made = Files(tmp_path)
    yield made
    made.ledger.close()


MARCH, DAY = (D(2024, 3, 1), D(2024, 3, 31)), D(2024, 3, 5)


def test_corrupt_minute_files_are_flagged_per_session(files):
    t = [et_ms(DAY, 10, m) for m in range(5)]
    files.add("minute", "DUP", *MARCH, make_bars("DUP", [t[0], t[1], t[1], t[2]]))
    files.add("minute", "BACK", *MARCH, make_bars("BACK", [t[0], t[2], t[1], t[3]]))
    files.add("minute", "NEGV", *MARCH, make_bars("NEGV", t[:3], volume=[100.0, -5.0, 100.0]))
    files.add("minute", "ZERO", *MARCH, make_bars("ZERO", t[:3], low=[9.9, 0.0, 9.9]))
    files.add("minute", "OHLC", *MARCH, make_bars("OHLC", t[:3], high=[10.1, 9.5, 10.1]))
    edges = [et_ms(DAY, 3), et_ms(DAY, 4), et_ms(DAY, 19, 59), et_ms(DAY, 20)]
    files.add("minute", "EDGE", *MARCH, make_bars("EDGE", edges))
    files.add("minute", "JUMP", *MARCH, make_bars("JUMP", t[:4], closes=[10.0, 10.2, 25.0, 24.0]))
    files.add("minute", "FINE", *MARCH, make_bars("FINE", t, closes=[10.0, 11.0, 12.0, 11.0, 10.0]))
    day = DAY.isoformat()
    assert files.flags() == {
        ("DUP", day, "duplicate_timestamp", 1.0),
        ("BACK", day, "non_monotonic", 1.0),
        ("NEGV", day, "negative_volume", -5.0),
        ("ZERO", day, "non_positive_price", 0.0),
        ("OHLC", day, "ohlc_violation", 1.0),
        ("EDGE", day, "outside_session", 2.0),  # 03:00 and 20:00; 04:00 and 19:59 are in
        ("JUMP", day, "extreme_jump", round(float(pl.Series([25.0 / 10.2]).log()[0]), 4)),
    }


def test_corrupt_day_file_and_a_file_that_cannot_be_read(files):
    days = [et_midnight_ms(D(2024, 3, d)) for d in (4, 5, 6)]
    files.add("day", "NEGD", D(2024, 1, 1), D(2024, 12, 31), make_bars("NEGD", days, volume=[1.0, -1.0, 1.0]))
    files.add("minute", "GOOD", *MARCH, make_bars("GOOD", [et_ms(DAY, 10)]))
    files.add("minute", "BAD", *MARCH, make_bars("BAD", [et_ms(DAY, 10)]))
    (files.data / "minute/ticker=BAD/year=2024/month=03/part.parquet").write_bytes(b"not parquet")
    flags = files.flags()
    assert {(t, d, c) for t, d, c, _ in flags} == {
        ("NEGD", "2024-03-05", "negative_volume"),
        ("BAD", None, "unreadable_file"),
    }


def test_jumps_allow_for_splits_in_raw_bars_and_for_gaps(files):
    before, after = [et_ms(D(2024, 3, 4), 15)], [et_ms(D(2024, 3, 5), 10)]
    four_for_one = make_bars("X", before + after, closes=[100.0, 25.5])
    for ticker, adjusted in (("RAW", False), ("ADJ", True), ("NOSPLIT", False)):
        files.add(
            "minute", ticker, *MARCH, four_for_one.with_columns(ticker=pl.lit(ticker)), adjusted=adjusted
        )
    for ticker in ("RAW", "ADJ"):
        files.ledger.replace_splits(ticker, [("2024-03-05", 1.0, 4.0)])
    # January, then March: a jump across a month that was fetched and found empty counts,
    # one across a month never fetched does not (the bars are not consecutive)
    for ticker in ("QUIET", "GAP"):
        files.add(
            "minute", ticker, D(2024, 1, 1), D(2024, 1, 31), make_bars(ticker, [et_ms(D(2024, 1, 5), 10)])
        )
        if ticker == "QUIET":
            files.add_empty("minute", ticker, D(2024, 2, 1), D(2024, 2, 29))
        files.add("minute", ticker, *MARCH, make_bars(ticker, [et_ms(DAY, 10)], closes=[40.0]))
    files.ledger.add_units([PlannedUnit("minute", "GAP", D(2024, 2, 1), D(2024, 2, 29))])  # left pending
    flags = {(t, c) for t, _, c, _ in files.flags()}
    assert flags == {("ADJ", "extreme_jump"), ("NOSPLIT", "extreme_jump"), ("QUIET", "extreme_jump")}


def test_defects_leave_the_truth_and_day_bars_alone():
    """Served minute bars change, nothing else does."""
    t = bar_time("QC", BAD_LOW[1], 3)
    page = MARKET.minute_bars("QC", t, t + 60_000)
    served = DEFECTS.garble("QC", "minute", page)
    assert served["l"][0] > min(served["o"][0], served["c"][0]) and page["l"][0] <= page["c"][0]
    assert DEFECTS.garble("QC", "day", page).equals(page)
    assert DEFECTS.hide("QA", "day", page).equals(page)
    repeated = MARKET.minute_bars("QB", et_midnight_ms(REPEATED[1]), et_midnight_ms(REPEATED[1]) + 86_400_000)
    assert DEFECTS.garble("QB", "minute", repeated).height == repeated.height + 1
    assert Defects().hide("QB", "minute", repeated).equals(repeated)


def test_hidden_bars_never_break_pagination():
    """Pages skip what a defect hides (here more than a page's worth), repeat what it
    repeats, and every other bar arrives once, in order."""
    ticker, last = SHORT
    with StandInServer(MARKET, api_keys=(API_KEY,), page_cap=100, defects=DEFECTS) as server:
        url = f"{server.url}/v2/aggs/ticker/{ticker}/range/1/minute/2024-01-01/2024-03-31"
        served, pages = [], 0
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {API_KEY}"
            while url:
                body = http.get(url, params=None if pages else {"limit": 50_000}, timeout=10).json()
                served += [bar["t"] for bar in body["results"]]
                url, pages = body.get("next_url"), pages + 1
    true = MARKET.minute_bars(ticker, et_midnight_ms(START), et_midnight_ms(END + dt.timedelta(days=1)))["t"]
    kept = [t for t in true if t < et_midnight_ms(last + dt.timedelta(days=1))]
    assert len(true) - len(kept) > 100  # the hidden stretch is longer than a page
    repeated = bar_time(*REPEATED, 5)
    assert served == sorted(kept + [repeated])
    assert pages >= len(kept) // 100


def test_audit_quality_and_report_from_the_command_line(work):
    """The CLI wiring: `audit --quality` exits 1 on a flagged bar and stores the flags;
    `report` writes the page and the heatmap; bad --out is one line, exit 2."""
    market = SyntheticMarket([Listing("QC", bars_per_day=40)], seed=4)
    day = dt.date(2024, 3, 7)
    victim = market.minute_bars("QC", et_midnight_ms(day), et_midnight_ms(day + dt.timedelta(days=1)))["t"][5]
    write_universe(work / "u.csv", ["QC"])
    for dataset in ("minute", "day"):
        run_cli(
            "plan", "--universe", "u.csv", "--dataset", dataset, "--from", "2024-03-01", "--to", "2024-03-31"
        )
    with StandInServer(market, api_keys=(API_KEY,), defects=Defects(bad_low={("QC", victim)})) as api:
        assert run_cli("run", "--base-url", api.url).code == 0
    flagged = run_cli("audit", "--quality", "--volume-tolerance", "0")
    assert flagged.code == 1 and "ohlc_violation: 1" in flagged.out
    stored = run_cli("sql", "SELECT check_name, session_date FROM quality_flags", "--format", "csv").out
    assert stored.splitlines() == ["check_name,session_date", "ohlc_violation,2024-03-07"]
    assert run_cli("retry", "--check", "ohlc_violation").code == 2  # --check needs --flagged
    requeued = run_cli("retry", "--flagged", "--check", "ohlc_violation")
    assert requeued.code == 0 and requeued.out.startswith("1 flagged units are pending again")
    assert run_cli(
        "sql", "SELECT period FROM units WHERE state = 'pending'", "--format", "csv"
    ).out.split() == [
        "period",
        "2024-03",
    ]
    written = run_cli("report", "--out", "r.html")
    assert written.code == 0 and (work / "r.html").is_file() and (work / "r-coverage.png").is_file()
    assert "ohlc_violation" in (work / "r.html").read_text(encoding="utf-8")
    bad = run_cli("report", "--out", "r.txt")
    assert bad.code == 2 and bad.err.strip() == "error: --out must be an .html file: r.txt"


def test_intraday_bars_without_daily_ones_are_said_not_compared_not_called_clean(files):
    """The minute-vs-daily checks (volume_mismatch, missing_session: the strongest signs
    of a silently incomplete month) need daily bars: a ticker without them is named as not
    compared, in the report and on the command line, never silently `clean` (found by a
    new user's review)."""
    from rich.console import Console

    from polyledger.output.render import print_quality

    times = [et_ms(DAY, 10, m) for m in range(3)]
    files.add("minute", "NODAY", *MARCH, make_bars("NODAY", times))
    files.add("minute", "BOTH", *MARCH, make_bars("BOTH", times))
    files.add(
        "day", "BOTH", D(2024, 1, 1), D(2024, 12, 31), make_bars("BOTH", [et_ms(DAY, 0)], volume=[300.0])
    )
    report = check_quality(files.ledger, files.data)
    assert report.clean and report.without_daily == ["NODAY"]
    assert report.to_dict()["without_daily"] == ["NODAY"]
    console = Console(record=True, width=200)
    print_quality(console, report)
    assert "not compared with daily bars (none stored): 1 tickers' sessions" in console.export_text()
