"""Listings, not symbols: a symbol is reused by unrelated companies over the years and a
company changes symbols, so a bar belongs to a *listing* (a symbol over a window of
session dates) and, through it, to a *security* that keeps one id across renames.

`security_id` is the listing's composite FIGI when the API knows it; otherwise an id
polyledger derives (`PL:` + the symbol, its CIK and, where one symbol needs several
ids, its first day), recorded with how it was made (`link`) so a notebook can tell an
id the provider gave from one we made up. Bars are attributed by session date: a bar
inside no known listing of its symbol is *unattributed* (null `security_id`), never given
to the neighbour before or after it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from polyledger.errors import InputError

if TYPE_CHECKING:  # the ledger reads listings without loading polars (a run's parent process)
    import polars as pl

# how a listing's security_id was made
LINK_FIGI = "composite_figi"  # the provider's composite FIGI
LINK_EVENT = "ticker_event"  # an earlier symbol of a FIGI, from the ticker events endpoint
LINK_DERIVED = "derived"  # no FIGI: made by polyledger from the symbol, CIK and window
LINK_GIVEN = "universe_file"  # a security_id column in the user's universe file
LINKS = (LINK_FIGI, LINK_EVENT, LINK_DERIVED, LINK_GIVEN)


@dataclass(frozen=True)
class Listing:
    """A symbol over a window of US/Eastern session dates (None = unbounded on that side),
    and what is known of the company that traded under it."""

    ticker: str
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    security_id: str | None = None  # set by `assign_security_ids`
    link: str | None = None
    name: str | None = None
    cik: str | None = None
    composite_figi: str | None = None
    share_class_figi: str | None = None

    def covers(self, day: dt.date) -> bool:
        return (self.first_day is None or self.first_day <= day) and (
            self.last_day is None or day <= self.last_day
        )

    def overlaps(self, other: Listing) -> bool:
        starts_before_other_ends = (
            self.first_day is None or other.last_day is None or self.first_day <= other.last_day
        )
        ends_after_other_starts = (
            self.last_day is None or other.first_day is None or self.last_day >= other.first_day
        )
        return starts_before_other_ends and ends_after_other_starts

    def window_text(self) -> str:
        first = self.first_day.isoformat() if self.first_day else "any date"
        last = self.last_day.isoformat() if self.last_day else "today"
        return f"{first} to {last}"


def check_windows(listings: Iterable[Listing], where: str = "") -> None:
    """One symbol's listings must not overlap: a day of bars can belong to one of them only."""
    by_ticker: dict[str, list[Listing]] = defaultdict(list)
    prefix = f"{where}: " if where else ""
    for listing in listings:
        for other in by_ticker[listing.ticker]:
            if listing.overlaps(other):
                raise InputError(
                    f"{prefix}ticker {listing.ticker!r} has overlapping listings "
                    f"({other.window_text()} and {listing.window_text()}): several rows of one ticker "
                    "need distinct list_date/delisted_utc windows"
                )
        by_ticker[listing.ticker].append(listing)


def check_securities(listings: Iterable[Listing], where: str = "") -> None:
    """One security trades under one symbol at a time: two symbols' listings with one
    security_id must not overlap (a rename ends one window before the next begins)."""
    by_security: dict[str, list[Listing]] = defaultdict(list)
    prefix = f"{where}: " if where else ""
    for listing in listings:
        for other in by_security[listing.security_id or ""]:
            if other.ticker != listing.ticker and listing.overlaps(other):
                raise InputError(
                    f"{prefix}security_id {listing.security_id!r} is on {other.ticker!r} "
                    f"({other.window_text()}) and {listing.ticker!r} ({listing.window_text()}) at once: "
                    "one security trades under one symbol at a time"
                )
        by_security[listing.security_id or ""].append(listing)


def assign_security_ids(listings: Sequence[Listing]) -> list[Listing]:
    """Each listing with its security_id and link: a given id is kept, else the composite
    FIGI, else a derived `PL:` id, made unique per window when one symbol needs several."""
    out = [_with_id(listing) for listing in listings]
    windows: dict[str, set[tuple]] = defaultdict(set)
    for listing in out:
        windows[listing.security_id or ""].add((listing.ticker, listing.first_day))
    result = []
    for listing in out:
        if listing.link == LINK_DERIVED and len(windows[listing.security_id or ""]) > 1:
            # one symbol, no FIGI and no CIK to tell two listings apart: their first days do
            first = listing.first_day.isoformat() if listing.first_day else "start"
            listing = replace(listing, security_id=f"{listing.security_id}:{first}")
        result.append(listing)
    return result


def _with_id(listing: Listing) -> Listing:
    if listing.security_id:
        return listing if listing.link else replace(listing, link=LINK_GIVEN)
    if listing.composite_figi:
        return replace(listing, security_id=listing.composite_figi, link=LINK_FIGI)
    return replace(listing, security_id=derived_security_id(listing.ticker, listing.cik), link=LINK_DERIVED)


def derived_security_id(ticker: str, cik: str | None = None) -> str:
    """polyledger's id for a listing without FIGI: the symbol, and its CIK when known
    (CIKs are shared by share classes, so the symbol stays in it)."""
    return f"PL:{ticker}:cik{cik}" if cik else f"PL:{ticker}"


@dataclass(frozen=True)
class Unattributed:
    """Bars of one unit that fall inside no known listing of their symbol."""

    first_day: dt.date
    last_day: dt.date
    bars: int


def constant_security_id(ticker: str, listings: Sequence[Listing]) -> str | None:
    """The one `security_id` every bar of `ticker` gets whatever its date (no listing
    recorded: the symbol's derived id; one listing without bounds: its id), or None when
    each bar's date decides."""
    if not listings:
        return derived_security_id(ticker)
    if len(listings) == 1 and listings[0].first_day is None and listings[0].last_day is None:
        return listings[0].security_id  # the common case: no test per bar
    return None


def attribute(
    bars: pl.DataFrame, dates: pl.Series, ticker: str, listings: Sequence[Listing]
) -> tuple[pl.DataFrame, Unattributed | None]:
    """`bars` (the stored schema but `security_id`) with the `security_id` of the listing
    of `ticker` whose window holds each bar's session date (`dates`, aligned with `bars`);
    null where none does, and those bars summarised. A symbol with no recorded listing
    (a ledger planned from bare tickers) is one security: its derived id."""
    import polars as pl

    same = constant_security_id(ticker, listings)
    if same is not None:
        ids: pl.Expr = pl.lit(same, dtype=pl.String)
    else:
        ids = pl.lit(None, dtype=pl.String)
        for listing in listings:
            inside = pl.lit(True)
            if listing.first_day is not None:
                inside = inside & (pl.col("_date") >= listing.first_day)
            if listing.last_day is not None:
                inside = inside & (pl.col("_date") <= listing.last_day)
            ids = pl.when(inside).then(pl.lit(listing.security_id, dtype=pl.String)).otherwise(ids)
    attributed = bars.with_columns(_date=dates).with_columns(ids.alias("security_id"))
    outside = attributed.filter(pl.col("security_id").is_null())
    summary = None
    if outside.height:
        days = outside.get_column("_date")
        summary = Unattributed(days.min(), days.max(), outside.height)  # type: ignore[arg-type]
    return attributed.drop("_date"), summary


def outside_every_listing(listings: Sequence[Listing], start: dt.date, end: dt.date) -> bool:
    """Do the session dates [start, end] lie outside every known listing of a symbol? Then
    an empty answer for them is explained (nobody traded it); with no listing known,
    nothing is."""
    period = Listing("", start, end)
    return bool(listings) and not any(listing.overlaps(period) for listing in listings)


Days = tuple[dt.date | None, dt.date | None]  # session dates, both ends inclusive; None: unbounded


@dataclass(frozen=True)
class ListingChange:
    """What new listings of a symbol change for its settled units. `changed`: the days
    whose security differs (a bar stored there carries a wrong `security_id`, or has one
    where it should have none, or none where it should). `listed`: the days inside a
    listing now and inside none before (part of `changed`): an empty answer for them was
    explained by the old windows, never checked against the plan's history (`fetch.units`),
    so a unit confirmed empty there may hold bars."""

    ticker: str
    changed: tuple[Days, ...] = ()
    listed: tuple[Days, ...] = ()


def listing_change(ticker: str, old: Sequence[Listing], new: Sequence[Listing]) -> ListingChange:
    """The days of `ticker` the change from `old` to `new` listings touches, as few ranges
    as possible: both sides' window bounds cut time into spans inside which neither side
    changes, and each span is compared on one of its days."""
    bounds = sorted(
        {item.first_day for item in (*old, *new) if item.first_day is not None}
        | {item.last_day + dt.timedelta(days=1) for item in (*old, *new) if item.last_day is not None}
    )
    spans = zip([None, *bounds], [*(bound - dt.timedelta(days=1) for bound in bounds), None], strict=True)
    changed: list[Days] = []
    listed: list[Days] = []
    after_changed = after_listed = False  # the previous span was added: extend it
    for start, end in spans:
        day = start or end or dt.date(2000, 1, 1)  # any day of the span
        old_ids, old_held = _held_on(ticker, old, day)
        new_ids, new_held = _held_on(ticker, new, day)
        after_changed = _add(changed, (start, end), old_ids != new_ids, after_changed)
        after_listed = _add(listed, (start, end), new_held and not old_held, after_listed)
    return ListingChange(ticker, tuple(changed), tuple(listed))


def _add(ranges: list[Days], span: Days, touched: bool, extend: bool) -> bool:
    """`span` added to `ranges` when touched (joined to the last range when it follows it);
    whether it was."""
    if not touched:
        return False
    if extend:
        ranges[-1] = (ranges[-1][0], span[1])
    else:
        ranges.append(span)
    return True


def _held_on(ticker: str, listings: Sequence[Listing], day: dt.date) -> tuple[tuple[str, ...], bool]:
    """The security ids a bar of `day` may get (`attribute`), and whether a listing holds
    the day (`outside_every_listing`: with no listing known, nothing is explained)."""
    if not listings:
        return (derived_security_id(ticker),), True
    ids = tuple(sorted(item.security_id or "" for item in listings if item.covers(day)))
    return ids, bool(ids)


# how many sessions after a symbol's last session an event listed under it, and dated in
# no listing of it, may still be the company's that left it: a reverse split and a change
# of symbol on one day are often listed under the symbol left, dated on the new symbol's
# first session (one session after); a few more allow a date a few days off, as ticker
# events' are (listings.md), never the weeks a symbol lies free before another company
LEFT_SYMBOL_SESSIONS = 5


class EventOwners:
    """Which company a split or a dividend belongs to, the listings indexed once (a read
    of a whole universe asks it for tens of thousands of events)."""

    def __init__(self, listings: Sequence[Listing]) -> None:
        self._by_ticker: dict[str, list[Listing]] = defaultdict(list)
        self._by_security: dict[str, list[Listing]] = defaultdict(list)
        # (ticker, day) -> the companies an event could belong to, when more than one: none
        # is chosen (`security_on`), and the caller says so
        self.ambiguous: dict[tuple[str, dt.date], set[str]] = {}
        for listing in listings:
            self._by_ticker[listing.ticker].append(listing)
            if listing.security_id is not None:
                self._by_security[listing.security_id].append(listing)

    def security_on(self, ticker: str, day: dt.date) -> str | None:
        """The security an event of `ticker` dated `day` belongs to: that of `ticker`'s
        listing whose window holds `day`; else that of the one company that traded under
        another of its symbols on `day` and either took `ticker` after it (the API has
        listed an event made before a rename under the symbol taken: polygon-io/issues#253)
        or left `ticker` at most LEFT_SYMBOL_SESSIONS sessions before it (a reverse split
        and a rename on one day, listed under the symbol left and dated on the new one's
        first session). A company that left it is not the owner alone while another lists
        under `ticker` within those sessions after `day` (its event, its list date a few
        days late). None: no known company's, or more than one's (kept in `ambiguous`).
        The listings must hold every company that ever traded under `ticker`."""
        own = self._by_ticker.get(ticker, [])
        for listing in own:
            if listing.covers(day):
                return listing.security_id
        could = self._took_it_after(own, day)
        left = self._left_it_just_before(own, day)
        if left:
            could |= left | self._takes_it_soon_after(own, day)
        if len(could) > 1:
            self.ambiguous[(ticker, day)] = could
        return could.pop() if len(could) == 1 else None

    def _took_it_after(self, own: Sequence[Listing], day: dt.date) -> set[str]:
        """The companies that listed under the symbol (`own`: its listings) after `day` and
        traded under another symbol on it: the API lists an event under a symbol the
        company has then or later."""
        later = {
            listing.security_id
            for listing in own
            if listing.security_id is not None and listing.first_day is not None and listing.first_day > day
        }
        return {security for security in later if self._traded_on(security, day)}

    def _left_it_just_before(self, own: Sequence[Listing], day: dt.date) -> set[str]:
        """The companies whose listing of the symbol ended at most LEFT_SYMBOL_SESSIONS
        sessions before `day` and that traded under another symbol on it."""
        return {
            listing.security_id
            for listing in own
            if listing.security_id is not None
            and listing.last_day is not None
            and listing.last_day < day
            and _sessions_between(listing.last_day, day) <= LEFT_SYMBOL_SESSIONS
            and self._traded_on(listing.security_id, day)
        }

    @staticmethod
    def _takes_it_soon_after(own: Sequence[Listing], day: dt.date) -> set[str]:
        """The companies whose listing of the symbol starts at most LEFT_SYMBOL_SESSIONS
        sessions after `day`, trading on it or not."""
        return {
            listing.security_id
            for listing in own
            if listing.security_id is not None
            and listing.first_day is not None
            and listing.first_day > day
            and _sessions_between(day, listing.first_day) <= LEFT_SYMBOL_SESSIONS
        }

    def _traded_on(self, security: str, day: dt.date) -> bool:
        return any(listing.covers(day) for listing in self._by_security.get(security, []))

    def listings_of(self, security: str) -> list[Listing]:
        """`security`'s listings, under each of its symbols."""
        return list(self._by_security.get(security, []))

    def symbols_on(self, security: str, day: dt.date) -> set[str]:
        """The symbols `security` traded under on `day` (by its listings' windows)."""
        return {listing.ticker for listing in self._by_security.get(security, []) if listing.covers(day)}

    def taken_on(self, security: str, ticker: str) -> dt.date:
        """The first day `security` traded under `ticker` (date.min: from its beginning, or
        never by its listings)."""
        firsts = [
            listing.first_day or dt.date.min
            for listing in self._by_security.get(security, [])
            if listing.ticker == ticker
        ]
        return min(firsts, default=dt.date.min)


def _sessions_between(earlier: dt.date, later: dt.date) -> int:
    """The trading days in (earlier, later], `earlier` < `later`; not counted (a number
    past any bound) when the two are weeks apart."""
    if later - earlier > dt.timedelta(days=3 * LEFT_SYMBOL_SESSIONS):
        return _WEEKS_APART
    from polyledger.trading_days import trading_days  # the calendar, only when an event asks

    return len(trading_days(earlier + dt.timedelta(days=1), later))


_WEEKS_APART = 1 << 30
