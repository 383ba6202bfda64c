"""The listings table: each symbol's listings (windows and securities), replaced whole per
symbol by each plan that describes it (`polyledger.listings`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from polyledger.ledger.connection import LedgerConnection, _reconnecting
from polyledger.ledger.records import in_lists, iso
from polyledger.listings import LINK_DERIVED, Listing, ListingChange, listing_change
from polyledger.periods import stored_date

_COLUMNS = "ticker, first_day, last_day, security_id, link, name, cik, composite_figi, share_class_figi"


def _day(value: object) -> dt.date | None:
    return stored_date(value) if value else None


def _bare(listing: Listing) -> bool:
    """Nothing known of the symbol but, perhaps, a name (no window, no identifier): it says
    nothing of which companies traded under it."""
    unnamed = dataclasses.replace(listing, name=None)
    return unnamed == Listing(listing.ticker, security_id=listing.security_id, link=listing.link) and (
        listing.link == LINK_DERIVED
    )


def recorded_listings(connection: LedgerConnection) -> list[Listing]:
    """Every recorded listing, read through a plain connection (the named reads of `queries`)."""
    return [_listing(tuple(row)) for row in connection.query(f"SELECT {_COLUMNS} FROM listings")]


def _listing(row: Sequence) -> Listing:
    ticker, first, last, security_id, link, name, cik, figi, share_class = row
    return Listing(ticker, _day(first), _day(last), security_id, link, name, cik, figi, share_class)


def _renamed(ticker: str, listings: Sequence[Listing], known: set[str]) -> ListingChange:
    """The change of a symbol with no listings before: its bars had no security
    (`listing_change` from none), and the windows of its listings whose security another
    symbol holds are `listed`: the company traded over the range planned for the universe
    under that symbol, so its days under this one are owed as a window brought in (a
    symbol whose securities are all new lists nothing: its first plan plans it)."""
    windows = sorted(
        ((item.first_day, item.last_day) for item in listings if item.security_id in known),
        key=lambda days: (days[0] or dt.date.min, days[1] or dt.date.max),
    )
    if not windows:
        return ListingChange(ticker)  # nothing changed: not reported
    return dataclasses.replace(listing_change(ticker, [], listings), listed=tuple(windows))


@dataclass(frozen=True)
class RecordedListings:
    changes: list[ListingChange]  # the symbols whose listings changed over some days
    requeued: int = 0  # settled units those changes made wrong, queued again with them
    # (symbol, file) of each changed symbol whose listings another universe file gave
    contradicted: tuple[tuple[str, str], ...] = ()


class ListingTable(LedgerConnection):
    def record_listings(
        self, listings: Iterable[Listing], requeue: Sequence[str] = (), source: str | None = None
    ) -> RecordedListings:
        """Every symbol of `listings` (ids assigned) gets exactly these listings, in one
        transaction; other symbols keep theirs. A bare ticker (no window, nothing known
        of it) says nothing new: it keeps the listings an earlier plan recorded, or gets
        its derived one. Returns, for each symbol that had listings before (or that takes
        a security another symbol holds: `_renamed`), the days whose security or
        listed-ness changed, if any (`listing_change`, by symbol): its settled units over
        them may be wrong. Those of the datasets in `requeue` go back to pending
        in the same transaction (`Ledger.reset_relisted`): a plan killed between the two
        would leave the new listings recorded and the units never queued again. `source`:
        the universe file they come from, recorded with them; a changed symbol whose
        listings another file gave is returned in `contradicted`."""
        by_ticker, changed = self._described(listings)
        if not by_ticker:
            return RecordedListings([])
        contradicted = self._given_by_others([change.ticker for change in changed], source)
        requeued = self._replace_listings(by_ticker, changed, requeue, source)
        return RecordedListings(changed, requeued, contradicted)

    @_reconnecting
    def listing_sources(
        self, tickers: Sequence[str], security_ids: Sequence[str]
    ) -> list[tuple[str, str, str]]:
        """(ticker, security_id, source) of the recorded listings of `tickers` or of
        `security_ids` that name the universe file they came from, each once, in order.
        Asked in slices (`in_lists`): a plan may change tens of thousands of symbols."""
        found: set[tuple[str, str, str]] = set()
        for column, values, prefix in (("ticker", tickers, "t"), ("security_id", security_ids, "s")):
            for test, params in in_lists(column, values, prefix):
                rows = self._statement().execute(
                    f"SELECT DISTINCT ticker, security_id, source FROM listings WHERE {test} "
                    "AND source IS NOT NULL",
                    params,
                )
                found.update((row[0], row[1], row[2]) for row in rows.fetchall())
        return sorted(found)

    @_reconnecting
    def _given_by_others(self, tickers: Sequence[str], source: str | None) -> tuple[tuple[str, str], ...]:
        """(symbol, file) of `tickers` whose recorded listings came from a universe file other
        than `source` (none when either is unknown)."""
        if source is None:
            return ()
        found: set[tuple[str, str]] = set()
        for test, params in in_lists("ticker", tickers, "t"):
            rows = self._statement().execute(
                f"SELECT DISTINCT ticker, source FROM listings WHERE {test} AND source IS NOT NULL", params
            )
            found.update((row[0], row[1]) for row in rows.fetchall() if row[1] != source)
        return tuple(sorted(found))

    def listing_changes(self, listings: Iterable[Listing]) -> list[ListingChange]:
        """What `record_listings(listings)` would change, recording nothing: a plan does what
        a change owes it before recording the change, which the next plan no longer sees."""
        return self._described(listings)[1]

    def _described(self, listings: Iterable[Listing]) -> tuple[dict[str, list[Listing]], list[ListingChange]]:
        """The symbols `listings` describe (a bare ticker an earlier plan recorded listings of
        describes nothing), and for each that had listings before, the days its change
        touches (`listing_change`), if any. A symbol new to the listings that takes a
        security another symbol holds (a rename: `META` for `FB`'s company) changes too:
        the windows of those listings are `listed` (`_renamed`)."""
        by_ticker: dict[str, list[Listing]] = defaultdict(list)
        for listing in listings:
            by_ticker[listing.ticker].append(listing)
        before: dict[str, list[Listing]] = defaultdict(list)
        for listing in self.listings(tickers=sorted(by_ticker)):  # one query for the whole universe
            before[listing.ticker].append(listing)
        for ticker in [t for t, items in by_ticker.items() if len(items) == 1 and _bare(items[0])]:
            if before[ticker]:
                del by_ticker[ticker]
        new = sorted({item.security_id for t, items in by_ticker.items() if not before[t] for item in items})
        known = self._known_securities([security_id for security_id in new if security_id])
        changes = [
            listing_change(t, before[t], items) if before[t] else _renamed(t, items, known)
            for t, items in sorted(by_ticker.items())
        ]
        return by_ticker, [change for change in changes if change.changed]

    @_reconnecting
    def _known_securities(self, security_ids: Sequence[str]) -> set[str]:
        """Those of `security_ids` some recorded listing holds."""
        known: set[str] = set()
        for test, params in in_lists("security_id", security_ids, "s"):
            rows = self._statement().execute(
                f"SELECT DISTINCT security_id FROM listings WHERE {test}", params
            )
            known.update(row[0] for row in rows.fetchall())
        return known

    @_reconnecting
    def _replace_listings(
        self,
        by_ticker: dict[str, list[Listing]],
        changes: Sequence[ListingChange],
        requeue: Sequence[str],
        source: str | None = None,
    ) -> int:
        """The symbols' listings replaced, and the units of `requeue` the changes make wrong
        queued again (`Resets._requeue_relisted`), in one transaction; how many were."""
        now = iso(self.clock())
        rows = [
            (
                item.ticker,
                item.first_day.isoformat() if item.first_day else None,
                item.last_day.isoformat() if item.last_day else None,
                item.security_id,
                item.link,
                item.name,
                item.cik,
                item.composite_figi,
                item.share_class_figi,
                now,
                source,
            )
            for items in by_ticker.values()
            for item in items
        ]
        with self._write() as cursor:
            cursor.executemany("DELETE FROM listings WHERE ticker = ?", [(t,) for t in by_ticker])
            cursor.executemany(
                f"INSERT INTO listings ({_COLUMNS}, recorded_at, source) VALUES ({', '.join('?' * 11)})", rows
            )
            if changes and requeue:  # the Ledger's (Resets), as claim_same_period uses Claims'
                return self._requeue_relisted(cursor, changes, requeue)  # type: ignore[attr-defined]
        return 0

    @_reconnecting
    def listings_of(self, ticker: str) -> list[Listing]:
        """A symbol's listings, oldest first (none: a symbol no plan described)."""
        rows = self._statement().execute(
            f"SELECT {_COLUMNS} FROM listings WHERE ticker = :t ORDER BY COALESCE(first_day, '')",
            {"t": ticker},
        )
        return [_listing(tuple(row)) for row in rows.fetchall()]

    @_reconnecting
    def listings(self, security_id: str | None = None, tickers: Sequence[str] | None = None) -> list[Listing]:
        """Every listing (of one security, or of some symbols), by symbol then window."""
        where, params = [], {}
        if security_id is not None:
            where.append("security_id = :sid")
            params["sid"] = security_id
        if not tickers:
            return self._listings_where(where, params)
        # a universe's symbols, in slices (`in_lists`), put back in order
        found = [
            listing
            for test, names in in_lists("ticker", tickers, "t")
            for listing in self._listings_where([*where, test], {**params, **names})
        ]
        return sorted(found, key=lambda item: (item.ticker, item.first_day or dt.date.min))

    def _listings_where(self, where: Sequence[str], params: dict) -> list[Listing]:
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._statement().execute(
            f"SELECT {_COLUMNS} FROM listings{clause} ORDER BY ticker, COALESCE(first_day, '')", params
        )
        return [_listing(tuple(row)) for row in rows.fetchall()]
