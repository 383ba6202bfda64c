"""Building a survivorship-bias-free universe of *listings*: active and delisted
tickers, their details, the earlier symbols of renamed companies, filters, and a funnel
saying what each filter kept.

The tickers list is a handful of pages (1,000 names each) and is read again each time.
A symbol reused by another company is in it twice (the delisted listing, the active
one): both are kept, each with its own window and security. The details (one request per
listing) and the ticker events of each company (`_events_id`: the symbols it traded
under before) are `details` and `ticker_events` units in the ledger, so an interrupted
build resumes where it stopped and a failed request is reported with its reason.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from polyledger.datasets.details import DETAILS
from polyledger.datasets.ticker_events import SLACK
from polyledger.datasets.ticker_events import SPEC as EVENTS
from polyledger.errors import InputError
from polyledger.fetch.runner import Run, RunReport, RunStats
from polyledger.ledger import Ledger, PlannedUnit, queries
from polyledger.listings import LINK_EVENT, Listing, assign_security_ids
from polyledger.periods import et_today
from polyledger.polygon.client import PolygonClient, Stopped
from polyledger.polygon.fetch import FetchCost
from polyledger.polygon.reference import iter_results
from polyledger.replace_file import replace_file
from polyledger.storage import BarStore
from polyledger.trading_days import trading_days

COLUMNS = (
    "ticker",
    "name",
    "primary_exchange",
    "type",
    "active",
    "cik",
    "composite_figi",
    "share_class_figi",
    "list_date",
    "delisted_utc",
    "first_date",  # set where polyledger bounded the window: a rename, a reused symbol
    "last_date",
    "market_cap",
    "security_id",
    "link",
)
# a first open after a change of symbol within this factor of the last close continues the
# company's price (a day's move; a former holder of the symbol rarely trades that close)
PRICE_FACTOR = 1.5
# placing a change may move a start another company's change depends on (renames into
# each other's symbols): the placing is repeated until the starts settle, at most this often
PLACING_ROUNDS = 4
# the tickers list's fields: those of the details it shares, typed as the details are
LIST_SCHEMA = {
    name: DETAILS.schema[name]
    for name in (
        "ticker",
        "name",
        "primary_exchange",
        "type",
        "active",
        "cik",
        "composite_figi",
        "share_class_figi",
        "delisted_utc",
    )
}


@dataclass
class UniverseReport:
    funnel: list[tuple[str, int]] = field(default_factory=list)  # (step, names left)
    failed_details: list[tuple[str, str]] = field(default_factory=list)  # (ticker, reason)
    run: RunReport | None = None
    written: list[Path] = field(default_factory=list)
    outcome: str = "finished"  # or interrupted / stopped: then nothing is written
    reused: list[str] = field(default_factory=list)  # symbols with several listings
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (earlier symbol, current one)
    skipped_events: list[str] = field(default_factory=list)  # ticker events not used, and why
    # changes of symbol the trading placed on another day than their event's date, and those
    # the trading could not confirm (kept at the event's date): one line each
    placed_by_trading: list[str] = field(default_factory=list)
    unconfirmed_changes: list[str] = field(default_factory=list)
    # earlier symbols' windows ended before another company's listing of the symbol starts
    shortened: list[str] = field(default_factory=list)
    # details left out: they name another company than the listing asked about
    other_details: list[str] = field(default_factory=list)

    def funnel_text(self) -> str:
        return " -> ".join(f"{step} {count:,}" for step, count in self.funnel)

    def event_lines(self) -> list[tuple[str, list[str]]]:
        """What the ticker events did not settle on their own, by kind: (label, lines)."""
        return [
            ("change of symbol placed by trading", self.placed_by_trading),
            ("change of symbol not confirmed by trading", self.unconfirmed_changes),
            ("earlier symbol's window shortened", self.shortened),
            ("ticker event left out", self.skipped_events),
        ]


def list_tickers(client: PolygonClient, as_of: dt.date | None) -> pl.DataFrame:
    """Every stock listing, active and delisted (two passes: the API defaults to active).
    A symbol reused after a delisting is in both passes, as two listings: both are kept."""
    frames = []
    for active in ("true", "false"):
        params = {"market": "stocks", "active": active, "limit": "1000"}
        if as_of is not None:
            params["date"] = as_of.isoformat()
        rows = [
            row for page in iter_results(client, "/v3/reference/tickers", params, FetchCost()) for row in page
        ]
        frames.append(
            pl.DataFrame(
                [{k: row.get(k) for k in LIST_SCHEMA} for row in rows], schema=LIST_SCHEMA, strict=False
            )
        )
    return pl.concat(frames).unique(maintain_order=True)  # a page repeated across passes counts once


def build_universe(
    run: Run,
    *,
    types: Sequence[str],
    exchanges: Sequence[str],
    cap_max: float | None,
    as_of: dt.date | None,
    out: Path,
    on_tick: Callable[[RunStats], None] | None = None,
) -> UniverseReport:
    """List, filter by type and exchange, fetch details and ticker events (ledger units),
    add the earlier symbols of renamed companies, filter by market cap, write `out` (CSV)
    and the same table as Parquet beside it."""
    if out.suffix.lower() != ".csv":
        raise InputError(f"--out must be a .csv file (a .parquet copy is written beside it): {out}")
    if not out.parent.is_dir():
        raise InputError(f"folder for --out does not exist: {out.parent}")
    report = UniverseReport()
    try:
        listed = list_tickers(run.client, as_of)
    except Stopped:  # Ctrl-C while listing
        report.outcome = "interrupted"
        return report
    report.funnel.append(("listed", listed.height))
    wanted = pl.col("type").is_in(list(types))
    if "CS" in types:
        # before about 2019 the API gives many common stocks no type at all: dropping them
        # would bring survivorship bias back, so an untyped listing is kept with CS
        wanted = wanted | pl.col("type").is_null()
    kept = listed.filter(wanted & pl.col("primary_exchange").is_in(list(exchanges)))
    untyped = kept.get_column("type").null_count()
    also = f" (or no type: {untyped:,})" if untyped else ""
    report.funnel.append((f"{'+'.join(types)}{also} on {'/'.join(exchanges)}", kept.height))
    if kept.height == 0:
        raise InputError(
            f"no ticker of type {'/'.join(types)} on {'/'.join(exchanges)} among {listed.height:,} listed: "
            "check --type and --exchange (nothing written)"
        )

    # details are fetched as of the build date (today unless --date): a rebuild another day
    # asks again, a rebuild the same day resumes and reuses what was fetched
    day = as_of or et_today()
    period = day.isoformat()
    kept = kept.with_columns(_asked=pl.Series(_asked_dates(kept, day), dtype=pl.String))
    run.ledger.add_units(_build_units(kept, day, period))
    report.run = run.execute(on_tick=on_tick)
    report.outcome = report.run.outcome
    if report.outcome != "finished":
        return report  # interrupted or stopped: a universe without all its details is not written
    report.failed_details = _failed(run.ledger, period)

    joined = kept.join(
        _details(run.ledger, run.store, period), on=["ticker", "_asked"], how="left", suffix="_details"
    )
    table = (
        _without_other_companies_details(joined, report)
        .with_columns(
            pl.coalesce("delisted_utc", "delisted_utc_details").alias("delisted_utc"),
            pl.lit(None, dtype=pl.Date).alias("first_date"),
            pl.lit(None, dtype=pl.Date).alias("last_date"),
        )
        .drop("_asked", "delisted_utc_details")
    )
    table = _with_security_ids(_bound_reused(table))
    table = _link_renames(table, _events(run.ledger, run.store, period), report, as_of=day)
    if cap_max is not None:
        # a delisted name often has no market cap: dropping it would bring survivorship bias
        # back; an earlier symbol of a company (its ticker events) has its company's, so a
        # large company is not kept under its old symbol alone
        known = pl.col("security_id").is_not_null()
        company = pl.when(known).then(pl.col("market_cap").max().over("security_id"))
        cap = pl.col("market_cap").fill_null(company)
        table = table.filter(cap.is_null() | (cap < cap_max))
        report.funnel.append((f"cap < {cap_max:,.0f} (or unknown)", table.height))
    table = table.sort("ticker", pl.col("list_date").fill_null(dt.date.min), nulls_last=False).select(COLUMNS)
    report.reused = sorted(t for t, n in Counter(table.get_column("ticker").to_list()).items() if n > 1)
    replace_file(out, table.write_csv)  # a build stopped half-way keeps the previous universe
    parquet = out.with_suffix(".parquet")
    replace_file(parquet, table.write_parquet)
    report.written = [out, parquet]
    return report


def _asked_dates(kept: pl.DataFrame, day: dt.date) -> list[str]:
    """The date each listing's details are asked as of: the build date, or the last day a
    delisted listing traded if earlier (after it the symbol may be gone or reused)."""
    asked = []
    for delisted in kept.get_column("delisted_utc").to_list():
        last = day
        if delisted:
            try:
                # "the last date that the asset was traded"
                last = min(day, dt.date.fromisoformat(delisted[:10]))
            except ValueError:
                pass  # an unreadable date: ask as of `day`
        asked.append(last.isoformat())
    return asked


def _build_units(kept: pl.DataFrame, day: dt.date, period: str) -> list[PlannedUnit]:
    """A details unit per listing, an events unit per company asked (`_events_id`)."""
    units = [
        _details_unit(ticker, dt.date.fromisoformat(asked), day)
        for ticker, asked in kept.select("ticker", "_asked").iter_rows()
    ]
    asked = {
        _events_id(row) for row in kept.select("ticker", "active", "composite_figi").iter_rows(named=True)
    }
    units.extend(
        PlannedUnit(EVENTS.name, key, day, day, period_name=period) for key in sorted(asked - {None})
    )
    return units


def _events_id(row: dict) -> str | None:
    """What a listing's ticker events are asked by: its composite FIGI, delisted or not (a
    dead company's earlier symbols are history too), else an active listing's ticker.
    Given a ticker the endpoint answers for whoever holds it now: never a delisted one's."""
    return row["composite_figi"] or (row["ticker"] if row["active"] else None)


def _details_unit(ticker: str, asked: dt.date, day: dt.date) -> PlannedUnit:
    """The unit of a ticker's details as of `asked` for the build of `day`, named by the
    question it asks: by the build date when asked as of it (its file under that date),
    else by the build date and the date asked (its file under the date asked). Two
    builds the same day (other filters) that ask one question share its unit; one that
    asks another (an earlier listing's details) never gets the first one's answer."""
    period = day.isoformat()
    if asked == day:
        return PlannedUnit(DETAILS.name, ticker, day, day, period_name=period)
    return PlannedUnit(DETAILS.name, ticker, asked, asked, period_name=f"{period}@{asked.isoformat()}")


def _details(ledger: Ledger, store: BarStore, period: str) -> pl.DataFrame:
    """The build's details, one row per (ticker, date asked): two units asking the same
    (a ledger planned by an earlier version named them apart) must not multiply a row."""
    schema = {
        "ticker": pl.String(),
        "list_date": pl.Date(),
        "market_cap": pl.Float64(),
        "delisted_utc": pl.String(),
        "composite_figi": pl.String(),
        "cik": pl.String(),
        "_asked": pl.String(),
    }
    frames = [
        store.read_parquet(path).with_columns(_asked=pl.lit(asked)).select(list(schema))
        for path, asked in queries.done_build_files(ledger, DETAILS.name, period)
    ]
    found = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return found.unique(["ticker", "_asked"], keep="first", maintain_order=True)


def _without_other_companies_details(joined: pl.DataFrame, report: UniverseReport) -> pl.DataFrame:
    """Details that name another company than the listing (a FIGI or CIK both give
    differs) are the symbol's other holder's, as for a renamed symbol the inactive list
    gives no delisted_utc (asked as of the build date): left out, reported, so the
    listing has no list date or market cap rather than another company's."""
    other = pl.lit(False)
    for column in ("composite_figi", "cik"):
        given, said = pl.col(column), pl.col(f"{column}_details")
        other = other | (given.is_not_null() & said.is_not_null() & (given != said))
    for ticker, asked, said in joined.filter(other).select("ticker", "_asked", "cik_details").iter_rows():
        report.other_details.append(
            f"{ticker} (as of {asked}): they are another company's (cik {said}), the symbol's other "
            "holder: no list date or market cap"
        )
    dropped = ("list_date", "market_cap", "delisted_utc_details")
    return joined.with_columns(
        pl.when(other).then(None).otherwise(pl.col(column)).alias(column) for column in dropped
    ).drop("composite_figi_details", "cik_details")


def _events(ledger: Ledger, store: BarStore, period: str) -> pl.DataFrame:
    # a file written before the trading columns existed reads with them null
    frames = [
        pl.concat([pl.DataFrame(schema=EVENTS.schema), store.read_parquet(path)], how="diagonal_relaxed")
        for path, _ in queries.done_build_files(ledger, EVENTS.name, period)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=EVENTS.schema)


def _bound_reused(table: pl.DataFrame) -> pl.DataFrame:
    """A reused symbol's listings must not overlap: a later listing without a list date
    (or one before the earlier listing's last day) starts the day after that last day."""
    rows = table.sort("ticker", pl.col("delisted_utc").fill_null("9999"), maintain_order=True).to_dicts()
    previous: dict | None = None
    for row in rows:
        if previous is not None and previous["ticker"] == row["ticker"] and previous["delisted_utc"]:
            last = dt.date.fromisoformat(previous["delisted_utc"][:10])
            if row["list_date"] is None or row["list_date"] <= last:
                row["first_date"] = last + dt.timedelta(days=1)
        previous = row
    return pl.DataFrame(rows, schema=table.schema) if rows else table


def _link_renames(
    table: pl.DataFrame, events: pl.DataFrame, report: UniverseReport, as_of: dt.date | None = None
) -> pl.DataFrame:
    """Each company's earlier symbols (its ticker events) become listings of its
    security, from each event's date to the day before the next symbol's; the listing
    itself starts at its own symbol's event (its `list_date` may be the company's IPO,
    when another company held the symbol). A change's date is where the trading around
    it puts it (`_placed_changes`). An answer for another company (FIGI or CIK differ)
    is dropped; a symbol the lists already hold for that window is linked, not added
    twice, unless it is another company's: then the window ends the day before that
    company's listing starts (`_clear_of_others`); every event left out is reported.
    `as_of`: the build date (an active listing's last day known)."""
    rows = table.to_dicts()
    asked = _listings_by_events_id(rows)
    answers: list[tuple[dict, pl.DataFrame]] = []
    for (key,), answer in events.sort("date").group_by("ticker", maintain_order=True):
        if str(key) not in asked:
            continue
        holder = _holder(asked[str(key)], answer)
        other = _other_company(holder, answer) or _later_holder(holder, answer, as_of)
        if other:
            report.skipped_events.append(f"{holder['ticker']}: events answered for {other}, not this company")
            continue
        answers.append((holder, answer))
    companies = _placed_changes(answers, rows, report)
    own: dict[int, dt.date | None] = {}
    for holder, changes in companies:
        own[id(holder)] = start = _own_start(holder, changes, as_of)
        if start is not None and len(changes) > 1:
            holder["first_date"] = max(d for d in (holder["first_date"], start) if d is not None)
    # Earlier symbols are linked only once every holder starts at its own symbol: a
    # company that renamed into a symbol must not seem to hold it from its IPO while
    # another company's earlier window on that symbol is checked.
    added: list[dict] = []
    for holder, changes in companies:
        for start, symbol in changes:
            if symbol == holder["ticker"] and start == own[id(holder)]:
                continue  # the listing itself; an earlier window under its symbol is history
            later = [day for day, _ in changes if day > start]
            if not later or sum(1 for day, _ in changes if day == start) > 1:
                report.skipped_events.append(
                    f"{symbol} -> {holder['ticker']} on {start}: no single later symbol"
                )
                continue
            window = (start, min(later) - dt.timedelta(days=1))
            window = _clear_of_others(rows, symbol, window, holder, report)
            if window is None:
                continue
            if _link_existing(rows, symbol, window, holder):
                report.renamed.append((symbol, holder["ticker"]))
                continue
            added.append(
                dict(
                    holder,
                    ticker=symbol,
                    active=False,
                    list_date=None,
                    delisted_utc=None,
                    market_cap=None,
                    first_date=window[0],
                    last_date=window[1],
                    link=LINK_EVENT,
                    _renamed_to=holder["ticker"],
                )
            )
    kept = _unclaimed_by_others(added, report)
    report.renamed.extend((row["ticker"], row.pop("_renamed_to")) for row in kept)
    return pl.DataFrame(rows + kept, schema=table.schema)


def _listings_by_events_id(rows: list[dict]) -> dict[str, list[dict]]:
    """The listings whose ticker events were asked, by the id asked (`_events_id`)."""
    found: dict[str, list[dict]] = {}
    for row in rows:
        key = _events_id(row)
        if key is not None:
            found.setdefault(key, []).append(row)
    return found


def _holder(candidates: list[dict], answer: pl.DataFrame) -> dict:
    """Of one company's listings the lists hold (asked by one FIGI), the one its events are
    linked to: the active one, else the one under the symbol it took last; the others are
    linked to it as symbols the lists already hold."""
    taken = {symbol: day for day, symbol in answer.sort("date").select("date", "symbol").iter_rows()}
    return max(candidates, key=lambda row: (bool(row["active"]), taken.get(row["ticker"], dt.date.min)))


def _own_start(holder: dict, changes: list[tuple[dt.date, str]], as_of: dt.date | None) -> dt.date | None:
    """Where the holder's listing starts: the latest start of its symbol on or before its
    last day (its delisting, else `as_of`), not any later one (a company that returned to
    an earlier symbol held it before too, and that window is its history); the latest of
    all when none is (the events and the lists disagree). None: its symbol never starts."""
    starts = [day for day, symbol in changes if symbol == holder["ticker"]]
    last = _delisted_day(holder["delisted_utc"]) or as_of
    held = [day for day in starts if last is None or day <= last]
    return max(held or starts, default=None)


# (symbol, first day, the listing's row): where a listing of a symbol starts, and whose it is
Start = tuple[str, dt.date, dict]


def _placed_changes(
    answers: list[tuple[dict, pl.DataFrame]], rows: list[dict], report: UniverseReport
) -> list[tuple[dict, list[tuple[dt.date, str]]]]:
    """Each company's changes (`_placed_by_trading`), placed knowing where the other
    companies' listings of each symbol start: an old symbol's bars from another company's
    start on it are that company's, not the renamed one's (the ETF that gave up META the
    day Facebook took it). A start the trading moves may move another company's change
    (renames into each other's symbols), so the placing is repeated until the starts
    settle; the last round's lines are reported."""
    with_events = {id(holder) for holder, _ in answers}
    listed = [
        (row["ticker"], first, row)
        for row in rows
        if id(row) not in with_events and (first := _first_day(row)) is not None
    ]
    events: list[Start] | None = None
    for _ in range(PLACING_ROUNDS):
        said = UniverseReport()
        starts = listed + (events or [])
        placed = [
            (holder, _placed_by_trading(answer, said, _starts_of_others(starts, holder)))
            for holder, answer in answers
        ]
        now = [(symbol, day, holder) for holder, changes in placed for day, symbol in changes]
        if now == events:
            break
        events = now
    report.placed_by_trading.extend(said.placed_by_trading)
    report.unconfirmed_changes.extend(said.unconfirmed_changes)
    return placed


def _starts_of_others(starts: list[Start], holder: dict) -> dict[str, list[dt.date]]:
    """Per symbol, the days other companies' listings of it start."""
    others: dict[str, list[dt.date]] = {}
    for symbol, day, row in starts:
        if not _same_company(row, holder):
            others.setdefault(symbol, []).append(day)
    return others


def _same_company(row: dict, holder: dict) -> bool:
    """Known to be the holder's company: its row, its security, its FIGI or its CIK."""
    if row is holder or (row["security_id"] and row["security_id"] == holder["security_id"]):
        return True
    return any(row.get(column) and row[column] == holder.get(column) for column in ("composite_figi", "cik"))


def _placed_by_trading(
    answer: pl.DataFrame, report: UniverseReport, others: dict[str, list[dt.date]]
) -> list[tuple[dt.date, str]]:
    """A company's (date, symbol) changes, oldest first, each change from one symbol to the
    next dated where the trading shows it (`trading_boundary`), else at its event's date
    and reported as unconfirmed. The dates stay in order (the windows never overlap).
    `others`: per symbol, the days other companies' listings of it start."""
    rows = answer.unique(["date", "symbol"], maintain_order=True).sort("date").to_dicts()
    per_day = Counter(row["date"] for row in rows)
    changes: list[tuple[dt.date, str]] = []
    for i, row in enumerate(rows):
        day, symbol = row["date"], row["symbol"]
        before = rows[i - 1] if i else None
        if before is None or per_day[day] > 1 or per_day[before["date"]] > 1:
            changes.append((day, symbol))  # the first symbol, or an ambiguous day (reported later)
            continue
        previous = before["symbol"]
        if row.get("previous_symbol") != previous:
            boundary, why = None, "its trading was not read (events fetched by an earlier version)"
        elif row.get("previous_bars") is None or row.get("bars") is None:
            boundary, why = None, f"its trading could not be read: {row.get('trading_unread') or 'no answer'}"
        else:
            taken = _taken(others.get(previous, []), changes[-1][0], day)
            boundary, why = trading_boundary(day, previous, symbol, row["previous_bars"], row["bars"], taken)
        following = rows[i + 1]["date"] if i + 1 < len(rows) else None
        if boundary is not None and (
            boundary <= changes[-1][0] or (following is not None and boundary >= following)
        ):
            boundary, why = None, f"the trading puts it on {boundary}, beyond the company's other changes"
        if boundary is None:
            report.unconfirmed_changes.append(
                f"{previous} -> {symbol} on {day} (the event's date, kept): {why}; bars of the days "
                "around it may belong to no listing (audit reports them)"
            )
            changes.append((day, symbol))
            continue
        if boundary != day:
            taker = f"; {why}" if why else ""
            report.placed_by_trading.append(
                f"{previous} -> {symbol}: the ticker event says {day}, the trading {boundary} "
                f"({previous} last traded {_last_before(row['previous_bars'], boundary)}, {symbol} "
                f"from {_first_after(row['bars'], boundary)}{taker}): the windows meet there"
            )
        changes.append((boundary, symbol))
    return changes


def _taken(starts: list[dt.date], since: dt.date, day: dt.date) -> dt.date | None:
    """The first day another company's listing of a symbol starts, after the renamed company
    took it (`since`) and within `SLACK` of the change away from it (`day`): that company
    took the symbol at once."""
    return min((d for d in starts if d > since and abs(d - day) <= SLACK), default=None)


def trading_boundary(
    day: dt.date,
    previous: str,
    symbol: str,
    previous_bars: list[dict],
    bars: list[dict],
    taken: dt.date | None = None,
) -> tuple[dt.date | None, str]:
    """Where a change from `previous` to `symbol` whose event says `day` happened, read from
    both symbols' day bars within `SLACK` of `day` ({day, open, close} each): the first
    session after `previous`'s last bar of the company's own (`_own_bars`: not those of
    another company that took `previous` at once, from `taken` when known), when `symbol`
    traded then and at a price that continues `previous`'s (the same company's: not a
    former holder of `symbol` still trading), and `symbol` did not trade between `day`
    and that last bar. Else (None, why not). With a date, the reason is empty or says
    which of `previous`'s bars were another company's."""
    own, cut = _own_bars(previous_bars, bars, taken)
    if not own:
        after = f" before another company's start under it ({taken})" if taken else ""
        return None, f"{previous} did not trade within {SLACK.days} days of it{after}"
    last = own[-1]
    later = sorted((bar for bar in bars if bar["day"] > last["day"]), key=lambda bar: bar["day"])
    ended = f"{previous}'s last bar ({last['day']})"
    if not later:
        return None, f"{symbol} did not trade after {ended} within {SLACK.days} days"
    if any(day <= bar["day"] <= last["day"] for bar in bars):
        return None, f"{previous} and {symbol} both traded between {day} and {last['day']}"
    first = later[0]
    if not _continues(last["close"], first["open"]):
        return None, (
            f"{symbol}'s first price after {previous}'s last bar ({first['open']} on {first['day']}) "
            f"does not continue {previous}'s ({last['close']} on {last['day']})"
        )
    following = trading_days(last["day"] + dt.timedelta(days=1), last["day"] + dt.timedelta(days=14))
    taker = f"{previous}'s bars from {cut} are another company's" if cut is not None else ""
    return min([first["day"], *following[:1]]), taker


def _own_bars(
    previous_bars: list[dict], bars: list[dict], taken: dt.date | None
) -> tuple[list[dict], dt.date | None]:
    """The renamed company's bars under its old symbol, oldest first, and the day from
    which the rest are another company's (None: all its own). Another company's: those
    from `taken`, and those from a session on which the old symbol's price breaks off
    while the new symbol opens, its first session since, continuing it (a company that
    took the old symbol at once, though the universe does not hold it)."""
    own = sorted(
        (bar for bar in previous_bars if taken is None or bar["day"] < taken), key=lambda bar: bar["day"]
    )
    cut = taken if len(own) < len(previous_bars) else None
    for i in range(1, len(own)):
        before, bar = own[i - 1], own[i]
        if _continues(before["close"], bar["open"]):
            continue
        handover = min((b for b in bars if b["day"] > before["day"]), key=lambda b: b["day"], default=None)
        if handover and handover["day"] == bar["day"] and _continues(before["close"], handover["open"]):
            return own[:i], bar["day"]
    return own, cut


def _continues(close: float | None, open_: float | None) -> bool:
    """A first open within a factor of `PRICE_FACTOR` of the last close."""
    if not close or not open_ or close <= 0 or open_ <= 0:
        return False
    return 1 / PRICE_FACTOR <= open_ / close <= PRICE_FACTOR


def _last_before(bars: list[dict], boundary: dt.date) -> dt.date | None:
    return max((bar["day"] for bar in bars if bar["day"] < boundary), default=None)


def _first_after(bars: list[dict], boundary: dt.date) -> dt.date | None:
    return min((bar["day"] for bar in bars if bar["day"] >= boundary), default=None)


def _unclaimed_by_others(added: list[dict], report: UniverseReport) -> list[dict]:
    """The earlier symbols taken from events, less those two companies' events claim for
    overlapping days (the provider's answers disagree): which one held it is not ours to
    guess, whatever order the companies came in, so neither is added and both are
    reported. An overlap within `SLACK` is an event's date a few days off, not a
    disagreement: the windows meet where the later one starts (`_meet_within_slack`)."""
    by_symbol: dict[str, list[dict]] = {}
    for row in added:
        by_symbol.setdefault(row["ticker"], []).append(row)
    kept = []
    for rows in by_symbol.values():
        _meet_within_slack(rows, report)
        for row in rows:
            clash = next(
                (
                    other
                    for other in rows
                    if other["_renamed_to"] != row["_renamed_to"]  # another company's
                    and other["first_date"] <= row["last_date"]
                    and row["first_date"] <= other["last_date"]
                ),
                None,
            )
            if clash is None:
                kept.append(row)
            else:
                report.skipped_events.append(
                    f"{row['ticker']} ({row['first_date']} to {row['last_date']}) -> {row['_renamed_to']}: "
                    f"another company's events ({clash['_renamed_to']}) claim that symbol then too"
                )
    return kept


def _meet_within_slack(rows: list[dict], report: UniverseReport) -> None:
    """One symbol's windows from two companies' events that overlap by no more than `SLACK`,
    one starting first: the earlier ends the day before the later starts (reported)."""
    for row in sorted(rows, key=lambda r: r["first_date"]):
        for other in rows:
            if other["_renamed_to"] == row["_renamed_to"]:
                continue
            start, end = other["first_date"], min(row["last_date"], other["last_date"])
            if row["first_date"] < start <= row["last_date"] and end - start < SLACK:
                _shorten(row, start, f"{other['_renamed_to']}'s events", report)


def _clear_of_others(
    rows: list[dict], symbol: str, window: tuple[dt.date, dt.date], holder: dict, report: UniverseReport
) -> tuple[dt.date, dt.date] | None:
    """The holder's window of its earlier `symbol`, ended the day before another company's
    listing of it starts inside the window (reported): the days before are the holder's
    history, never dropped because its change away was dated late. None (reported): the
    other company's listing holds the window's first day, or has no first day."""
    clash = [row for row in _listed_over(rows, symbol, window, holder) if not _may_be_holders(row, holder)]
    if not clash:
        return window
    starts = [_first_day(row) for row in clash]
    if any(start is None or start <= window[0] for start in starts):
        report.skipped_events.append(
            f"{symbol} ({window[0]} to {window[1]}) -> {holder['ticker']}: the lists give that "
            "symbol to another company then"
        )
        return None
    taken = min(start for start in starts if start is not None)
    row = {"ticker": symbol, "first_date": window[0], "last_date": window[1], "_renamed_to": holder["ticker"]}
    _shorten(row, taken, "listing", report)
    return window[0], row["last_date"]


def _shorten(row: dict, taken: dt.date, whose: str, report: UniverseReport) -> None:
    """End the window of `row` (an earlier symbol, renamed to `_renamed_to`) the day
    before another company's start on its symbol, `taken`."""
    last = taken - dt.timedelta(days=1)
    report.shortened.append(
        f"{row['ticker']} ({row['first_date']} to {row['last_date']}) -> {row['_renamed_to']}: ends "
        f"{last}, the day before another company's {row['ticker']} starts ({taken}, by the {whose})"
    )
    row["last_date"] = last


def _other_company(holder: dict, answer: pl.DataFrame) -> str | None:
    """The company an events answer names when it is not the holder's (None: it is, or it
    does not say)."""
    for column in ("composite_figi", "cik"):
        said = {value for value in answer.get_column(column).to_list() if value}
        if holder.get(column) and said and holder[column] not in said:
            return f"{column} {', '.join(sorted(said))}"
    return None


def _later_holder(holder: dict, answer: pl.DataFrame, as_of: dt.date | None) -> str | None:
    """The company an events answer is about when it is not the holder's, told by its
    dates: an answer no FIGI or CIK ties to the holder (asked by ticker, it is the symbol's
    holder *now*) that starts the holder's symbol only after the holder's last day (its
    delisting, else the build date; `SLACK` for an event's date a few days late) is a later
    holder's. None: it is the holder's, or nothing says otherwise."""
    if any(
        holder.get(column) and holder[column] in answer.get_column(column).to_list()
        for column in ("composite_figi", "cik")
    ):
        return None
    last = _delisted_day(holder["delisted_utc"]) or as_of
    starts = [
        day for day, symbol in answer.select("date", "symbol").iter_rows() if symbol == holder["ticker"]
    ]
    if last is None or not starts or min(starts) <= last + SLACK:
        return None
    return (
        f"the company that took {holder['ticker']} on {min(starts)}, after this listing's last day ({last})"
    )


def _listed_over(rows: list[dict], symbol: str, window: tuple[dt.date, dt.date], holder: dict) -> list[dict]:
    """The listed rows of `symbol`, other than the holder, whose windows overlap `window`."""
    found = []
    for row in rows:
        if row["ticker"] != symbol or row is holder:
            continue
        first = _first_day(row)
        last = _delisted_day(row["delisted_utc"]) or row["last_date"]
        if (first is None or first <= window[1]) and (last is None or last >= window[0]):
            found.append(row)
    return found


def _may_be_holders(row: dict, holder: dict) -> bool:
    """Not known to be another company's: no FIGI or CIK both rows know differs."""
    return not any(
        row.get(column) and holder.get(column) and row[column] != holder[column]
        for column in ("composite_figi", "cik")
    )


def _link_existing(rows: list[dict], symbol: str, window: tuple[dt.date, dt.date], holder: dict) -> bool:
    """Link the listed rows of `symbol` that overlap `window` (none another company's, by
    `_clear_of_others`) to the holder's security. False: none there."""
    found = _listed_over(rows, symbol, window, holder)
    for row in found:
        row["security_id"], row["link"] = holder["security_id"], LINK_EVENT
        row["first_date"] = max(d for d in (row["first_date"], window[0]) if d is not None)
        row["last_date"] = min(d for d in (row["last_date"], window[1]) if d is not None)
    return bool(found)


def _first_day(row: dict) -> dt.date | None:
    return max((d for d in (row["list_date"], row["first_date"]) if d is not None), default=None)


def _delisted_day(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _with_security_ids(table: pl.DataFrame) -> pl.DataFrame:
    """Each listing's security_id and how it was made (`polyledger.listings`)."""
    listings = [
        Listing(
            row["ticker"],
            name=row["name"],
            cik=row["cik"],
            composite_figi=row["composite_figi"],
            share_class_figi=row["share_class_figi"],
            first_day=max((d for d in (row["list_date"], row["first_date"]) if d is not None), default=None),
            last_day=row["last_date"],
        )
        for row in table.iter_rows(named=True)
    ]
    assigned = assign_security_ids(listings)
    return table.with_columns(
        pl.Series("security_id", [item.security_id for item in assigned], dtype=pl.String),
        pl.Series("link", [item.link for item in assigned], dtype=pl.String),
    )


def _failed(ledger: Ledger, period: str) -> list[tuple[str, str]]:
    rows = queries.failed_build_units(ledger, period)
    return [(row.ticker, f"{row.c}: {row.last_error}") for row in rows]
