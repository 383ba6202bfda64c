"""A deterministic synthetic market: "the truth" the stand-in server serves and tests compare to.

Every minute bar is a pure function of (seed, listing identity, epoch minute): whether it
exists and all of its values come from a stable integer hash of those inputs, never from
the requested range. Any split of a range into pages, months or years therefore yields
exactly the same bars, and no history has to be generated "from the beginning of time".

As on the real market, a symbol is not an identity: one symbol may carry several listings
(an unrelated company after a delisting, and bars that belong to no known listing in
between), a company keeps its identifiers (cik, FIGIs) across a rename, and symbols are
case-sensitive (`ABCpA` is not `ABCPA`). /range answers by symbol, so it serves every
listing of the symbol in one answer; the reference data tells them apart.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import polars as pl

ET = ZoneInfo("America/New_York")

MINUTE_MS = 60_000
DAY_MS = 86_400_000
SESSION_OPEN_MIN = 4 * 60  # 04:00 ET: first minute that can carry a bar
SESSION_MINUTES = 16 * 60  # 04:00 <= ET time < 20:00
REGULAR = (330, 720)  # 09:30-16:00 ET as offsets from 04:00; denser than the extended hours
REGULAR_WEIGHT = 3.0

BAR_SCHEMA: dict[str, pl.DataType] = {
    "t": pl.Int64(),
    "o": pl.Float64(),
    "h": pl.Float64(),
    "l": pl.Float64(),
    "c": pl.Float64(),
    "v": pl.Float64(),
    "vw": pl.Float64(),
    "n": pl.Int64(),
    "otc": pl.Boolean(),
}

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# one constant per independent random stream drawn from a minute's hash
_STREAMS = [np.uint64((_GOLDEN * (k + 1) * 2 + 1) & _MASK64) for k in range(8)]


# reference data carries no wall-clock time: "now" for last_updated_utc when no date is asked
REFERENCE_AS_OF = dt.date(2025, 1, 2)
# T+1 settlement (2024-05-28 on): record date = ex-dividend date; before it, one session later
T_PLUS_1 = dt.date(2024, 5, 28)
_FIGI_ALPHABET = "BCDFGHJKLMNPQRSTVWXYZ0123456789"  # FIGIs never use vowels


@dataclass(frozen=True)
class Split:
    """A split effective at the open of execution_date: split_from old shares become split_to.

    also_listed_on: a second date the splits endpoints list it on, a record of its own (its
    own id, the same ratio), as the recorded /v3/reference/splits answer lists Shopify's one
    10-for-1 split on 2022-06-22 and 2022-06-29. Prices move once, on execution_date.

    listed_under: the symbols the endpoints list it under, a record each (empty: its
    listing's own). The real API has listed a company's split under the symbol it traded
    as later rather than as then (polygon-io/issues#253: DRAD's 2019 split listed under
    STRR, its symbol from 2021); ("OLD", "NEW") lists it under both.
    corrected_from: the ratio its record was first listed with. The provider fixed the
    record in place: it says the right ratio now, under the id the first one had."""

    execution_date: dt.date
    split_from: float
    split_to: float
    also_listed_on: dt.date | None = None
    listed_under: tuple[str, ...] = ()
    corrected_from: tuple[float, float] | None = None  # the ratio first listed

    def __post_init__(self) -> None:
        object.__setattr__(self, "listed_under", tuple(self.listed_under))
        if not (self.split_from > 0 and self.split_to > 0):
            raise ValueError(f"split ratio must be positive: {self.split_from}:{self.split_to}")
        if self.also_listed_on == self.execution_date:
            raise ValueError(f"also_listed_on is another date than the split's {self.execution_date}")

    @property
    def ratio(self) -> tuple[float, float]:
        return self.split_from, self.split_to

    @property
    def listed(self) -> list[Split]:
        """The records the API lists of it: itself, and on also_listed_on."""
        once = replace(self, also_listed_on=None)
        if self.also_listed_on is None:
            return [once]
        return [once, replace(once, execution_date=self.also_listed_on)]


@dataclass(frozen=True)
class Dividend:
    """A cash dividend per share, in the share basis of its ex-dividend date.

    listed_under and corrected_from (the cash amount first listed) as a Split's."""

    ex_dividend_date: dt.date
    cash_amount: float
    pay_date: dt.date | None = None  # None: a deterministic date after the record date
    frequency: int = 4  # payments per year; 0 = special
    currency: str = "USD"  # as the API reports it (a few foreign issuers pay in their own)
    listed_under: tuple[str, ...] = ()
    corrected_from: float | None = None  # the cash amount first listed

    def __post_init__(self) -> None:
        object.__setattr__(self, "listed_under", tuple(self.listed_under))


@dataclass(frozen=True)
class Listing:
    """One symbol's listing of one company, from list_date to its last session delist_date.

    company: the identity behind cik, FIGIs, shares and the price path; listings with the
    same company are one company (a rename). None: the ticker's own identity, or
    "<ticker>@<list_date>" when the symbol has several listings (unrelated companies).
    figi: False = no composite_figi / share_class_figi (many inactive names lack them).
    renamed: its last session ended with a ticker change, not a delisting: no delisted_utc,
    and the tickers list forgets it (a later listing of the same company must follow).
    known: False = bars served under the symbol that no reference endpoint knows about
    (such as a few stray bars between two companies holding the symbol).
    event_date: the date /events gives the ticker_change into this listing's symbol; None:
    its list date (its first session). The real answer may be a few days off: the recorded
    META answer dates FB -> META 2022-06-11, a Saturday, for a first session of 06-09.
    """

    ticker: str
    list_date: dt.date | None = None  # no bars before (ET date)
    delist_date: dt.date | None = None  # no bars after (ET date); its last session
    bars_per_day: int = 200  # average minute bars per session
    name: str | None = None  # None: "<TICKER> Synthetic Holdings Inc."
    primary_exchange: str = "XNAS"
    type: str | None = "CS"  # None: no type, as the API answers many common stocks before ~2019
    splits: tuple[Split, ...] = ()
    dividends: tuple[Dividend, ...] = ()
    company: str | None = None
    figi: bool = True
    renamed: bool = False
    known: bool = True
    event_date: dt.date | None = None

    def __post_init__(self) -> None:
        # accept lists too, but keep the dataclass hashable
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "dividends", tuple(self.dividends))
        if self.renamed and self.delist_date is None:
            raise ValueError(f"{self.ticker}: a renamed listing needs its last session (delist_date)")

    @property
    def display_name(self) -> str:
        return self.name if self.name is not None else f"{self.ticker} Synthetic Holdings Inc."

    def active_on(self, day: dt.date) -> bool:
        """Listed on or before `day` and still trading on it (the delist date is its last session)."""
        listed = self.list_date is None or self.list_date <= day
        return listed and (self.delist_date is None or day <= self.delist_date)

    def trading(self, day: dt.date | None) -> bool:
        """Active as the tickers endpoint says it: on `day`, or now (None: not ended)."""
        return self.active_on(day) if day is not None else not self.ended_by(None)

    def ended_by(self, day: dt.date | None) -> bool:
        """Last session before `day` (None: at all, whatever the date), delisted or renamed."""
        if self.delist_date is None:
            return False
        return day is None or self.delist_date < day

    def delisted_by(self, day: dt.date | None) -> bool:
        """Delisted before `day` (None: at all); a rename is no delisting."""
        return self.ended_by(day) and not self.renamed

    @property
    def start(self) -> dt.date:
        """Sort key of a symbol's listings (an unbounded start sorts first)."""
        return self.list_date or dt.date.min


def _splitmix64_int(x: int) -> int:
    """Scalar splitmix64 in plain Python ints (numpy scalars would warn on overflow)."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 on uint64 arrays (array arithmetic wraps silently)."""
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(h: np.ndarray) -> np.ndarray:
    """A uniform [0, 1) per element from 53 bits of a hash."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _uniform_pair(h: np.ndarray, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniforms [0, 1) (32 bits each) from a minute hash and a stream number.

    One mix per pair halves the hashing cost, which dominates multi-year day-bar requests.
    """
    bits = _splitmix64(h ^ _STREAMS[stream])
    scale = 1.0 / (1 << 32)
    hi = (bits >> np.uint64(32)).astype(np.float64) * scale
    lo = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * scale
    return hi, lo


def _unit(key: int, salt: int) -> float:
    """A per-ticker uniform [0, 1) for constants such as the base price."""
    return (_splitmix64_int(key ^ salt) >> 11) / float(1 << 53)


def _minute_probabilities(bars_per_day: int) -> np.ndarray:
    """P(bar) for each of the 960 session minutes, regular hours denser, summing to bars_per_day."""
    weights = np.ones(SESSION_MINUTES)
    weights[REGULAR[0] : REGULAR[1]] = REGULAR_WEIGHT
    target = float(min(max(bars_per_day, 0), SESSION_MINUTES))
    p = weights * (target / weights.sum())
    if p.max() > 1.0:  # regular hours saturate: fill them and spread the rest over the others
        regular = REGULAR[1] - REGULAR[0]
        p = np.full(SESSION_MINUTES, (target - regular) / (SESSION_MINUTES - regular))
        p[REGULAR[0] : REGULAR[1]] = 1.0
    return p


def et_midnight_ms(day: dt.date) -> int:
    """00:00 America/New_York of an ET date, in epoch ms: the `t` of that date's day bar."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=ET).timestamp()) * 1000


def et_date(ms: int) -> dt.date:
    """The ET calendar date containing an epoch-ms instant."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=ET).date()


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)


def split_factors(
    splits: Iterable[Split], dates: list[dt.date], adjusted: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """(price, volume) multipliers per session date over the generated series. As on a real
    market, raw prices drop at each split (dates on or after its execution date are scaled
    by split_from/split_to, volumes by the inverse), and adjusted prices are the raw ones on
    today's share basis: every date scaled by every split, so they run on without a jump.
    None without splits, so unsplit bars stay bit-for-bit the generated series."""
    splits = list(splits)
    if not splits:
        return None
    ordinals = np.array([d.toordinal() for d in dates], dtype=np.int64)
    price, volume = np.ones(len(dates)), np.ones(len(dates))
    for split in splits:
        scaled = np.full(len(dates), True) if adjusted else ordinals >= split.execution_date.toordinal()
        price[scaled] *= split.split_from / split.split_to
        volume[scaled] *= split.split_to / split.split_from
    return price, volume


def _number(x: float) -> float | int:
    """1.0 -> 1: the API writes whole split ratios as integers."""
    return int(x) if float(x).is_integer() else float(x)


@functools.cache
def _nyse_closed(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.financial_holidays("NYSE", years=year))


def nyse_open(day: dt.date) -> bool:
    """A weekday the NYSE is open (the `holidays` package's calendar, special closures
    included): the market trades then only, as the real one (no bars on New Year's Day).
    The stand-in's own calendar: it imports nothing from the code it stands in for."""
    return day.weekday() < 5 and day not in _nyse_closed(day.year)


_SIC_CODES = (
    ("3571", "ELECTRONIC COMPUTERS"),
    ("2834", "PHARMACEUTICAL PREPARATIONS"),
    ("6022", "STATE COMMERCIAL BANKS"),
    ("7372", "SERVICES-PREPACKAGED SOFTWARE"),
    ("1311", "CRUDE PETROLEUM & NATURAL GAS"),
)


def _weekday(day: dt.date, step: int) -> dt.date:
    """`day` if it is a weekday, else the nearest weekday in the direction of `step` (+1/-1)."""
    while day.weekday() >= 5:
        day += dt.timedelta(days=step)
    return day


def _figi(key: int, salt: int) -> str:
    """A well-formed FIGI: BBG + 8 consonant/digit characters + the standard check digit."""
    body = "BBG"
    x = _splitmix64_int(key ^ salt)
    for _ in range(8):
        body += _FIGI_ALPHABET[x % len(_FIGI_ALPHABET)]
        x //= len(_FIGI_ALPHABET)
    total = 0
    for i, ch in enumerate(body):
        value = int(ch) if ch.isdigit() else ord(ch) - 55  # A=10 ... Z=35
        total += sum(int(d) for d in str(value * 2 if i % 2 else value))
    return body + str((10 - total % 10) % 10)


def _base_price(key: int) -> float:
    # log-uniform between $2 and $500: small caps and large caps alike
    return math.exp(math.log(2.0) + _unit(key, 0xB45E) * math.log(250.0))


def _joined(parts: list[dict]) -> dict:
    """Minute columns of consecutive listings of one symbol as one set (day indexes shifted)."""
    out: dict = {}
    for name in ("t", "o", "h", "l", "c", "v", "vw", "n", "otc"):
        out[name] = np.concatenate([part[name] for part in parts])
    offsets = np.cumsum([0] + [len(part["dates"]) for part in parts[:-1]])
    out["day"] = np.concatenate([part["day"] + offset for part, offset in zip(parts, offsets, strict=True)])
    out["dates"] = [day for part in parts for day in part["dates"]]
    return out


def _event_id(*parts: object) -> str:
    """An id like the API's split and dividend ids ("E" + 64 hex), stable across processes."""
    return "E" + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _check_windows(ticker: str, listings: list[Listing]) -> None:
    """A symbol's listings, in order, must not overlap: each but the last has a last session
    and the next one starts after it."""
    for before, after in itertools.pairwise(listings):
        if before.delist_date is None or after.list_date is None or after.list_date <= before.delist_date:
            raise ValueError(
                f"listings of {ticker} overlap: {before.list_date}..{before.delist_date} "
                f"and {after.list_date}..{after.delist_date}"
            )


class SyntheticMarket:
    """Sparse minute bars (04:00-20:00 ET, Mon-Fri) and their daily aggregates, per listing,
    served per symbol (every listing of a symbol, each in its own window)."""

    def __init__(self, listings: Iterable[Listing], seed: int = 0) -> None:
        self.seed = seed
        grouped: dict[str, list[Listing]] = {}
        for listing in dict.fromkeys(listings):  # an identical repeat is one listing
            grouped.setdefault(listing.ticker, []).append(listing)
        self._symbols: dict[str, tuple[Listing, ...]] = {}
        self._keys: dict[Listing, int] = {}
        for ticker, group in grouped.items():
            group.sort(key=lambda x: x.start)
            _check_windows(ticker, group)
            self._symbols[ticker] = tuple(group)
            for listing in group:
                self._keys[listing] = self._key_of(self._identity(listing, len(group)))
        self._check_renames()
        self._inherited = self._splits_before()
        self._listed_elsewhere = self._events_listed_elsewhere()
        self._probs: dict[int, np.ndarray] = {}
        # a ticker's dividend records: each needs the close before it (two weeks of minute
        # bars), and the stand-in asks again for every page; listings never change
        self._dividends: dict[str, tuple[dict, ...]] = {}

    @staticmethod
    def _identity(listing: Listing, listings_of_symbol: int) -> str:
        # the ticker alone for a symbol's only listing: the keys (and so every bar, FIGI and
        # cik) of a market without reused symbols stay what they always were
        if listing.company is not None:
            return listing.company
        if listings_of_symbol == 1:
            return listing.ticker
        return f"{listing.ticker}@{listing.list_date or ''}"

    def _key_of(self, identity: str) -> int:
        """Stable 64-bit key (crc32 is stable across processes, unlike hash())."""
        return _splitmix64_int(zlib.crc32(identity.encode("utf-8")) ^ _splitmix64_int(self.seed))

    def _check_renames(self) -> None:
        for listing in self._all_listings():
            if listing.renamed and not any(
                other.known
                and self._keys[other] == self._keys[listing]
                and other.list_date is not None
                and other.list_date > listing.delist_date  # type: ignore[operator]
                for other in self._all_listings()
            ):
                raise ValueError(
                    f"{listing.ticker} is renamed on {listing.delist_date}, but no later listing "
                    "of the same company follows (give both the same company)"
                )

    def _splits_before(self) -> dict[Listing, float]:
        """listing -> the price multiplier of the splits its company made under earlier
        symbols: after a split and a rename, the new symbol trades on the split's basis."""
        companies: dict[int, list[Listing]] = {}
        for listing in self._all_listings():
            companies.setdefault(self._keys[listing], []).append(listing)
        return {
            listing: math.prod(
                split.split_from / split.split_to
                for other in company
                if other.start < listing.start
                for split in other.splits
            )
            for company in companies.values()
            for listing in company
        }

    def _events_listed_elsewhere(self) -> dict[str, tuple[Listing, ...]]:
        """symbol -> the listings of other symbols with a split or a dividend listed under it."""
        out: dict[str, list[Listing]] = {}
        for listing in self._all_listings():
            named = {
                symbol for event in (*listing.splits, *listing.dividends) for symbol in event.listed_under
            }
            for symbol in sorted(named - {listing.ticker}):
                out.setdefault(symbol, []).append(listing)
        return {symbol: tuple(found) for symbol, found in out.items()}

    def _listings_listed_under(self, symbol: str) -> list[Listing]:
        """The listings whose splits and dividends may be listed under `symbol`, oldest first."""
        own = self._symbols.get(symbol, ())
        return sorted({*own, *self._listed_elsewhere.get(symbol, ())}, key=lambda x: x.start)

    @staticmethod
    def _listed_under(listing: Listing, event: Split | Dividend) -> tuple[str, ...]:
        return event.listed_under or (listing.ticker,)

    def _all_listings(self) -> Iterable[Listing]:
        for ticker in self.tickers:
            yield from self._symbols[ticker]

    # -- lookups -------------------------------------------------------------------------
    def knows(self, ticker: str) -> bool:
        """Whether the reference data knows the symbol (now or once)."""
        return any(listing.known for listing in self._symbols.get(ticker, ()))

    def listings_of(self, ticker: str) -> tuple[Listing, ...]:
        """Every listing of the symbol, known to the reference data or not, oldest first."""
        return self._symbols.get(ticker, ())

    def listing(self, ticker: str, date: dt.date | None = None) -> Listing | None:
        """The listing ticker details answer for: without a date the current holder of the
        symbol, else its most recent listing; on `date` the listing active then, else the
        most recent one ended before it; None if there is none."""
        known = [listing for listing in self._symbols.get(ticker, ()) if listing.known]
        if date is None:
            current = [listing for listing in known if listing.delist_date is None]
            return (current or known or [None])[-1]
        for listing in known:
            if listing.active_on(date):
                return listing
        ended = [listing for listing in known if listing.ended_by(date)]
        return ended[-1] if ended else None

    @property
    def tickers(self) -> list[str]:
        """Every symbol, sorted by code point (byte order: case-sensitive, "ABCPA" < "ABCpA")."""
        return sorted(self._symbols)

    def ticker_key(self, ticker: str) -> int:
        """The key of a symbol's only listing (a listing with no company of its own)."""
        return self._key_of(ticker)

    def listing_key(self, listing: Listing) -> int:
        """The key of a listing's company: its bars, FIGIs, cik and shares derive from it."""
        return self._keys[listing]

    def base_price(self, ticker: str) -> float:
        listing = self.listing(ticker)
        return _base_price(self._keys[listing] if listing is not None else self.ticker_key(ticker))

    # -- bars ----------------------------------------------------------------------------
    def minute_bars(self, ticker: str, start_ms: int, end_ms: int, *, adjusted: bool = False) -> pl.DataFrame:
        """Minute bars with start_ms <= t < end_ms, sorted by t; raw, or split-adjusted if asked."""
        cols = self._minute_columns(ticker, start_ms, end_ms, adjusted)
        return empty_bars() if cols is None else self._frame(cols)

    def day_bars(self, ticker: str, start_ms: int, end_ms: int, *, adjusted: bool = False) -> pl.DataFrame:
        """One bar per ET date that has minute bars, t = 00:00 ET; kept iff start_ms <= t < end_ms.

        Aggregated from that date's minute bars: first o, max h, min l, last c, summed v and n,
        volume-weighted vw (re-rounded to the 1e-4 price grid), otc null. Adjusted day bars
        aggregate the adjusted minute bars, so the two always agree.
        """
        if ticker not in self._symbols or end_ms <= start_ms:
            return empty_bars()
        first = et_date(start_ms)
        if et_midnight_ms(first) < start_ms:  # that date's bar starts before the window
            first += dt.timedelta(days=1)
        last = et_date(end_ms - 1)
        cols = self._minute_columns(
            ticker, et_midnight_ms(first), et_midnight_ms(last + dt.timedelta(days=1)), adjusted
        )
        if cols is None:
            return empty_bars()
        minutes = self._frame(cols).with_columns(d=pl.Series(cols["day"]))
        days = minutes.group_by("d", maintain_order=True).agg(
            o=pl.col("o").first(),
            h=pl.col("h").max(),
            l=pl.col("l").min(),
            c=pl.col("c").last(),
            v=pl.col("v").sum(),
            # volume-weighted, re-rounded to the price grid (stays within [l, h])
            vw=((pl.col("vw") * pl.col("v")).sum() / pl.col("v").sum()).round(4),
            n=pl.col("n").sum(),
        )
        midnights = np.array([et_midnight_ms(d) for d in cols["dates"]], dtype=np.int64)
        days = days.with_columns(
            t=pl.Series(midnights[days["d"].to_numpy()]), otc=pl.lit(None, dtype=pl.Boolean)
        )
        return days.select(list(BAR_SCHEMA)).cast(BAR_SCHEMA)

    def bars(
        self,
        timespan: str,
        ticker: str,
        start_ms: int,
        end_ms: int,
        *,
        limit: int | None = None,
        descending: bool = False,
        adjusted: bool = False,
    ) -> pl.DataFrame:
        """The first `limit` minute or day bars of [start_ms, end_ms) in the given order.

        Walks the window in growing chunks, so a 50,000-bar page of a decade-wide range
        generates little more than it returns; exact because bars never depend on the range.
        """
        listings = self._symbols.get(ticker)
        if not listings:
            return empty_bars()
        first, last = listings[0], listings[-1]
        if first.list_date is not None:  # nothing to generate outside the listings
            start_ms = max(start_ms, et_midnight_ms(first.list_date))
        if last.delist_date is not None:
            end_ms = min(end_ms, et_midnight_ms(last.delist_date + dt.timedelta(days=1)))
        fetch = {"minute": self.minute_bars, "day": self.day_bars}[timespan]
        need = limit if limit is not None else 1 << 62
        densest = max(listing.bars_per_day for listing in listings)
        per_day = max(1, densest) if timespan == "minute" else 1
        cap_days = 120 if timespan == "minute" else 800  # bounds memory per chunk
        days = min(cap_days, max(7.0, 1.6 * need * 7 / (5 * per_day)))
        frames, got, lo, hi = [], 0, start_ms, end_ms
        while lo < hi and got < need:
            width = int(days * DAY_MS)
            if descending:
                frame = fetch(ticker, max(lo, hi - width), hi, adjusted=adjusted)
                hi = max(lo, hi - width)
            else:
                frame = fetch(ticker, lo, min(hi, lo + width), adjusted=adjusted)
                lo = min(hi, lo + width)
            frames.append(frame)
            got += frame.height
            days = min(cap_days, days * 2)
        if not frames:
            return empty_bars()
        out = pl.concat(frames[::-1] if descending else frames)
        return (out.reverse() if descending else out).head(need)

    # -- reference data ------------------------------------------------------------------
    def list_date(self, ticker: str) -> dt.date | None:
        """The list date details report (of the listing they answer for without a date)."""
        listing = self.listing(ticker)
        return None if listing is None else self._reported_list_date(listing)

    def _reported_list_date(self, listing: Listing) -> dt.date:
        """The listing's list date, else a stable weekday in 1985-2003 (reported only; bars
        of such a listing stay unbounded)."""
        if listing.list_date is not None:
            return listing.list_date
        span = (dt.date(2003, 12, 26) - dt.date(1985, 1, 1)).days
        return _weekday(dt.date(1985, 1, 1) + dt.timedelta(days=self._keys[listing] % span), 1)

    def ticker_summary(self, ticker: str, date: dt.date | None = None) -> dict | None:
        """One /v3/reference/tickers result of the listing details answer for (see
        listing()) as of `date` (None: now); None if there is none."""
        listing = self.listing(ticker, date)
        return None if listing is None else self._summary(listing, date)

    def _summary(self, listing: Listing, date: dt.date | None) -> dict:
        key = self._keys[listing]
        out: dict[str, object] = {
            "ticker": listing.ticker,
            "name": listing.display_name,
            "market": "stocks",
            "locale": "us",
            "primary_exchange": listing.primary_exchange,
            "type": listing.type,
            "active": listing.trading(date),
            "currency_name": "usd",
            "cik": f"{1_000_000 + key % 1_000_000:010d}",
        }
        if listing.type is None:  # as the API answers many common stocks listed before ~2019
            del out["type"]
        if listing.figi:
            out["composite_figi"] = _figi(key, 0xC0F1)
            out["share_class_figi"] = _figi(key, 0x5C1A)
        out["last_updated_utc"] = f"{date or REFERENCE_AS_OF}T00:00:00Z"
        if listing.delisted_by(date):  # "the last date that the asset was traded"
            out["delisted_utc"] = f"{listing.delist_date}T00:00:00Z"
        return out

    def ticker_list(self, *, active: bool = True, date: dt.date | None = None) -> list[dict]:
        """/v3/reference/tickers results before filters, by ticker (then listing): the
        listings trading at `date` (None: now), or with active=False those delisted before
        it. A listing not yet listed at `date`, or renamed away by then, is in neither."""
        out = []
        for ticker in self.tickers:
            for listing in self._symbols[ticker]:
                if not listing.known:
                    continue
                keep = listing.trading(date) if active else listing.delisted_by(date)
                if keep:
                    out.append(self._summary(listing, date))
        return out

    def reference(self, ticker: str, date: dt.date | None = None) -> dict | None:
        """Ticker details as /v3/reference/tickers/{T} reports them (None: 404), for the
        listing listing(ticker, date) picks."""
        listing = self.listing(ticker, date)
        if listing is None:
            return None
        summary = self._summary(listing, date)
        key = self._keys[listing]
        shares = 5_000_000 + key % 2_000_000_000
        out = {k: v for k, v in summary.items() if k not in ("last_updated_utc", "delisted_utc")}
        out["market_cap"] = round(shares * _base_price(key), 2)
        out["list_date"] = self._reported_list_date(listing).isoformat()
        out["share_class_shares_outstanding"] = shares
        out["weighted_shares_outstanding"] = shares - key % 1000
        # as the recorded details carry them (a four-digit string, and its words)
        out["sic_code"], out["sic_description"] = _SIC_CODES[key % len(_SIC_CODES)]
        if "delisted_utc" in summary:
            out["delisted_utc"] = summary["delisted_utc"]
        return out

    def events(self, identifier: str) -> dict | None:
        """/vX/reference/tickers/{id}/events results: the ticker_change events (the day each
        symbol of the company started, or its listing's `event_date`), newest first, of
        the company whose composite FIGI is `identifier`, else of the company holding the
        symbol `identifier` now; None (404) for a symbol nobody holds now, as the real API
        misses delisted names."""
        known = [listing for listing in self._all_listings() if listing.known]
        by_figi = {_figi(self._keys[x], 0xC0F1): self._keys[x] for x in known if x.figi}
        key = by_figi.get(identifier)
        if key is None:
            holder = self.listing(identifier)
            if holder is None or holder.delist_date is not None:
                return None
            key = self._keys[holder]
        company = sorted((x for x in known if self._keys[x] == key), key=self._reported_list_date)
        latest = company[-1]
        out: dict[str, object] = {"name": latest.display_name}
        if latest.figi:
            out["composite_figi"] = _figi(key, 0xC0F1)
        out["cik"] = f"{1_000_000 + key % 1_000_000:010d}"
        out["events"] = [
            {
                "ticker_change": {"ticker": listing.ticker},
                "type": "ticker_change",
                "date": (listing.event_date or self._reported_list_date(listing)).isoformat(),
            }
            for listing in reversed(company)
        ]
        return out

    def split_records(self, ticker: str | None = None) -> list[dict]:
        """/stocks/v1/splits results of one ticker (None: all), by ticker, newest first.

        historical_adjustment_factor is the product of split_from/split_to over this split
        and every later one of the listing: what a price from before this split, and after
        the previous one, is multiplied by to be adjusted (the spec's definition).
        """
        out = []
        for symbol in [ticker] if ticker is not None else self.tickers:
            for listing in reversed(self._listings_listed_under(symbol)):
                factor = 1.0
                # a split also listed on a second date is two records, each counted in the
                # factors (the API's answer agrees with itself, and is wrong)
                records = [record for split in listing.splits for record in split.listed]
                for split in sorted(records, key=lambda x: x.execution_date)[::-1]:
                    factor *= split.split_from / split.split_to
                    if symbol in self._listed_under(listing, split):
                        out.append(self._split_record(symbol, split, factor))
        return out

    def dividend_records(self, ticker: str | None = None) -> list[dict]:
        """/stocks/v1/dividends results of one ticker (None: all), by ticker, newest first.

        historical_adjustment_factor is the product of (1 - cash / previous close) over this
        dividend's ex-date and every later one of the listing, both split-adjusted to today's
        share basis; cash is the sum of the dividends going ex that day (each of their records
        has the day's factor).
        """
        out = []
        for symbol in [ticker] if ticker is not None else self.tickers:
            if symbol not in self._dividends:
                self._dividends[symbol] = self._dividends_of(symbol)
            out.extend(dict(record) for record in self._dividends[symbol])
        return out  # new lists and dicts each time: callers sort and may change them

    def _dividends_of(self, symbol: str) -> tuple[dict, ...]:
        out = []
        for listing in reversed(self._listings_listed_under(symbol)):
            factor = 1.0
            newest_first = sorted(listing.dividends, key=lambda x: x.ex_dividend_date)[::-1]
            for ex in sorted({div.ex_dividend_date for div in newest_first}, reverse=True):
                same_day = [div for div in newest_first if div.ex_dividend_date == ex]
                later_splits = self._later_split_factor(listing, ex)
                close = self._close_before(listing.ticker, ex)  # where it traded then
                if close:  # dividends going ex together are one distribution: 1 - (D1 + D2) / P
                    total = sum(div.cash_amount for div in same_day) * later_splits
                    factor *= max(0.0, 1.0 - total / close)
                for div in same_day:  # each record of the day: the factor of the day's total
                    cash = div.cash_amount * later_splits
                    if symbol in self._listed_under(listing, div):
                        out.append(self._dividend_record(symbol, self._keys[listing], div, cash, factor))
        return tuple(out)

    def _split_record(self, ticker: str, split: Split, factor: float) -> dict:
        return {
            "adjustment_type": "reverse_split" if split.split_to < split.split_from else "forward_split",
            "execution_date": split.execution_date.isoformat(),
            "historical_adjustment_factor": round(factor, 6),
            # a record corrected in place keeps the id its first ratio gave it
            "id": _event_id(
                self.seed, "split", ticker, split.execution_date, *(split.corrected_from or split.ratio)
            ),
            "split_from": _number(split.split_from),
            "split_to": _number(split.split_to),
            "ticker": ticker,
        }

    def _dividend_record(
        self, ticker: str, key: int, div: Dividend, adjusted_cash: float, factor: float
    ) -> dict:
        ex = div.ex_dividend_date
        h = _splitmix64_int(key ^ ex.toordinal())
        declared = _weekday(ex - dt.timedelta(days=14 + h % 21), -1)
        record = ex if ex >= T_PLUS_1 else _weekday(ex + dt.timedelta(days=1), 1)
        paid = div.pay_date or _weekday(record + dt.timedelta(days=7 + (h >> 8) % 21), 1)
        return {
            "cash_amount": _number(div.cash_amount),
            "currency": div.currency,
            "declaration_date": declared.isoformat(),
            "distribution_type": "recurring" if div.frequency > 0 else "special",
            "ex_dividend_date": ex.isoformat(),
            "frequency": div.frequency,
            "historical_adjustment_factor": round(factor, 6),
            "id": _event_id(  # a record corrected in place keeps the id its first cash gave it
                self.seed,
                "dividend",
                ticker,
                ex,
                div.cash_amount if div.corrected_from is None else div.corrected_from,
            ),
            "pay_date": paid.isoformat(),
            "record_date": record.isoformat(),
            "split_adjusted_cash_amount": round(adjusted_cash, 6),
            "ticker": ticker,
        }

    @staticmethod
    def _later_split_factor(listing: Listing, day: dt.date) -> float:
        """Price multiplier of `day` on today's share basis (splits executed after it)."""
        factor = 1.0
        for split in listing.splits:
            if split.execution_date > day:
                factor *= split.split_from / split.split_to
        return factor

    def _close_before(self, ticker: str, day: dt.date) -> float | None:
        """Adjusted close of the last session before `day` (None if there is none in 2 weeks)."""
        start = et_midnight_ms(day - dt.timedelta(days=14))
        last = self.bars("day", ticker, start, et_midnight_ms(day), limit=1, descending=True, adjusted=True)
        return float(last["c"][0]) if last.height else None

    # -- generation ----------------------------------------------------------------------
    def _session_dates(self, listing: Listing, start_ms: int, end_ms: int) -> list[dt.date]:
        first, last = et_date(start_ms), et_date(end_ms - 1)
        if listing.list_date is not None:
            first = max(first, listing.list_date)
        if listing.delist_date is not None:
            last = min(last, listing.delist_date)
        out = []
        day = first
        while day <= last:
            if nyse_open(day):
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    def _minute_columns(self, ticker: str, start_ms: int, end_ms: int, adjusted: bool = False) -> dict | None:
        """Every listing's minute columns of the symbol in [start_ms, end_ms), oldest first."""
        listings = self._symbols.get(ticker)
        if not listings or end_ms <= start_ms:
            return None
        if len(listings) == 1:  # the usual case, without the joining below
            return self._listing_columns(listings[0], start_ms, end_ms, adjusted)
        parts = [self._listing_columns(listing, start_ms, end_ms, adjusted) for listing in listings]
        found = [part for part in parts if part is not None]
        if len(found) <= 1:
            return found[0] if found else None
        return _joined(found)

    def _listing_columns(self, listing: Listing, start_ms: int, end_ms: int, adjusted: bool) -> dict | None:
        dates = self._session_dates(listing, start_ms, end_ms)
        if not dates:
            return None
        # 04:00-20:00 ET never crosses a DST switch (02:00), so each session is 960 whole minutes
        opens = np.array([et_midnight_ms(d) // MINUTE_MS + SESSION_OPEN_MIN for d in dates], dtype=np.int64)
        offsets = np.arange(SESSION_MINUTES, dtype=np.int64)
        minute = (opens[:, None] + offsets[None, :]).ravel()
        day_idx = np.repeat(np.arange(len(dates), dtype=np.int64), SESSION_MINUTES)
        probs = self._probs.get(listing.bars_per_day)
        if probs is None:
            probs = self._probs.setdefault(listing.bars_per_day, _minute_probabilities(listing.bars_per_day))
        key = self._keys[listing]
        h = _splitmix64(minute.astype(np.uint64) ^ np.uint64(key))
        keep = _uniform(h) < np.tile(probs, len(dates))
        keep &= (minute >= -(-start_ms // MINUTE_MS)) & (minute * MINUTE_MS < end_ms)
        minute, h, day_idx = minute[keep], h[keep], day_idx[keep]
        if minute.size == 0:
            return None
        cols = self._values(key, minute, h)
        self._adjust(cols, listing, dates, day_idx, adjusted)
        cols["day"] = day_idx
        cols["dates"] = dates
        return cols

    def _adjust(
        self, cols: dict, listing: Listing, dates: list[dt.date], day_idx: np.ndarray, adjusted: bool
    ) -> None:
        """Apply the splits to generated bar values in place, raw or adjusted (prices back on
        the 1e-4 grid): the listing's own, and those its company made under earlier symbols."""
        factors = split_factors(listing.splits, dates, adjusted)
        earlier = self._inherited[listing]
        if factors is None and earlier == 1.0:
            return
        if factors is None:
            factors = np.ones(len(dates)), np.ones(len(dates))
        price, volume = factors[0][day_idx] * earlier, factors[1][day_idx] / earlier
        for name in ("o", "h", "l", "c", "vw"):
            # rounding is monotone, so h >= max(o, c), l <= min(o, c) and l <= vw <= h survive
            cols[name] = np.round(cols[name] * price, 4)
        cols["v"] = cols["v"] * volume

    def _values(self, key: int, minute: np.ndarray, h: np.ndarray) -> dict:
        """Bar values for existing minutes; a slow deterministic walk of the price level."""
        base = _base_price(key)
        phase1, phase2 = _unit(key, 1) * 2 * math.pi, _unit(key, 2) * 2 * math.pi
        m = minute.astype(np.float64)
        level = base * (1 + 0.2 * np.sin(m / (1440 * 37) + phase1)) * (1 + 0.03 * np.sin(m / 390 + phase2))
        u_o, u_c = _uniform_pair(h, 1)
        u_h, u_l = _uniform_pair(h, 2)
        u_vw, u_v = _uniform_pair(h, 3)
        u_frac, u_n = _uniform_pair(h, 4)
        u_otc, _ = _uniform_pair(h, 5)
        o = np.round(level * (1 + 0.004 * (u_o - 0.5)), 4)
        c = np.round(level * (1 + 0.004 * (u_c - 0.5)), 4)
        # ceil/floor on the 1e-4 grid keep h >= max(o, c) and l <= min(o, c) exactly
        hi = np.ceil(np.maximum(o, c) * (1 + 0.002 * u_h) * 1e4) / 1e4
        lo = np.floor(np.minimum(o, c) * (1 - 0.002 * u_l) * 1e4) / 1e4
        vw = np.round(lo + (hi - lo) * u_vw, 4)
        v = np.maximum(1.0, np.round(20 * np.exp(5 * u_v)))
        v = np.where(u_frac < 0.03, v + 0.5, v)  # fractional-share volume
        n = np.maximum(1, np.round(v / (20 + 80 * u_n))).astype(np.int64)
        otc = u_otc < 1 / 2000
        return {
            "t": minute * MINUTE_MS,
            "o": o,
            "h": hi,
            "l": lo,
            "c": c,
            "v": v,
            "vw": vw,
            "n": n,
            "otc": otc,
        }

    @staticmethod
    def _frame(cols: dict) -> pl.DataFrame:
        frame = pl.DataFrame({k: cols[k] for k in ("t", "o", "h", "l", "c", "v", "vw", "n")})
        otc = pl.Series("otc", cols["otc"])
        # otc is null except when True, as the API omits it unless true
        return frame.with_columns(otc=pl.when(otc).then(pl.lit(True))).cast(BAR_SCHEMA)
