"""Building a survivorship-bias-free universe of *listings*: active and delisted
tickers, their details, the earlier symbols of renamed companies, filters, and a funnel
saying what each filter kept.

The tickers list is a handful of pages (1,000 names each) and is read again each time.
A symbol reused by another company is in it twice (the delisted listing, the active
one): both are kept, each with its own window and security. The details (one request per
listing) and the ticker events of each active listing (the symbols its company traded
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

    def funnel_text(self) -> str:
        return " -> ".join(f"{step} {count:,}" for step, count in self.funnel)

    def event_lines(self) -> list[tuple[str, list[str]]]:
        """What the ticker events did not settle on their own, by kind: (label, lines)."""
        return [
            ("change of symbol placed by trading", self.placed_by_trading),
            ("change of symbol not confirmed by trading", self.unconfirmed_changes),
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

    table = (
        kept.join(
            _details(run.ledger, run.store, period), on=["ticker", "_asked"], how="left", suffix="_details"
        )
        .with_columns(
            pl.coalesce("delisted_utc", "delisted_utc_details").alias("delisted_utc"),
            pl.lit(None, dtype=pl.Date).alias("first_date"),
            pl.lit(None, dtype=pl.Date).alias("last_date"),
        )
        .drop("_asked", "delisted_utc_details")
    )
    table = _with_security_ids(_bound_reused(table))
    table = _link_renames(table, _events(run.ledger, run.store, period), report)
    if cap_max is not None:
        # a delisted name often has no market cap: dropping it would bring survivorship bias back
        table = table.filter(pl.col("market_cap").is_null() | (pl.col("market_cap") < cap_max))
        report.funnel.append((f"cap < {cap_max:,.0f} (or unknown)", table.height))
    table = table.sort("ticker", pl.col("list_date").fill_null(dt.date.min), nulls_last=False).select(COLUMNS)
    report.reused = sorted(t for t, n in Counter(table.get_column("ticker").to_list()).items() if n > 1)
    table.write_csv(out)
    parquet = out.with_suffix(".parquet")
    table.write_parquet(parquet)
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
    """A details unit per listing and an events unit per active listing. A symbol's first
    listing names its details unit by the build date; another listing of the same symbol
    (a reused one) by the build date and the date asked, and files as of that date."""
    units = []
    seen: set[str] = set()
    for ticker, asked_text, active, figi in kept.select(
        "ticker", "_asked", "active", "composite_figi"
    ).iter_rows():
        asked = dt.date.fromisoformat(asked_text)
        if ticker not in seen:
            # period_start is the build date (names the unit's file); period_end the date asked
            units.append(PlannedUnit(DETAILS.name, ticker, day, asked, period_name=period))
        else:
            name = f"{period}@{asked_text}"
            units.append(PlannedUnit(DETAILS.name, ticker, asked, asked, period_name=name))
        seen.add(ticker)
        if active:
            # by FIGI where known: given a ticker, the endpoint answers for whoever holds it now
            units.append(PlannedUnit(EVENTS.name, figi or ticker, day, day, period_name=period))
    return units


def _details(ledger: Ledger, store: BarStore, period: str) -> pl.DataFrame:
    schema = {
        "ticker": pl.String(),
        "list_date": pl.Date(),
        "market_cap": pl.Float64(),
        "delisted_utc": pl.String(),
        "_asked": pl.String(),
    }
    frames = [
        store.read_parquet(path).with_columns(_asked=pl.lit(asked)).select(list(schema))
        for path, asked in queries.done_build_files(ledger, DETAILS.name, period)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


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


def _link_renames(table: pl.DataFrame, events: pl.DataFrame, report: UniverseReport) -> pl.DataFrame:
    """Each active listing's earlier symbols (its ticker events) become listings of its
    security, from each event's date to the day before the next symbol's; the listing
    itself starts at its own symbol's event (its `list_date` may be the company's IPO,
    when another company held the symbol). A change's date is where the trading around
    it puts it (`_placed_by_trading`). An answer for another company (FIGI or CIK
    differ) is dropped; a symbol the lists already hold for that window is linked, not
    added twice, unless it is another company's; every event left out is reported."""
    rows = table.to_dicts()
    holders = {(row["composite_figi"] or row["ticker"]): row for row in rows if row["active"]}
    companies: list[tuple[dict, list[tuple[dt.date, str]]]] = []
    for (key,), answer in events.sort("date").group_by("ticker", maintain_order=True):
        holder = holders.get(str(key))
        if holder is None:
            continue
        other = _other_company(holder, answer)
        if other:
            report.skipped_events.append(f"{holder['ticker']}: events answered for {other}, not this company")
            continue
        changes = _placed_by_trading(answer, report)
        starts = [day for day, symbol in changes if symbol == holder["ticker"]]
        if starts and len(changes) > 1:
            holder["first_date"] = max(d for d in (holder["first_date"], max(starts)) if d is not None)
        companies.append((holder, changes))
    # Earlier symbols are linked only once every holder starts at its own symbol: a
    # company that renamed into a symbol must not seem to hold it from its IPO while
    # another company's earlier window on that symbol is checked.
    added: list[dict] = []
    for holder, changes in companies:
        for start, symbol in changes:
            if symbol == holder["ticker"]:
                continue
            later = [day for day, _ in changes if day > start]
            if not later or sum(1 for day, _ in changes if day == start) > 1:
                report.skipped_events.append(
                    f"{symbol} -> {holder['ticker']} on {start}: no single later symbol"
                )
                continue
            window = (start, min(later) - dt.timedelta(days=1))
            linked = _link_existing(rows, symbol, window, holder)
            if linked is None:
                report.skipped_events.append(
                    f"{symbol} ({window[0]} to {window[1]}) -> {holder['ticker']}: the lists give that "
                    "symbol to another company then"
                )
                continue
            if linked:
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


def _placed_by_trading(answer: pl.DataFrame, report: UniverseReport) -> list[tuple[dt.date, str]]:
    """A company's (date, symbol) changes, oldest first, each change from one symbol to the
    next dated where the trading shows it (`trading_boundary`), else at its event's date
    and reported as unconfirmed. The dates stay in order (the windows never overlap)."""
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
            boundary, why = trading_boundary(day, previous, symbol, row["previous_bars"], row["bars"])
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
            report.placed_by_trading.append(
                f"{previous} -> {symbol}: the ticker event says {day}, the trading {boundary} "
                f"({previous} last traded {_last_before(row['previous_bars'], boundary)}, {symbol} "
                f"from {_first_after(row['bars'], boundary)}): the windows meet there"
            )
        changes.append((boundary, symbol))
    return changes


def trading_boundary(
    day: dt.date, previous: str, symbol: str, previous_bars: list[dict], bars: list[dict]
) -> tuple[dt.date | None, str]:
    """Where a change from `previous` to `symbol` whose event says `day` happened, read from
    both symbols' day bars within `SLACK` of `day` ({day, open, close} each): the first
    session after `previous`'s last bar, when `symbol` traded then and at a price that
    continues `previous`'s (the same company's: not a former holder of `symbol` still
    trading, nor another company that took `previous` at once), and `symbol` did not
    trade between `day` and that last bar. Else (None, why not)."""
    if not previous_bars:
        return None, f"{previous} did not trade within {SLACK.days} days of it"
    last = max(previous_bars, key=lambda bar: bar["day"])
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
    return min([first["day"], *following[:1]]), ""


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
    reported."""
    by_symbol: dict[str, list[dict]] = {}
    for row in added:
        by_symbol.setdefault(row["ticker"], []).append(row)
    kept = []
    for rows in by_symbol.values():
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


def _other_company(holder: dict, answer: pl.DataFrame) -> str | None:
    """The company an events answer names when it is not the holder's (None: it is, or it
    does not say)."""
    for column in ("composite_figi", "cik"):
        said = {value for value in answer.get_column(column).to_list() if value}
        if holder.get(column) and said and holder[column] not in said:
            return f"{column} {', '.join(sorted(said))}"
    return None


def _link_existing(
    rows: list[dict], symbol: str, window: tuple[dt.date, dt.date], holder: dict
) -> bool | None:
    """Link the listed rows of `symbol` that overlap `window` to the holder's security.
    True: linked; False: none there; None: one of them is another company's."""
    found = []
    for row in rows:
        if row["ticker"] != symbol or row is holder:
            continue
        first = max((d for d in (row["list_date"], row["first_date"]) if d is not None), default=None)
        last = _delisted_day(row["delisted_utc"]) or row["last_date"]
        if (first is None or first <= window[1]) and (last is None or last >= window[0]):
            found.append(row)
    for row in found:
        for column in ("composite_figi", "cik"):
            if row.get(column) and holder.get(column) and row[column] != holder[column]:
                return None
    for row in found:
        row["security_id"], row["link"] = holder["security_id"], LINK_EVENT
        row["first_date"] = max(d for d in (row["first_date"], window[0]) if d is not None)
        row["last_date"] = min(d for d in (row["last_date"], window[1]) if d is not None)
    return bool(found)


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
