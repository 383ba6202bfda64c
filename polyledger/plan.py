"""Planning: a universe and a date range become units in the ledger (a dataset of whole
trading days needs no universe: its units are the range's trading days)."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from polyledger import datasets
from polyledger.coverage import last_plannable_day
from polyledger.datasets import MARKET
from polyledger.datasets.reference import plan_reference
from polyledger.errors import InputError, some_of
from polyledger.ledger import Ledger, PlannedUnit, queries
from polyledger.ledger.listing_table import ListingChange
from polyledger.listings import Listing, assign_security_ids, check_securities
from polyledger.periods import et_today, stored_date, unit_periods
from polyledger.trading_days import trading_days
from polyledger.universe import read_members

EARLIEST = dt.date(2000, 1, 1)  # Polygon's stock history starts in 2003; anything earlier is a typo

Period = tuple[dt.date, dt.date]
Span = tuple[str, int, int]  # a ticker and the [lo, hi) indexes of its periods to plan


class Owed(NamedTuple):
    """Units a plan owes outside its own range (`_owed`): the periods of the range recorded
    as planned for its universe, and each ticker's spans of them."""

    periods: list[Period]
    spans: list[Span]

    def days(self) -> Iterator[tuple[str, Period]]:
        """Each span's ticker and days, first to last."""
        for ticker, lo, hi in self.spans:
            yield ticker, (self.periods[lo][0], self.periods[hi - 1][1])


class OwedElsewhere(NamedTuple):
    """Units of another bar dataset planned from the same universe file that a plan's
    change of listings owed (`_owed`): added and widened over that dataset's recorded range."""

    dataset: str
    added: int
    widened: int
    over: Period  # the span of the recorded ranges they were planned over


@dataclass(frozen=True)
class PlanResult:
    dataset: str
    tickers: int
    units_in_plan: int  # units inside the tickers' listing windows
    added: int
    widened: int = 0  # clipped units extended by this wider plan
    busy: int = 0  # clipped units that could not be widened while a worker holds them
    outside_listing: int = 0  # ticker x period pairs outside a listing window: not planned
    relisted: int = 0  # settled units queued again: their symbol's listings changed over their days
    # units outside [start, end]: days the universe was planned for, brought into a listing
    # window by this plan's change of listings (`_owed`)
    backfilled: int = 0
    # the same change's units of the other bar datasets planned from the universe file,
    # each over its own recorded range: the change is recorded once, seen by this plan only
    elsewhere: tuple[OwedElsewhere, ...] = ()
    changed: tuple[str, ...] = ()  # the symbols whose listings this plan changed
    owed_over: Period | None = None  # the span of the recorded ranges `backfilled` were planned over
    # (symbol, file) of changed symbols whose listings another universe file gave
    contradicted: tuple[tuple[str, str], ...] = ()
    # (dataset, units added) of the per-ticker datasets planned from the file before
    # (splits, dividends), for its tickers that had none (a new symbol, a renamed company's)
    references: tuple[tuple[str, int], ...] = ()

    @property
    def already_planned(self) -> int:
        return self.units_in_plan - self.added


def check_range(dataset: str, start: dt.date, end: dt.date) -> None:
    if not datasets.get(dataset).needs_range:
        ranged = ", ".join(datasets.names(bars=True))
        raise InputError(f"--from/--to plan {ranged}, not {dataset}: a unit holds a ticker's whole history")
    if start > end:
        raise InputError(f"--from {start} is after --to {end}")
    if start < EARLIEST:
        raise InputError(f"--from {start} is before {EARLIEST}: no stock data exists that early")


def plan_units(
    universe: Iterable[Listing | str], dataset: str, start: dt.date, end: dt.date
) -> Iterator[PlannedUnit]:
    """Units in ticker order, then time order (so a ticker's months sit together), only
    those overlapping one of the ticker's listing windows."""
    periods = _periods(dataset, start, end)
    return _units(dataset, periods, _streamed_spans(universe, periods))


def _streamed_spans(universe: Iterable[Listing | str], periods: Sequence[Period]) -> Iterator[Span]:
    """`_spans` one listing at a time (a universe may be endless): a ticker's rows sit
    together in a universe file, so only the previous row's span is needed to merge."""
    previous: Span | None = None
    for member in universe:
        ticker, lo, hi = _span(_listing(member), periods)
        if previous is not None and previous[0] == ticker and lo <= previous[2] and hi >= previous[1]:
            previous = (ticker, min(previous[1], lo), max(previous[2], hi))  # rows in any order
            continue
        if previous is not None:
            yield previous
        previous = (ticker, lo, hi)
    if previous is not None:
        yield previous


def plan(
    ledger: Ledger,
    universe: Sequence[Listing | str],
    dataset: str,
    start: dt.date,
    end: dt.date,
    source: str | None = None,
) -> PlanResult:
    """Add the missing units for universe x [start, end]; existing units keep their state.
    Plain tickers have no listing window; listings skip the periods outside theirs (a
    symbol with several listings gets the periods of each). The listings are recorded in
    the ledger: they attribute each stored bar to its security. The days a change of
    listings brings into a window are planned over the whole ranges recorded as planned
    for the files that hold the symbol, `source` among them (the universe file as the
    ledger's `planned` names it; None: none, as for a file with no range recorded), not
    only inside [start, end], and so are those of the other bar datasets planned from
    them, over theirs (`_owed`, `PlanResult.elsewhere`). A date-keyed dataset ignores the
    universe (`plan_days`)."""
    if datasets.get(dataset).keyed_by == "date":
        return plan_days(ledger, dataset, start, end)
    check_range(dataset, start, end)
    listings = assign_security_ids([_listing(member) for member in universe])
    # with the other symbols' listings earlier plans recorded (a later universe may give a
    # held security to a new symbol: `FB` open-ended, then `META` from the rename)
    planned = {listing.ticker for listing in listings}
    ids = {listing.security_id for listing in listings}
    kept = [held for held in ledger.listings() if held.ticker not in planned and held.security_id in ids]
    check_securities([*kept, *listings])
    # what a change of listings owes the ranges planned for the universe, of every bar
    # dataset planned from it, planned before the change is recorded: a plan stopped in
    # between sees the change again, one after (of this dataset or another) would not
    backfilled = added = widened = 0
    owed_over = None
    elsewhere: list[OwedElsewhere] = []
    for name, owed in _owed(ledger, source, listings).items():
        outside, inside, more = _plan_owed(ledger, name, owed, start, end)
        over = (owed.periods[0][0], owed.periods[-1][1])
        if name == dataset:
            backfilled, added, widened, owed_over = outside, inside, more, over
        else:  # the plan's --from/--to are this dataset's: all of another's are outside them
            elsewhere.append(OwedElsewhere(name, outside + inside, more, over))
    # units over the days whose listing changed, queued again with the listings: a done
    # one's files carry the old attribution, an empty one may have been explained by the old windows
    recorded = ledger.record_listings(listings, requeue=datasets.names(bars=True), source=source)
    periods = _periods(dataset, start, end)
    spans = _spans(listings, periods)  # a small tuple per ticker (or per listing of a reused one)
    added += ledger.add_units(_units(dataset, periods, spans))  # streamed, never a list of units
    asked = _listed_days(listings, start, end)
    for ticker, days in _unwidened(ledger, dataset, listings):
        asked.setdefault(ticker, []).append(days)
    more, busy = ledger.widen_clipped(dataset, asked)
    in_plan = sum(hi - lo for _ticker, lo, hi in spans)
    tickers = len({listing.ticker for listing in listings})
    references = _plan_references(ledger, source, listings)
    return PlanResult(
        dataset=dataset,
        tickers=tickers,
        units_in_plan=in_plan,
        added=added,
        widened=widened + more,
        busy=busy,
        outside_listing=tickers * len(periods) - in_plan,
        relisted=recorded.requeued,
        backfilled=backfilled,
        elsewhere=tuple(elsewhere),
        changed=tuple(sorted({change.ticker for change in recorded.changes})),
        owed_over=owed_over,
        # a file no longer there is this one moved or renamed, no other file to correct
        contradicted=tuple(pair for pair in recorded.contradicted if Path(pair[1]).exists()),
        references=references,
    )


def _listed_days(listings: Sequence[Listing], start: dt.date, end: dt.date) -> dict[str, list[Period]]:
    """By ticker, the days of [start, end] inside its listing windows: what a plan widens
    its clipped units over. The whole range widened a unit outside the windows (a month
    after a delisting, the days of a month after its last session) and queued it again for
    days the listing says have no bar; a ticker with no listed day here asks nothing."""
    asked: dict[str, list[Period]] = {}
    for listing in listings:
        first = max(start, listing.first_day) if listing.first_day else start
        last = min(end, listing.last_day) if listing.last_day else end
        if first <= last:
            asked.setdefault(listing.ticker, []).append((first, last))
    return asked


def plan_days(ledger: Ledger, dataset: str, start: dt.date, end: dt.date) -> PlanResult:
    """Add the missing units of a date-keyed dataset: one per trading day of [start, end]
    (weekends and NYSE holidays are no unit). A day is never clipped, so never widened."""
    check_range(dataset, start, end)
    units = [
        PlannedUnit(dataset, MARKET, day, day, period_name=day.isoformat())
        for day in trading_days(start, end)
    ]
    added = ledger.add_units(units)
    return PlanResult(dataset=dataset, tickers=0, units_in_plan=len(units), added=added)


def _periods(dataset: str, start: dt.date, end: dt.date) -> list[Period]:
    return list(unit_periods(datasets.get(dataset).grain, start, end))


def _listing(member: Listing | str) -> Listing:
    return Listing(member) if isinstance(member, str) else member


def _spans(listings: Sequence[Listing], periods: Sequence[Period]) -> list[Span]:
    """Each ticker's periods that overlap one of its listing windows, as few spans as
    possible (a reused symbol's two listings may share a month), in first-seen order."""
    by_ticker: dict[str, list[tuple[int, int]]] = {}
    for listing in listings:
        by_ticker.setdefault(listing.ticker, []).append(_span(listing, periods)[1:])
    return [(ticker, lo, hi) for ticker, ranges in by_ticker.items() for lo, hi in _merged(ranges)]


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Index ranges [lo, hi) joined where they overlap or touch, empty ones dropped, in order."""
    merged: list[list[int]] = []
    for lo, hi in sorted(pair for pair in ranges if pair[1] > pair[0]):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _planned_ranges(ledger: Ledger) -> dict[str, dict[str, Period]]:
    """What the ledger records as planned, by universe file and ticker-keyed bar dataset
    (`planned`: the earliest --from to the latest --to, or through the last plannable day
    once a plan of it was given none; `sync --forget` stops a sync, not the record)."""
    bars = {name for name in datasets.names(bars=True) if datasets.get(name).keyed_by != "date"}
    ranges: dict[str, dict[str, Period]] = {}
    for remembered in ledger.remembered_plans(forgotten=True):
        if remembered.dataset not in bars or remembered.first_day is None:
            continue
        first, last = remembered.first_day, remembered.widest_day or last_plannable_day()
        if first <= last:
            ranges.setdefault(remembered.universe, {}).setdefault(remembered.dataset, (first, last))
    return ranges


def _owed_ranges(
    ledger: Ledger, source: str | None, listings: Sequence[Listing], changes: Sequence[ListingChange]
) -> dict[str, dict[str, list[Period]]]:
    """By changed symbol and bar dataset, the ranges its change is owed over: those recorded
    for every universe file that holds the symbol or another of its company's: this one,
    the others planned from (read again: which tickers a file holds is not in the ledger; a
    second file correcting the same listing sees no change left to owe its own range; one
    that does not read now is taken to hold it), and those its listings (or its company's)
    were recorded from (a file since moved or renamed); else those of every file: owed over
    what the ledger planned, never over nothing (a hole `audit` could not see), nor over
    another ticker's years."""
    planned = _planned_ranges(ledger)
    tickers = {change.ticker for change in changes}
    companies: dict[str, set[str]] = {}  # a symbol's securities (a reused one: several)
    symbols: dict[str, set[str]] = {}  # a security's symbols, here and as recorded
    for listing in listings:
        if listing.security_id is not None:
            symbols.setdefault(listing.security_id, set()).add(listing.ticker)
            if listing.ticker in tickers:
                companies.setdefault(listing.ticker, set()).add(listing.security_id)
    securities = sorted({security for held in companies.values() for security in held})
    came_from: dict[str, set[str]] = {}  # a symbol's or a security's files, as recorded
    for ticker, security, file in ledger.listing_sources(sorted(tickers), securities):
        symbols.setdefault(security, set()).add(ticker)
        came_from.setdefault(ticker, set()).add(file)
        came_from.setdefault(security, set()).add(file)
    held = {path: _tickers_in(path) for path in planned if path and path != source}
    owed = {}
    for ticker in sorted(tickers):
        names = {ticker}.union(*(symbols.get(security, set()) for security in companies.get(ticker, ())))
        files = set().union(*(came_from.get(name, set()) for name in names | companies.get(ticker, set())))
        # a file that does not read now may hold it: owed its ranges rather than a hole
        files |= {path for path, members in held.items() if members is None or members & names}
        files |= {source} if source in planned else set()
        known = [planned[file] for file in sorted(files) if file in planned]
        owed[ticker] = _by_dataset(known or list(planned.values()))
    return owed


def _tickers_in(path: str) -> set[str] | None:
    """The tickers of a universe file planned from before, as it is now: none when it is gone
    (its ranges are reached through `listings.source`), None when it does not read now."""
    if not Path(path).is_file():
        return set()
    try:
        return {listing.ticker for listing in read_members(Path(path))}
    except InputError:
        return None


def _by_dataset(ranges: Iterable[dict[str, Period]]) -> dict[str, list[Period]]:
    out: dict[str, list[Period]] = {}
    for by_dataset in ranges:
        for name, days in by_dataset.items():
            out.setdefault(name, []).append(days)
    return out


def _owed(ledger: Ledger, source: str | None, listings: Sequence[Listing]) -> dict[str, Owed]:
    """By bar dataset planned for the changed symbols, the periods over the days a change
    of `listings` brings into a window (`ListingChange.listed`; a new symbol of a security
    the ledger knows under another, its windows) inside the ranges recorded as planned for
    them (`_owed_ranges`), cut as a plan of those ranges cuts them. Without them, a listing
    corrected to start earlier or end later (or two windows found one, or a company
    renamed) and a plan of another range since left those days in no unit: `run` never
    fetched them, and `audit`, which judges the days between a ticker's units only, said
    nothing of those before its first or after its last. Every dataset's, since the change
    is recorded once: the next plan, of any dataset, no longer sees it."""
    # without a file (a plan from Python) too: the change is recorded all the same, and
    # owed over the files that hold the symbol, as for a file the ledger has no range of
    changes = ledger.listing_changes(listings)
    if not changes:
        return {}
    by_ticker = _owed_ranges(ledger, source, listings, changes)
    owed: dict[str, Owed] = {}
    for name in sorted({name for ranges in by_ticker.values() for name in ranges}):
        every = [days for ranges in by_ticker.values() for days in ranges.get(name, [])]
        periods = _periods(name, min(first for first, _ in every), max(last for _, last in every))
        pairs: dict[str, list[tuple[int, int]]] = {}
        for change in changes:
            for first, last in by_ticker[change.ticker].get(name, []):
                for days in change.listed:  # the listed days inside each of the ticker's ranges
                    window = Listing(change.ticker, *days)
                    low = max(first, window.first_day) if window.first_day else first
                    high = min(last, window.last_day) if window.last_day else last
                    if low <= high:
                        pairs.setdefault(change.ticker, []).append(
                            _span(Listing(change.ticker, low, high), periods)[1:]
                        )
        found = [(ticker, lo, hi) for ticker, spans in pairs.items() for lo, hi in _merged(spans)]
        if found:
            owed[name] = Owed(periods, found)
    return owed


def _plan_owed(
    ledger: Ledger, dataset: str, owed: Owed, start: dt.date, end: dt.date
) -> tuple[int, int, int]:
    """Add the owed units and widen the clipped ones among them. Returns how many were
    added outside [start, end] and inside it (the plan's own periods, cut as the universe's
    range cuts them: the plan's cut may only widen them), and how many widened. A unit a
    run holds is owed its days (`unwidened`): widened by this plan's last widening if the
    change takes it from its run, else by a later plan (`_unwidened`)."""
    if not owed.spans:
        return 0, 0, 0
    inside: list[PlannedUnit] = []
    outside: list[PlannedUnit] = []
    for unit in _units(dataset, owed.periods, owed.spans):  # a few periods of the changed symbols
        (inside if unit.period_start <= end and unit.period_end >= start else outside).append(unit)
    added_outside, added_inside = ledger.add_units(outside), ledger.add_units(inside)
    asked: dict[str, list[Period]] = {}
    for ticker, days in owed.days():
        asked.setdefault(ticker, []).append(days)
    widened, _busy = ledger.widen_clipped(dataset, asked)  # the busy are counted by the last widening
    return added_outside, added_inside, widened


def _unwidened(ledger: Ledger, dataset: str, listings: Sequence[Listing]) -> Iterator[tuple[str, Period]]:
    """What an earlier plan asked of a clipped unit of the universe's tickers and could not
    give it while a run held it (`unwidened`): any plan of them since widens it, whatever
    its own range (what asked it may be a change of listings, recorded since and not seen
    again)."""
    tickers = {listing.ticker for listing in listings}
    for row in queries.unwidened_units(ledger):  # a small table, usually empty
        if row.dataset == dataset and row.ticker in tickers:
            yield row.ticker, (stored_date(row.first_day), stored_date(row.last_day))


def _span(listing: Listing, periods: Sequence[Period]) -> Span:
    """The periods (clipped by the plan's range only) that overlap the listing window.
    Periods are never clipped to the window: before a listing the API just has no bars,
    and clipping would make the ledger widen such units on every later plan."""
    lo = 0
    if listing.first_day is not None:  # first period ending on or after the listing
        lo = bisect_left(periods, listing.first_day, key=lambda period: period[1])
    hi = len(periods)
    if listing.last_day is not None:  # past the last period starting on or before the last day
        hi = bisect_right(periods, listing.last_day, key=lambda period: period[0])
    return listing.ticker, lo, max(lo, hi)


def _units(dataset: str, periods: list[Period], spans: Iterable[Span]) -> Iterator[PlannedUnit]:
    for ticker, lo, hi in spans:
        for period_start, period_end in periods[lo:hi]:
            yield PlannedUnit(dataset, ticker, period_start, period_end)


def contradiction_text(contradicted: Sequence[tuple[str, str]]) -> str:
    """What a plan says of symbols whose listings another universe file gave: both files
    planned, they queue each other's months again on every plan (sync's nightly too)."""
    files = sorted({other for _, other in contradicted})
    return (
        f"the listings of {some_of(sorted({ticker for ticker, _ in contradicted}))} came from "
        f"{some_of(files)}, which this file contradicts; the ledger follows this file now: universe "
        "files that disagree about a listing queue each other's months again on every plan (correct "
        "one of them)"
    )


def _plan_references(
    ledger: Ledger, source: str | None, listings: Sequence[Listing]
) -> tuple[tuple[str, int], ...]:
    """Units of the per-ticker datasets planned from the universe file `source` before
    (splits, dividends: a unit per ticker), for those of its tickers that have none yet: a
    symbol new to the file (a renamed company's) had its bars planned and no splits unit,
    its adjusted reads missing a split with `audit` saying COMPLETE, until a `sync`."""
    if source is None:
        return ()
    tickers = sorted({listing.ticker for listing in listings})
    added = []
    for remembered in ledger.remembered_plans(forgotten=False):  # `sync --forget` ends it here too
        spec = datasets.get(remembered.dataset) if remembered.dataset in datasets.names() else None
        if remembered.universe != source or spec is None or spec.planned_by != "plan":
            continue
        if spec.needs_universe and not spec.needs_range:
            added.append(
                (remembered.dataset, plan_reference(ledger, tickers, remembered.dataset, et_today()))
            )
    return tuple((name, count) for name, count in added if count)
