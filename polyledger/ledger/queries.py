"""Named reads of the ledger for the services (audit, report, quality, consistency, the
notebook API, universe building): each one query, returning rows (attribute access by
column name) or plain values. The SQL lives here so no module outside the ledger writes any."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from polyledger.ledger.connection import LedgerConnection
from polyledger.ledger.listing_table import recorded_listings
from polyledger.ledger.records import in_list, in_lists, iso
from polyledger.ledger.states import UnitState
from polyledger.listings import EventOwners, Listing
from polyledger.periods import stored_date

_STATES = tuple(state.value for state in UnitState)

# how late, after its date, the API may enter a split or a dividend: `sync` lists records
# dated this far back, and a split first recorded late makes units fetched before it stale
LATE_ENTRY_DAYS = 31
# the last date a split's late entry may still have changed a fetch, per dialect (text)
_LATE_UNTIL = {
    "sqlite": f"date(s.execution_date, '+{LATE_ENTRY_DAYS} days')",
    "postgresql": f"to_char(s.execution_date::date + {LATE_ENTRY_DAYS}, 'YYYY-MM-DD')",
}
# a fetch counts as before a late split was known when it came this long before the split
# was first recorded: the bars and the splits of one run (or one nightly sync) are fetched
# minutes apart, in any order, while a late entry is found a night or more later
SEEN_MARGIN_HOURS = 12
_SEEN_BEFORE = {
    "sqlite": f"strftime('%Y-%m-%dT%H:%M:%fZ', s.recorded_at, '-{SEEN_MARGIN_HOURS} hours')",
    "postgresql": (
        f"to_char((s.recorded_at::timestamptz - interval '{SEEN_MARGIN_HOURS} hours') AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')'
    ),
}

# Adjusted bar units whose prices predate a split that took effect after they were fetched:
# the API has since rebased those prices, so they no longer join newer units. A split
# takes effect at the open of its execution date (an ET session date); fetched_at is UTC
# text, so a fetch counts as after the split from 14:30 UTC that day (09:30 EST, 10:30
# EDT: up to an hour late in summer, a refetch more, never a mix of bases missed; the
# UTC date alone counted a fetch at 20:00 ET the evening before as after it). So does a
# unit fetched after that but well before the split was first recorded (SEEN_MARGIN_HOURS),
# within LATE_ENTRY_DAYS of it: the API may not have known of it yet. Raw (--unadjusted) units never go stale.
# A split announced for a later day stales nothing before its open (`:now`, by the ledger's
# clock): until then the API serves every price on the old basis, and a fetch again could
# not cure it (`audit` exiting 1 night after night on an alarm nobody can clear).
# Timestamps are fixed-width ISO text, compared as text.
OPEN_UTC = "14:30"  # a fetch at or after it (UTC) on an event's day has seen the event
ADJUSTED_BARS = "('minute', 'day')"  # the bar datasets asked adjusted: what a split rebases
_STALE_ADJUSTED = (
    # CROSS JOIN keeps SQLite's join order: the few splits first, then each one's units by index
    # (PostgreSQL plans it as the inner join it is). Portable: no ON after CROSS JOIN, and
    # `adjusted` is a boolean there (u.adjusted = 1 would not compare)
    "{attributed}SELECT u.id, u.dataset, u.ticker, u.period, max(s.execution_date) AS execution_date "
    "FROM {splits} s CROSS JOIN units u "
    f"WHERE u.dataset IN {ADJUSTED_BARS} AND u.ticker = s.ticker AND u.state = 'done' AND u.adjusted "
    "{inside}"
    f"AND u.period_start < s.execution_date AND s.execution_date || 'T{OPEN_UTC}:00' <= :now "
    f"AND (u.fetched_at < s.execution_date || 'T{OPEN_UTC}:00' "
    "OR (u.fetched_at < {seen_before} AND u.fetched_at < {late_until})) "
    "GROUP BY u.id"
)


# A split stales the units of its own symbol (whoever's bars a unit holds: a reused symbol's
# month may hold two companies'), and those of the symbol the security it belongs to
# (`EventOwners`, as adjusting on read) traded under on its date: one made before a rename
# and listed under the later symbol only (polygon-io/issues#253) rebases the earlier
# symbol's prices (the API adjusts the listing that split); one listed under the symbol
# left, dated on the new one's first session (a reverse split and a rename on one day),
# stales the symbol left only: the new one holds no bar before it. Those are few (renamed
# companies' splits listed under another symbol, though every such split of the market's),
# bound as one JSON array of (split's symbol, date, the symbol then, that listing's window)
# rows, never a variable each (past any database's bound-variable limit), added to the
# splits, each over its window.
_ATTRIBUTED = {
    "sqlite": "WITH attributed (split_ticker, execution_date, ticker, first_day, last_day) AS ("
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(:attributed)) ",
    "postgresql": "WITH attributed (split_ticker, execution_date, ticker, first_day, last_day) AS ("
    "SELECT a->>0, a->>1, a->>2, a->>3, a->>4 FROM jsonb_array_elements(CAST(:attributed AS jsonb)) AS a) ",
}
_SPLITS_ATTRIBUTED = (
    "(SELECT ticker, execution_date, recorded_at, NULL AS first_day, NULL AS last_day FROM splits "
    "UNION ALL SELECT a.ticker, x.execution_date, x.recorded_at, a.first_day, a.last_day "
    "FROM splits x JOIN attributed a ON a.split_ticker = x.ticker AND a.execution_date = x.execution_date)"
)
_INSIDE_WINDOW = (
    "AND (s.first_day IS NULL OR u.period_end >= s.first_day) "
    "AND (s.last_day IS NULL OR u.period_start <= s.last_day) "
)


def stale_adjusted_sql(dialect: str, attributed: bool = False) -> str:
    """The query of stale adjusted units (id, dataset, ticker, period, execution_date) in
    `dialect` ("sqlite", "postgresql"), as of `:now` (`stale_as_of`); with `attributed`,
    also of the splits matched to another symbol of their security, bound as the JSON
    array `:attributed` (`stale_adjusted_query`)."""
    parts = {"attributed": "", "splits": "splits", "inside": ""}
    if attributed:
        parts = {"attributed": _ATTRIBUTED[dialect], "splits": _SPLITS_ATTRIBUTED, "inside": _INSIDE_WINDOW}
    return _STALE_ADJUSTED.format(late_until=_LATE_UNTIL[dialect], seen_before=_SEEN_BEFORE[dialect], **parts)


def stale_adjusted_query(ledger: LedgerConnection) -> tuple[str, dict[str, Any]]:
    """The query of stale adjusted units (`stale_adjusted_sql`), each split matched to the
    units of its own symbol and of its security's other symbols, and its parameters."""
    pairs = splits_of_other_symbols(ledger)
    params: dict[str, Any] = stale_as_of(ledger)
    if pairs:
        params["attributed"] = json.dumps(pairs)
    return stale_adjusted_sql(ledger.dialect, bool(pairs)), params


def splits_of_other_symbols(ledger: LedgerConnection) -> list[tuple[str, str, str, str | None, str | None]]:
    """(split's symbol, execution date, the symbol its security traded under then, that
    listing's first and last day) of each recorded split listed under another symbol than
    the one its security (`EventOwners`) traded under on its date, when that listing holds
    days before the date: that symbol's units before it are stale by it. A listing that
    starts on the date (a reverse split and a rename on one day, listed under the symbol
    left) holds no bar the split rebases: its month's unit is not stale, and the symbol
    left is the split's own. ISO texts, as the tables hold them."""
    listings = recorded_listings(ledger)
    if not listings:
        return []
    owners = EventOwners(listings)
    out = []
    for split in ledger.query("SELECT DISTINCT ticker, execution_date FROM splits"):
        day = stored_date(split.execution_date)
        security = owners.security_on(split.ticker, day)
        for then in owners.listings_of(security) if security is not None else []:
            if then.ticker != split.ticker and then.covers(day) and _began_before(then, day):
                window = (then.first_day, then.last_day)
                out.append((split.ticker, str(split.execution_date), then.ticker, *map(_iso_or_none, window)))
    return out


def _began_before(listing: Listing, day: dt.date) -> bool:
    return listing.first_day is None or listing.first_day < day


def _iso_or_none(day: dt.date | None) -> str | None:
    return day.isoformat() if day is not None else None


def stale_as_of(ledger: LedgerConnection) -> dict[str, str]:
    """The parameters of `stale_adjusted_sql`: now, by the ledger's clock (the one its
    fetched_at and recorded_at are stamped by)."""
    return {"now": iso(ledger.clock())}


# no attempt counted, none charged a request, no error or fetch left behind (a unit queued
# again by retry or repair has a fresh budget but keeps those)
NEVER_ATTEMPTED = (
    "attempts = 0 AND requests = 0 AND fetched_at IS NULL AND last_error IS NULL AND error_class IS NULL"
)

Rows = list[Any]  # SQLAlchemy rows: row.column


# --- audit ----------------------------------------------------------------------------


def units_by_state(ledger: LedgerConnection) -> Rows:
    """(dataset, state, units, rows) per dataset and state, in that order; rows of done
    units only, as the audit counts them (a unit queued again keeps the count of its last
    fetch until it is fetched anew: shown beside `pending` it read as bars held there)."""
    return ledger.query(
        "SELECT dataset, state, count(*) AS units, "
        "coalesce(sum(CASE WHEN state = 'done' THEN rows ELSE 0 END), 0) AS rows "
        "FROM units GROUP BY dataset, state ORDER BY dataset, state"
    )


def units_by_year(ledger: LedgerConnection) -> Rows:
    """One pass, per dataset and year (the first four characters of every period): units,
    rows of done units, never-attempted units, and one column of units per state."""
    return ledger.query(
        # rows of done units only: a unit queued again keeps its old count until refetched
        "SELECT dataset, substr(period, 1, 4) AS year, count(*) AS units, "
        "coalesce(sum(CASE WHEN state = 'done' THEN rows END), 0) AS rows, "
        # never tried: a unit queued again (retry, repair) has a fresh budget, but keeps its
        # last error or fetch time, so it does not count as new
        f"count(*) FILTER (WHERE {NEVER_ATTEMPTED}) AS untried, "
        + ", ".join(f"count(*) FILTER (WHERE state = '{state}') AS {state}" for state in _STATES)
        + " FROM units GROUP BY dataset, substr(period, 1, 4) ORDER BY dataset, year"
    )


# the day after a unit's last one, as ISO text, and the days from one ISO date to another
# (both counted), per dialect
_DAY_AFTER = {
    "sqlite": "date(previous_end, '+1 day')",
    "postgresql": "to_char(previous_end::date + 1, 'YYYY-MM-DD')",
}
_DAYS = {
    "sqlite": "julianday({last}) - julianday({first}) + 1",
    "postgresql": "({last})::date - ({first})::date + 1",
}


def unit_gaps(ledger: LedgerConnection, datasets: Sequence[str]) -> Rows:
    """(dataset, ticker, previous_end, period_start) wherever a ticker's unit does not
    start the day after its previous unit ends: the calendar days between are in no unit.
    One pass over the datasets' units finds the tickers whose units cover fewer days than
    their first to their last (units never overlap); only theirs are then read in order."""
    if not datasets:
        return []
    test, params = in_list("dataset", datasets, "d")
    days = _DAYS[ledger.dialect]
    holed: dict[str, list[str]] = {}
    for row in ledger.query(
        f"SELECT dataset, ticker FROM units WHERE {test} GROUP BY dataset, ticker "
        f"HAVING sum({days.format(first='period_start', last='period_end')}) "
        f"< {days.format(first='min(period_start)', last='max(period_end)')}",
        params,
    ):
        holed.setdefault(row.dataset, []).append(row.ticker)
    gaps: Rows = []
    for dataset, tickers in holed.items():
        for names, more in in_lists("ticker", tickers, "t"):
            gaps += ledger.query(
                "SELECT dataset, ticker, previous_end, period_start FROM (SELECT dataset, ticker, "
                "period_start, lag(period_end) OVER (PARTITION BY ticker ORDER BY period) AS previous_end "
                f"FROM units WHERE dataset = :d AND {names}) AS ordered "
                f"WHERE previous_end IS NOT NULL AND period_start > {_DAY_AFTER[ledger.dialect]} "
                "ORDER BY ticker, period_start",
                {"d": dataset, **more},
            )
    return gaps


def unwidened_units(ledger: LedgerConnection) -> Rows:
    """(dataset, ticker, period_start, period_end, first_day, last_day) of every unit a plan
    asked to widen to first_day..last_day while a run held it (`unwidened`) and that still
    does not cover it: the days between are in no unit. Usually no row (a small table)."""
    return ledger.query(
        "SELECT u.dataset, u.ticker, u.period_start, u.period_end, w.first_day, w.last_day "
        "FROM unwidened w JOIN units u ON u.id = w.unit_id "
        "WHERE w.first_day < u.period_start OR w.last_day > u.period_end "
        "ORDER BY u.dataset, u.ticker, u.period_start"
    )


def stale_adjusted(ledger: LedgerConnection) -> Rows:
    """(dataset, ticker, period, execution_date) of every stale adjusted unit (`stale_adjusted_sql`)."""
    stale, params = stale_adjusted_query(ledger)
    return ledger.query(
        f"SELECT dataset, ticker, period, execution_date FROM ({stale}) AS stale ORDER BY 1, 2, 3", params
    )


def failed_units(ledger: LedgerConnection, dataset: str) -> Rows:
    """(error_class, ticker, period, last_error) of the dataset's failed units, by class."""
    return ledger.query(
        "SELECT coalesce(error_class, 'unknown') AS error_class, ticker, period, last_error "
        "FROM units WHERE dataset = :d AND state = 'failed' ORDER BY error_class, ticker, period_start",
        {"d": dataset},
    )


def ticker_outcomes(ledger: LedgerConnection, dataset: str) -> Rows:
    """(ticker, done units, empty_confirmed units) per ticker of the dataset."""
    return ledger.query(
        "SELECT ticker, sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END) AS done, "
        "sum(CASE WHEN state = 'empty_confirmed' THEN 1 ELSE 0 END) AS empty "
        "FROM units WHERE dataset = :d GROUP BY ticker ORDER BY ticker",
        {"d": dataset},
    )


# --- report ---------------------------------------------------------------------------


def units_by_period(ledger: LedgerConnection) -> Rows:
    """(dataset, period, state, units, rows): one scan of the ledger giving a few hundred rows
    (periods are months or years)."""
    # NOT INDEXED (SQLite): a plain table scan beats walking the unique index (a third faster at 1M units)
    not_indexed = " NOT INDEXED" if ledger.dialect == "sqlite" else ""
    return ledger.query(
        "SELECT dataset, period, state, count(*) AS units, coalesce(sum(rows), 0) AS rows "
        f"FROM units{not_indexed} GROUP BY dataset, period, state"
    )


def tickers_per_dataset(ledger: LedgerConnection) -> dict[str, int]:
    """{dataset: distinct tickers}"""
    rows = ledger.query("SELECT dataset, count(DISTINCT ticker) AS n FROM units GROUP BY dataset")
    return {row.dataset: row.n for row in rows}


def stale_per_dataset(ledger: LedgerConnection) -> dict[str, int]:
    """{dataset: stale adjusted units}, datasets with none left out."""
    stale, params = stale_adjusted_query(ledger)
    rows = ledger.query(f"SELECT dataset, count(*) AS n FROM ({stale}) AS stale GROUP BY dataset", params)
    return {row.dataset: row.n for row in rows}


def ticker_year_states(ledger: LedgerConnection, dataset: str) -> Rows:
    """(ticker, year, state, units) of the dataset."""
    return ledger.query(
        "SELECT ticker, substr(period, 1, 4) AS year, state, count(*) AS units FROM units "
        "WHERE dataset = :d GROUP BY ticker, year, state",
        {"d": dataset},
    )


def failure_examples(ledger: LedgerConnection) -> Rows:
    """(dataset, error_class, units, example unit's ticker, period and error), largest first."""
    return ledger.query(
        "SELECT f.dataset, f.error_class, f.units, u.ticker, u.period, u.last_error FROM ("
        "SELECT dataset, coalesce(error_class, 'unknown') AS error_class, count(*) AS units, "
        "min(id) AS example FROM units WHERE state = 'failed' "
        "GROUP BY dataset, coalesce(error_class, 'unknown')) f "
        "JOIN units u ON u.id = f.example ORDER BY f.units DESC, f.dataset, f.error_class"
    )


def quality_flag_counts(ledger: LedgerConnection) -> Rows:
    """(check_name, flags, tickers, checked) per check, most flags first."""
    return ledger.query(
        "SELECT check_name, count(*) AS flags, count(DISTINCT ticker) AS tickers, max(checked_at) AS checked "
        "FROM quality_flags GROUP BY check_name ORDER BY flags DESC, check_name"
    )


def first_quality_flags(ledger: LedgerConnection, limit: int) -> Rows:
    """The first `limit` flags (check_name, dataset, ticker, session_date, detail, value)."""
    return ledger.query(
        # derived findings last: one lost month makes dozens of missing_session flags
        "SELECT check_name, dataset, ticker, session_date, detail, value FROM quality_flags "
        "ORDER BY CASE check_name WHEN 'missing_session' THEN 2 WHEN 'volume_mismatch' THEN 1 ELSE 0 END, "
        "check_name, dataset, ticker, session_date LIMIT :n",
        {"n": limit},
    )


# --- quality --------------------------------------------------------------------------


def done_tickers(ledger: LedgerConnection, datasets: Sequence[str]) -> list[str]:
    """Tickers with a done unit in any of `datasets`, sorted."""
    chosen, params = in_list("dataset", datasets, "d")
    rows = ledger.query(
        f"SELECT DISTINCT ticker FROM units WHERE {chosen} AND state = 'done' ORDER BY ticker",
        params,
    )
    return [row.ticker for row in rows]


def settled_units(ledger: LedgerConnection, dataset: str, ticker: str) -> Rows:
    """(id, period, period_start, period_end, state, file_path, rows, adjusted) of the
    ticker's done and empty_confirmed units, in time order."""
    return ledger.query(
        "SELECT id, period, period_start, period_end, state, file_path, rows, adjusted FROM units "
        "WHERE dataset = :d AND ticker = :t AND state IN ('done', 'empty_confirmed') ORDER BY period_start",
        {"d": dataset, "t": ticker},
    )


def settled_units_between(ledger: LedgerConnection, dataset: str, first: dt.date, last: dt.date) -> Rows:
    """(id, ticker, period_start, period_end, state, file_path) of every ticker's done and
    empty_confirmed units of `dataset` that overlap [first, last], in ticker and time order."""
    return ledger.query(
        "SELECT id, ticker, period_start, period_end, state, file_path FROM units "
        "WHERE dataset = :d AND state IN ('done', 'empty_confirmed') AND period_end >= :first "
        "AND period_start <= :last ORDER BY ticker, period_start",
        {"d": dataset, "first": first.isoformat(), "last": last.isoformat()},
    )


def splits_of(ledger: LedgerConnection, ticker: str) -> Rows:
    """(execution_date, split_from, split_to) of the ticker's usable splits, in date order."""
    return ledger.query(
        "SELECT execution_date, split_from, split_to FROM splits WHERE ticker = :t AND split_from > 0 "
        "AND split_to > 0 ORDER BY execution_date",
        {"t": ticker},
    )


def dropped_duplicates(ledger: LedgerConnection, datasets: Sequence[str]) -> Rows:
    """(id, dataset, ticker, period, duplicates) of done units whose latest successful fetch
    dropped repeated timestamps."""
    chosen, params = in_list("u.dataset", datasets, "d")
    return ledger.query(
        "SELECT u.id, u.dataset, u.ticker, u.period, a.duplicates FROM unit_attempts a "
        "JOIN units u ON u.id = a.unit_id "
        f"WHERE a.duplicates > 0 AND u.state = 'done' AND {chosen} "
        "AND a.id = (SELECT max(b.id) FROM unit_attempts b WHERE b.unit_id = u.id AND b.outcome = 'done') "
        "ORDER BY u.ticker, u.dataset, u.period_start",
        params,
    )


# --- consistency ----------------------------------------------------------------------


def listed_files(ledger: LedgerConnection) -> int:
    """How many files the ledger says exist (one per done unit with bars)."""
    return ledger.query("SELECT count(*) AS n FROM units WHERE state = 'done' AND file_path IS NOT NULL")[0].n


def unit_files(ledger: LedgerConnection) -> Rows:
    """(id, dataset, ticker, period_start, state, rows, file_path, checksum, attempts,
    updated_at) of every unit."""
    return ledger.query(
        "SELECT id, dataset, ticker, period_start, state, rows, file_path, checksum, attempts, updated_at "
        "FROM units"
    )


# --- runs -----------------------------------------------------------------------------


def stored_files(ledger: LedgerConnection, limit: int = 3) -> list[tuple[str, str | None]]:
    """(path, checksum) of a few of the files the ledger says are stored (its data folder
    holds them)."""
    rows = ledger.query(
        "SELECT file_path, checksum FROM units WHERE state = 'done' AND file_path IS NOT NULL "
        "ORDER BY id LIMIT :n",
        {"n": limit},
    )
    return [(row.file_path, row.checksum) for row in rows]


def has_units(ledger: LedgerConnection, datasets: Sequence[str]) -> bool:
    """Whether any unit of `datasets` is planned."""
    test, params = in_list("dataset", datasets, "d")
    return bool(ledger.query(f"SELECT 1 FROM units WHERE {test} LIMIT 1", params))


# --- the notebook API -----------------------------------------------------------------


def units_table(
    ledger: LedgerConnection, dataset: str | None = None, state: str | None = None
) -> tuple[list[str], Rows]:
    """(columns, rows) of the units (all columns but the lease), of one dataset / state if given."""
    where, params = [], {}
    if dataset is not None:
        where.append("dataset = :dataset")
        params["dataset"] = dataset
    if state is not None:
        where.append("state = :state")
        params["state"] = state
    sql = (
        "SELECT id, dataset, ticker, period, period_start, period_end, state, rows, attempts, "
        "error_class, last_error, adjusted, fetched_at, file_path, checksum, bytes, requests "
        f"FROM units{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id"
    )
    with ledger.engine.connect() as connection:
        result = connection.execute(text(sql), params)  # text(): `:name` on every driver
        return list(result.keys()), result.fetchall()


def selected_units(
    ledger: LedgerConnection,
    dataset: str,
    tickers: Sequence[str] | None,
    first: dt.date | None,
    last: dt.date | None,
) -> Rows:
    """(state, file_path, ticker, fetched_at, period_start, period_end) of the dataset's
    units of `tickers` (None: every ticker) that overlap [first, last] (each bound
    optional), in ticker and time order: one query per slice of tickers (`in_lists`)."""
    where, params = ["dataset = :dataset"], {"dataset": dataset}
    if first is not None:
        where.append("period_end >= :first")
        params["first"] = first.isoformat()
    if last is not None:
        where.append("period_start <= :last")
        params["last"] = last.isoformat()
    if tickers is None:
        return _units_where(ledger, where, params)
    # a universe's symbols in one IN list were past the database's bound variables; the
    # slices' rows put back in ticker and time order (code point order: SQLite's, and a
    # C-collated PostgreSQL's). An empty list asks for no ticker: no slice, no row
    found = [
        row
        for test, names in in_lists("ticker", tickers, "t")
        for row in _units_where(ledger, [*where, test], {**params, **names})
    ]
    return sorted(found, key=lambda row: (row.ticker, row.period_start))


def _units_where(ledger: LedgerConnection, where: Sequence[str], params: dict[str, Any]) -> Rows:
    """`selected_units`' rows where every test of `where` holds, in ticker and time order."""
    return ledger.query(
        "SELECT state, file_path, ticker, fetched_at, period_start, period_end FROM units "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY ticker, period_start",
        params,
    )


def tickers_with_units(
    ledger: LedgerConnection, dataset: str | None, tickers: Sequence[str], *, ignore_case: bool = False
) -> set[str]:
    """Which of `tickers` the dataset (None: any) has units of, in any state: on the
    (dataset, ticker, period) index, a query per slice of them (`in_lists`). `ignore_case`:
    the tickers that match one but for case (ASCII), a scan of the units, for the hint of
    a misspelt one."""
    column, names = ("upper(ticker)", [t.upper() for t in tickers]) if ignore_case else ("ticker", tickers)
    return _tickers_in("units", column, names, dataset, ledger)


def flagged_tickers(ledger: LedgerConnection, dataset: str | None, tickers: Sequence[str]) -> set[str]:
    """Which of `tickers` a quality flag of the dataset (None: any) names: a flag of the
    grouped bars names the symbol, its unit is the market's day."""
    return _tickers_in("quality_flags", "ticker", tickers, dataset, ledger)


def _tickers_in(
    table: str, column: str, names: Sequence[str], dataset: str | None, ledger: LedgerConnection
) -> set[str]:
    """The distinct tickers of `table`'s rows (of `dataset`, None: any) whose `column` is
    one of `names`: a universe's worth is asked in slices (`in_lists`)."""
    found: set[str] = set()
    for test, params in in_lists(column, names, "t"):
        where = test if dataset is None else f"dataset = :d AND {test}"
        rows = ledger.query(f"SELECT DISTINCT ticker FROM {table} WHERE {where}", {"d": dataset, **params})
        found.update(row.ticker for row in rows)
    return found


def security_id_since(ledger: LedgerConnection) -> str | None:
    """When bar files started carrying `security_id` (the listings migration): files
    fetched before lack the column."""
    rows = ledger.query("SELECT value FROM settings WHERE key = 'security_id_since'", {})
    return rows[0].value if rows else None


def unattributed_bars(ledger: LedgerConnection) -> Rows:
    """(dataset, ticker, first_day, last_day, bars, units) of bars inside no known listing
    of their symbol, per dataset and symbol, over the units whose file holds them now."""
    return ledger.query(
        "SELECT u.dataset, a.ticker, min(a.first_day) AS first_day, max(a.last_day) AS last_day, "
        "sum(a.bars) AS bars, count(*) AS units FROM unattributed_bars a JOIN units u ON u.id = a.unit_id "
        "WHERE u.state = 'done' GROUP BY u.dataset, a.ticker ORDER BY u.dataset, a.ticker",
        {},
    )


# --- universe building ----------------------------------------------------------------


# a build's units are named by its date: `2024-03-01`, or `2024-03-01@2019-09-30` for the
# details of an earlier listing of a reused symbol, asked as of its last day
_OF_BUILD = "dataset = :d AND (period = :p OR period LIKE :like) AND"


def done_build_files(ledger: LedgerConnection, dataset: str, period: str) -> list[tuple[str, str]]:
    """(file_path, period_end: the date asked) of the build's done units of `dataset`
    (details, ticker_events); `period` names the build."""
    rows = ledger.query(
        f"SELECT file_path, period_end FROM units WHERE {_OF_BUILD} state = 'done'",
        {"d": dataset, "p": period, "like": f"{period}@%"},
    )
    return [(row.file_path, str(row.period_end)[:10]) for row in rows]


def failed_build_units(ledger: LedgerConnection, period: str) -> Rows:
    """(ticker, c: error class, last_error) of the build's failed details and events units."""
    return ledger.query(
        "SELECT ticker, coalesce(error_class, 'unknown') AS c, last_error FROM units "
        "WHERE dataset IN ('details', 'ticker_events') AND (period = :p OR period LIKE :like) "
        "AND state = 'failed' ORDER BY ticker",
        {"p": period, "like": f"{period}@%"},
    )


# --- sync -----------------------------------------------------------------------------


def settled_reference_units(ledger: LedgerConnection, dataset: str) -> Rows:
    """(ticker, state, file_path, fetched_at) of the dataset's done and empty units."""
    return ledger.query(
        "SELECT ticker, state, file_path, fetched_at FROM units "
        "WHERE dataset = :d AND state IN ('done', 'empty_confirmed') ORDER BY ticker",
        {"d": dataset},
    )


def tickers_with_splits_since(ledger: LedgerConnection, since: dt.date) -> set[str]:
    """Tickers whose recorded splits include one dated `since` or later."""
    rows = ledger.query(
        "SELECT DISTINCT ticker FROM splits WHERE execution_date >= :since", {"since": since.isoformat()}
    )
    return {row.ticker for row in rows}
