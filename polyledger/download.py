"""A download, for notebooks: the ledger and the data folder read together.

    import polyledger
    dl = polyledger.open("ledger.db", "data")
    dl.units()                                        # polars DataFrame, one row per unit
    dl.bars("minute", tickers=["AAPL"], start="2024-01-01", end="2024-03-31").collect()
    dl.bars("grouped_daily", start="2024-03-01", end="2024-03-08").collect()   # every symbol
    dl.listings()                                     # symbols' windows and securities
    dl.bars("minute", security="BBG000BPH459").collect()  # one company across its symbols
    dl.reference("splits").collect()
    dl.bars("day", tickers=["AAPL"], adjust="splits+dividends").collect()  # a raw download, adjusted on read
    dl.dollar_bars(["AAPL"], bars_per_day=50)        # also volume_bars, tick_bars
    dl.audit()

Bars are read only from the files of `done` units the ledger lists (never a folder scan):
a file a crashed run left behind, or a unit being fetched again, is not read.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polyledger import adjust as adjust_module
from polyledger import coverage, datasets, infobars
from polyledger.bars import BAR_SCHEMA
from polyledger.checks.audit import STATES, AuditReport, audit
from polyledger.datasets import MARKET, check_dataset
from polyledger.datasets.flat_days import ROUTES
from polyledger.errors import InputError, some_of, user_stacklevel
from polyledger.ledger import SETTLED, Ledger, UnitState, queries
from polyledger.listings import Listing
from polyledger.periods import ET, iso_date, stored_date
from polyledger.plan import EARLIEST
from polyledger.storage import BarStore
from polyledger.storage.home import check_home

STORED_BAR_SCHEMA = {**BAR_SCHEMA, "timestamp": pl.Datetime("ms", "UTC")}


class Download:
    """A ledger and its data folder. Use as a context manager, or call close()."""

    def __init__(self, ledger: Path | str = "ledger.db", data: Path | str = "data") -> None:
        self.ledger = Ledger(ledger, create=False)
        self.store = BarStore(data)
        try:  # another ledger's folder (or another of this one's): its files would read as this ledger's
            check_home(self.ledger, self.store)
            files = queries.listed_files(self.ledger)
            if files and not self.store.present():  # a typo: say so now, not as a reader's error later
                missing = f"data folder {self.store.location} does not exist"
                raise InputError(f"{missing}, yet the ledger lists {files:,} files in it")
        except InputError:
            self.ledger.close()
            raise

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Download(ledger={self.ledger.name!r}, data={self.store.location!r})"

    def units(self, dataset: str | None = None, state: str | None = None) -> pl.DataFrame:
        """The ledger's units (all columns but the lease), optionally of one dataset / state."""
        if dataset is not None:
            check_dataset(dataset)
        if state is not None and state not in STATES:
            raise InputError(f"unknown state {state!r}: choose one of {', '.join(STATES)}")
        columns, rows = queries.units_table(self.ledger, dataset, state)
        return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None).with_columns(
            pl.col("period_start", "period_end").str.to_date()
        )

    def listings(self, *, tickers: Iterable[str] | None = None, security: str | None = None) -> pl.DataFrame:
        """The ledger's listings: each symbol's windows (first and last session date; null
        = unbounded) and the security each belongs to, with how its id was made (`link`)."""
        tickers = _ticker_list(tickers)
        rows = self.ledger.listings(security_id=security, tickers=tickers)
        return pl.DataFrame(
            [listing.__dict__ for listing in rows],
            schema={
                "ticker": pl.String(),
                "first_day": pl.Date(),
                "last_day": pl.Date(),
                "security_id": pl.String(),
                "link": pl.String(),
                "name": pl.String(),
                "cik": pl.String(),
                "composite_figi": pl.String(),
                "share_class_figi": pl.String(),
            },
        )

    def bars(
        self,
        dataset: str = "minute",
        *,
        tickers: Iterable[str] | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        security: str | None = None,
        adjust: str | None = None,
        as_of: dt.date | str | None = None,
    ) -> pl.LazyFrame:
        """Bars of `done` units, lazily: tickers and [start, end] (US/Eastern session dates,
        inclusive) choose the files from the ledger, then filter the bars. A dataset keyed
        by date (grouped_daily) has every symbol in each unit: its tickers filter the bars.

        `security` (a `security_id`, see `listings()`) follows one company across the
        symbols it traded under, and only its bars: a reused symbol's other company and
        bars inside no known listing (null `security_id`) are left out. By ticker, a
        symbol's bars come as traded, each with its `security_id`.

        `adjust` ("splits" or "splits+dividends"; minute and day bars of a raw download)
        applies the ledger's splits (before each execution date: prices times
        split_from / split_to, volumes divided by it) and cash dividends (before each
        ex-date: prices times 1 - dividend / previous close, the previous close being the
        raw close of the latest session before it in the day or minute bars, the day
        bar's on the same session; dividends with one ex-date summed) as the bars are read,
        per security; nothing is rewritten. `as_of` puts every price on that day's share
        basis (default: today's, as the API's adjusted=true: a split or a dividend
        announced for a later day changes nothing yet). A download fetched
        adjusted is refused. In full: polyledger/adjust.py, docs/research.md.

        A ticker the ledger has no units of in `dataset` (tickers are case-sensitive) is an
        InputError, not an empty frame; for grouped_daily, a ticker none of its fetched
        files holds; so is a `security` none of whose symbols has units of `dataset`;
        `tickers=[]` reads nothing."""
        # the flat-file route's staged days are its working copies, pruned once their months
        # are built: the months are read as `minute` / `day`
        bar_datasets = [name for name in datasets.names(bars=True) if name not in datasets.FLAT_FILE_DATASETS]
        built_from = {days: months for months, days in ROUTES.items()}
        if dataset in built_from:
            raise InputError(
                f"{dataset} holds the flat-file route's staged days, deleted once their months are built: "
                f"read {built_from[dataset]}"
            )
        if dataset not in bar_datasets:
            raise InputError(f"unknown bar dataset {dataset!r}: choose one of {', '.join(bar_datasets)}")
        adjust_module.check_choice(adjust, dataset, as_of)
        basis = _date(as_of, "as_of")
        first, last = _date(start, "start"), _date(end, "end")
        if first is not None and last is not None and first > last:
            raise InputError(f"start {first} is after end {last}")
        tickers = _ticker_list(tickers)
        by_date = datasets.get(dataset).keyed_by == "date"
        if security is not None:
            if by_date:  # the whole market's bars, attributed to no listing: none would match
                raise InputError(f"{dataset} bars carry no security_id: choose them with tickers=")
            symbols = self._check_security(dataset, security, tickers)
            tickers = [t for t in symbols if tickers is None or t in tickers]
        elif tickers:
            self._check_tickers(dataset, tickers, first, last)
        return self._read_bars(dataset, tickers, first, last, security, adjust, basis)

    def _check_security(self, dataset: str, security: str, tickers: Sequence[str] | None = None) -> list[str]:
        """The symbols of `security`, or an InputError: an unknown security_id, tickers it
        never traded as, or (no tickers named) a security none of whose symbols has units
        of `dataset`."""
        symbols = sorted({listing.ticker for listing in self.ledger.listings(security_id=security)})
        if not symbols:
            raise InputError(f"unknown security_id {security!r}: see .listings()")
        strays = [t for t in tickers or () if t not in symbols]
        if strays:  # they would select none of its bars: say so rather than read nothing
            raise InputError(
                f"security {security!r} never traded as {some_of(strays)}: "
                f"its symbols are {', '.join(symbols)}"
            )
        if tickers:  # named: each is checked, as in a read by ticker
            self._check_tickers(dataset, tickers)
        # as a read by ticker, a security none of whose symbols has units of the dataset
        # (none fetched) is an error, not an empty frame read as a company that never traded
        elif tickers is None and not queries.tickers_with_units(self.ledger, dataset, symbols):
            raise InputError(
                f"the ledger has no {dataset} units of security {security!r} (its symbols: "
                f"{', '.join(symbols)}): see .units() and .listings()"
            )
        return symbols

    def _read_bars(
        self,
        dataset: str,
        tickers: Sequence[str] | None,
        first: dt.date | None,
        last: dt.date | None,
        security: str | None = None,
        adjust: str | None = None,
        basis: dt.date | None = None,
    ) -> pl.LazyFrame:
        """bars(), its arguments checked. Adjusting on read reads its day and minute bars
        here: a security's symbols, of which a dataset may have no units (no day bars
        fetched), are not the caller's tickers."""
        by_date = datasets.get(dataset).keyed_by == "date"
        # units keyed by date hold every symbol: all of them, unless the list asks for none
        selected = self._selected(dataset, None if by_date and tickers else tickers, first, last)
        _warn_unsettled(dataset, selected)
        self._warn_unplanned(dataset, None if by_date else tickers, first, last, selected, security)
        if not _files(selected):
            return pl.LazyFrame(schema=STORED_BAR_SCHEMA)
        if adjust is not None:  # before any read: a download fetched adjusted is refused
            # in the order the files are read (the ledger's ticker order)
            read = list(dict.fromkeys(row.ticker for row in selected if row.state == UnitState.DONE))
            adjust_module.refuse_adjusted(self, dataset, read)
        frame = self._scan(selected)
        if security is not None:  # in time order across its symbols, whatever their names
            frame = frame.filter(pl.col("security_id") == security).sort("timestamp")
        if by_date and tickers:
            frame = frame.filter(pl.col("ticker").is_in(list(tickers)))
        if first is not None or last is not None:
            session = pl.col("timestamp").dt.convert_time_zone(str(ET)).dt.date()
            if first is not None:
                frame = frame.filter(session >= first)
            if last is not None:
                frame = frame.filter(session <= last)
        if adjust is not None:  # each security's bars are in time order by now
            frame = adjust_module.adjusted(
                self,
                frame,
                read,
                adjust,
                basis,
                in_time_order=security is not None,
                bars_to=_bars_to(selected, last),
            )
        return frame

    def dollar_bars(
        self,
        tickers: Sequence[str] | str | None = None,
        threshold: float | None = None,
        *,
        bars_per_day: float | None = None,
        window: int = 20,
        securities: Sequence[str] | str | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        adjust: str | None = None,
        keep_partial: bool = False,
    ) -> pl.DataFrame:
        """Dollar bars from minute bars, per security, a ticker (or one of `securities`)
        at a time: a bar closes on the minute its dollars (vwap * volume) reach
        `threshold`, or, with `bars_per_day=K`, the mean daily dollar volume of the
        `window` sessions before divided by K (the first session is warm-up). The last,
        unfinished bar is left out unless `keep_partial`. start/end/adjust choose the
        minute bars as in `bars()`. Definitions: polyledger/infobars.py, docs/research.md."""
        return infobars.build(
            self,
            "dollar",
            tickers,
            securities,
            threshold=threshold,
            bars_per_day=bars_per_day,
            window=window,
            start=start,
            end=end,
            adjust=adjust,
            keep_partial=keep_partial,
        )

    def volume_bars(
        self,
        tickers: Sequence[str] | str | None = None,
        threshold: float | None = None,
        *,
        bars_per_day: float | None = None,
        window: int = 20,
        securities: Sequence[str] | str | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        adjust: str | None = None,
        keep_partial: bool = False,
    ) -> pl.DataFrame:
        """Volume bars (shares), as `dollar_bars`: across a split, read with adjust="splits"."""
        return infobars.build(
            self,
            "volume",
            tickers,
            securities,
            threshold=threshold,
            bars_per_day=bars_per_day,
            window=window,
            start=start,
            end=end,
            adjust=adjust,
            keep_partial=keep_partial,
        )

    def tick_bars(
        self,
        tickers: Sequence[str] | str | None = None,
        threshold: float | None = None,
        *,
        bars_per_day: float | None = None,
        window: int = 20,
        securities: Sequence[str] | str | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        adjust: str | None = None,
        keep_partial: bool = False,
    ) -> pl.DataFrame:
        """Tick bars, on the minute bars' `transactions`, as `dollar_bars`."""
        return infobars.build(
            self,
            "tick",
            tickers,
            securities,
            threshold=threshold,
            bars_per_day=bars_per_day,
            window=window,
            start=start,
            end=end,
            adjust=adjust,
            keep_partial=keep_partial,
        )

    def _scan(self, selected: list[Any]) -> pl.LazyFrame:
        """The selection's files; those written before bar files carried `security_id`
        (a ledger upgraded in place) are read as they would be stored now."""
        since = queries.security_id_since(self.ledger)
        done = [row for row in selected if row.state == UnitState.DONE]
        old, new = [], []
        for row in done:  # fetched before the cutover: written without the column
            legacy = since is not None and row.fetched_at is not None and row.fetched_at < since
            (old if legacy else new).append(row.file_path)
        # the files' `ticker` column is the symbol; a `ticker=` folder name is its path
        # spelling (`ABC_pA` for ABCpA), which a hive read would put in its place
        frames = [self.store.scan_parquet(new, hive_partitioning=False)] if new else []
        if old:
            legacy = self.store.scan_parquet(old, hive_partitioning=False)
            listings = self.ledger.listings(tickers=sorted({row.ticker for row in done}))
            frames.append(_upgraded_on_read(legacy, listings))
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        if old and new:
            # both kinds: back in ticker then time order, as one scan of the selection reads
            # them (adjusting on read and the bar builders walk a ticker's bars in time order;
            # an upgraded ledger's older months are its legacy files)
            frame = frame.sort("ticker", "timestamp", maintain_order=True)
        return frame.select(list(STORED_BAR_SCHEMA))

    def reference(self, dataset: str, *, tickers: Iterable[str] | None = None) -> pl.LazyFrame:
        """Splits, dividends or ticker details of `done` units, lazily; tickers as in bars()."""
        reference = datasets.names(bars=False)
        if dataset not in reference:
            raise InputError(f"unknown reference dataset {dataset!r}: choose one of {', '.join(reference)}")
        tickers = _ticker_list(tickers)
        if tickers:
            self._check_tickers(dataset, tickers)
        return self._read_reference(dataset, tickers)

    def _read_reference(self, dataset: str, tickers: Sequence[str] | None) -> pl.LazyFrame:
        """reference(), its arguments checked (adjusting on read: a security's symbols)."""
        selected = self._selected(dataset, tickers, None, None)
        spec = datasets.get(dataset)
        # one file per date asked (details, ticker_events): each row says which date it is
        # as of, or a ticker's snapshots would read as copies of one another
        snapshots = spec.per_build
        if not _files(selected):
            return pl.LazyFrame(schema={**spec.schema, **({"as_of": pl.Date} if snapshots else {})})
        # the `ticker` column from the files, as above; a file written before a column was
        # added (ticker_events' trading) reads with it null
        options: dict[str, Any] = {
            "hive_partitioning": False,
            "schema": spec.schema,
            "missing_columns": "insert",
            "extra_columns": "ignore",
        }
        if not snapshots:
            return self.store.scan_parquet(_files(selected), **options)
        by_day: dict[dt.date, list[Any]] = {}
        for row in selected:
            by_day.setdefault(stored_date(row.period_start), []).append(row)
        builds = [(day, _files(rows)) for day, rows in sorted(by_day.items())]
        return pl.concat(
            self.store.scan_parquet(files, **options).with_columns(as_of=pl.lit(day, dtype=pl.Date))
            for day, files in builds
            if files
        )

    def audit(self) -> AuditReport:
        """The ledger's audit (`polyledger audit`): completeness per dataset and year."""
        return audit(self.ledger)

    def _selected(
        self, dataset: str, tickers: Sequence[str] | None, first: dt.date | None, last: dt.date | None
    ) -> list[Any]:
        """The selection's units (state, file), in ticker and time order: one query."""
        return queries.selected_units(self.ledger, dataset, tickers, first, last)

    def _warn_unplanned(
        self,
        dataset: str,
        tickers: Sequence[str] | None,
        first: dt.date | None,
        last: dt.date | None,
        selected: list[Any],
        security: str | None,
    ) -> None:
        """A selection over trading days no unit covers (never planned, or planned only in
        part) returns no bars for them, as if nothing traded: say so, naming the holes
        (`coverage.py`: inside the symbol's listing windows only). The asked tickers, or
        those the read returns; an open bound: the ticker's own units (holes between them)."""
        spans: dict[str, list[tuple[dt.date, dt.date]]] = {}
        for row in selected:
            spans.setdefault(row.ticker, []).append(
                (stored_date(row.period_start), stored_date(row.period_end))
            )
        if datasets.get(dataset).keyed_by == "date":
            asked = [MARKET]  # its units hold every symbol: the days are the market's
        else:
            asked = list(spans) if tickers is None else list(dict.fromkeys(tickers))
        floor, ceiling = EARLIEST, coverage.last_plannable_day()
        bounds = {}
        for ticker in asked:
            own = spans.get(ticker, [])
            low = first if first is not None else (own[0][0] if own else None)
            high = last if last is not None else max((end for _, end in own), default=None)
            if low is not None and high is not None and max(low, floor) <= min(high, ceiling):
                bounds[ticker] = (max(low, floor), min(high, ceiling))
        if not bounds:
            return
        windows: dict[str, list[coverage.Window]] = {}
        if asked != [MARKET]:
            listed = self.ledger.listings(security_id=security, tickers=None if tickers is None else asked)
            for listing in listed:
                windows.setdefault(listing.ticker, []).append((listing.first_day, listing.last_day))
        calendar = coverage.TradingCalendar(
            min(low for low, _ in bounds.values()), max(high for _, high in bounds.values())
        )
        found = [
            hole
            for ticker, (low, high) in bounds.items()
            for hole in coverage.holes(
                ticker, coverage.uncovered(spans.get(ticker, []), low, high), windows.get(ticker), calendar
            )
        ]
        if found:
            days = sum(hole.trading_days for hole in found)
            warnings.warn(
                f"{days} trading days in this selection are in no {dataset} unit (never planned, "
                f"or planned only in part), so they read as days without bars: {coverage.describe(found)}; "
                "plan them (`polyledger plan`) or narrow start/end",
                UnplannedDaysWarning,
                stacklevel=user_stacklevel(),
            )

    def _check_tickers(
        self,
        dataset: str,
        tickers: Sequence[str],
        first: dt.date | None = None,
        last: dt.date | None = None,
    ) -> None:
        """An InputError naming the tickers the ledger has no `dataset` units of: read, a
        misspelt or wrongly cased symbol would look like one that never traded. A dataset
        keyed by date has no unit per ticker: the tickers its fetched files hold instead."""
        by_date = datasets.get(dataset).keyed_by == "date"
        if by_date:
            known = self._tickers_in_files(dataset, tickers, first, last)
            if known is None:  # nothing fetched: no ticker can be told apart (the read warns)
                return
        else:
            known = queries.tickers_with_units(self.ledger, dataset, tickers)
        unknown = [t for t in dict.fromkeys(tickers) if t not in known]
        if not unknown:
            return
        # the error's path only: the same names in another case, a scan of the dataset's units
        # (of its files' tickers, keyed by date)
        if by_date:
            cased = self._tickers_in_files(dataset, unknown, None, None, ignore_case=True) or set()
        else:
            cased = queries.tickers_with_units(self.ledger, dataset, unknown, ignore_case=True)
        hint = f"; did you mean {some_of(sorted(cased))}?" if cased else ""
        if any("," in t for t in unknown):
            hint += "; one symbol per item of the list"
        held = "bars" if by_date else "units"
        raise InputError(
            f"the ledger has no {dataset} {held} of {some_of(unknown)} (tickers are case-sensitive{hint}): "
            "see .units() and .listings()"
        )

    def _tickers_in_files(
        self,
        dataset: str,
        tickers: Sequence[str],
        first: dt.date | None,
        last: dt.date | None,
        *,
        ignore_case: bool = False,
    ) -> set[str] | None:
        """Which of `tickers` the `done` files of a date-keyed dataset hold (None: it has
        none): first those of [first, last], the read's own files (the `ticker` column
        only, filtered); only for a ticker not there (one that did not trade in the span,
        or a misspelt one), the dataset's other files. `ignore_case`: the tickers that
        match one but for case (ASCII)."""
        selected = _files(self._selected(dataset, None, first, last))
        everything = _files(self._selected(dataset, None, None, None)) if first or last else selected
        if not everything:
            return None

        def spelt(name: str) -> str:
            return name.upper() if ignore_case else name

        column = pl.col("ticker").str.to_uppercase() if ignore_case else pl.col("ticker")
        found: set[str] = set()  # as the files spell them
        for files in (selected, sorted(set(everything) - set(selected))):
            seen = {spelt(held) for held in found}
            wanted = list(dict.fromkeys(spelt(t) for t in tickers if spelt(t) not in seen))
            if not files or not wanted:
                continue
            scan = self.store.scan_parquet(files, hive_partitioning=False).select("ticker")
            found |= set(scan.filter(column.is_in(wanted)).unique().collect()["ticker"].to_list())
        return found


def _ticker_list(tickers: Iterable[str] | None) -> list[str] | None:
    """`tickers` as a list, read once: one ticker given bare (`"AAPL"`, not a list of its
    letters), or any iterable of strings (a generator, a polars Series, a numpy array),
    which the checks and the read would otherwise each go through (a spent generator reads
    nothing; a Series' truth is ambiguous). Anything else is a one-line InputError."""
    if tickers is None:
        return None
    if isinstance(tickers, str):
        return [tickers]
    try:
        names = list(tickers)
    except TypeError:
        raise InputError(
            f"invalid tickers {type(tickers).__name__}: give a ticker or a list of tickers"
        ) from None
    odd = [name for name in names if not isinstance(name, str)]  # an int, a null of a Series
    if odd:
        raise InputError(f"invalid ticker {odd[0]!r} ({type(odd[0]).__name__}): tickers are strings")
    return [str(name) for name in names]  # numpy's str_ as str


def _upgraded_on_read(frame: pl.LazyFrame, listings: Sequence[Listing]) -> pl.LazyFrame:
    """Bars of a file written before listings, as they are stored now: the `security_id`
    of the listing whose window holds each bar's session date (null if none does), and
    `otc` false where the API left it out."""
    session = pl.col("timestamp").dt.convert_time_zone(str(ET)).dt.date()
    ids: pl.Expr = pl.lit(None, dtype=pl.String)
    for listing in listings:
        inside = pl.col("ticker") == listing.ticker
        if listing.first_day is not None:
            inside = inside & (session >= listing.first_day)
        if listing.last_day is not None:
            inside = inside & (session <= listing.last_day)
        ids = pl.when(inside).then(pl.lit(listing.security_id, dtype=pl.String)).otherwise(ids)
    return frame.with_columns(ids.alias("security_id"), pl.col("otc").fill_null(False))


def _bars_to(selected: Sequence[Any], last: dt.date | None) -> dict[str, dt.date]:
    """{ticker: the last session its done units in the selection may hold, up to `last`}:
    the ledger's answer, without reading a bar (a unit settles once its last day ended)."""
    out: dict[str, dt.date] = {}
    for row in selected:
        if row.state == UnitState.DONE:
            end = stored_date(row.period_end)
            end = end if last is None else min(end, last)
            out[row.ticker] = max(end, out.get(row.ticker, end))
    return out


def _files(selected: list[Any]) -> list[str]:
    # relative paths: the store reads them, local or remote; a file two units share (the
    # details of one ticker as of one date, asked by two builds) is read once
    return list(dict.fromkeys(row.file_path for row in selected if row.state == UnitState.DONE))


def _warn_unsettled(dataset: str, selected: list[Any]) -> None:
    """A selection with failed or not yet fetched units returns fewer bars: say so."""
    unsettled = Counter(row.state for row in selected if row.state not in SETTLED)
    if unsettled:
        states = ", ".join(f"{n} {state}" for state, n in sorted(unsettled.items()))
        warnings.warn(
            f"{sum(unsettled.values())} {dataset} units in this selection hold no bars yet "
            f"({states}): see .units(state=...) and `polyledger audit`",
            UnsettledUnitsWarning,
            stacklevel=user_stacklevel(),
        )


class UnsettledUnitsWarning(UserWarning):
    """Some units of a selection are failed, pending or running: their bars are missing."""


class UnplannedDaysWarning(UserWarning):
    """Some trading days of a selection are in no unit (never planned): their bars are missing."""


def _date(value: dt.date | str | None, name: str) -> dt.date | None:
    if isinstance(value, dt.datetime):  # a date to the type system, but whose day depends on a zone
        raise InputError(f"invalid {name} {value!r}: expected a date (YYYY-MM-DD), not a date and time")
    if value is None or isinstance(value, dt.date):
        return value
    if not isinstance(value, str):  # 20240201, an int: a one-line error, not a TypeError
        raise InputError(f"invalid {name} {value!r}: expected a date (YYYY-MM-DD)")
    try:
        return iso_date(value)
    except ValueError:
        raise InputError(f"invalid {name} {value!r}: expected YYYY-MM-DD") from None
