"""Adjusted on read: split and dividend factors applied to raw bars as they are read.

Nothing on disk changes: `Download.bars(..., adjust=...)` joins each bar to the factor in
force on its session date (a small table of steps per security) and multiplies.

Conventions (README "Adjusted on read", docs/research.md):

- A split `split_from -> split_to` executed on day E (effective at E's open) multiplies
  the prices of every bar before E by r = split_from / split_to and divides its volume by
  r (a 1:4 split: earlier prices / 4, volumes x 4). `transactions` is never adjusted.
- A cash dividend D with ex-date X is a total-return factor
  f = 1 - D / P (D the sum of the security's cash dividends with that ex-date: a regular
  and a special one going ex together are one distribution), P the "previous close": the
  close of the security's latest session before X (within 14 calendar days) in its day or
  minute bars, whichever has the later one (the day bar's close on the same session; a
  session held only in minute bars, its day unit not fetched yet, beats an older day
  bar; from minute bars, the session's last trade, after-hours included), under any of
  its symbols (after a rename, the old one's); both read raw and put on X's share basis
  (split between them applied). It multiplies the prices (not
  volumes) of every bar before X, as CRSP's cumulative factor does. A dividend without a
  previous close, with D >= P, or paid in another currency than the bars' (USD), is left
  out, with a warning.
- `as_of` = D puts every price on the share (and dividend) basis of day D: bars before D
  get the events in (bar, D], bars after D are divided by the events in (D, bar], so the
  series has no jump anywhere and equals the raw one on D. None (the default): today's
  basis (US/Eastern, `periods.et_today`), the API's `adjusted=true` convention: a split
  or a dividend announced for a later day (the listings carry them from their
  announcement) changes no price before it has happened. Events after both the basis
  and today change no bar (no session after today is held): they are left out.
- Events belong to a security (`security_id`): an event of symbol T on day E is the one of
  the listing of T whose window holds E (else of T's company that traded under another
  symbol on E: one listed under the symbol a company took after it, or left a few
  sessions before it, `EventOwners`; of none when two companies could own it, left out
  and said), and
  it applies to every bar of that security, under any of its symbols, once however many
  of its symbols list it (a split they list on dates days apart too, `_one_date_each`,
  said). Bars inside no listing (null `security_id`) stay raw.
- What the ledger may not know is said, never refused: a ticker whose splits (dividends)
  unit is not settled (`UnsettledAdjustmentWarning`), or whose bars in the read go past
  the last session the ledger knows its splits (dividends) through
  (`StaleAdjustmentWarning`): the unit's fetch, or `sync`'s last look at the market's
  listing (`sync.checked.<dataset>`), whichever is later. An event in between is in no
  table, and the series may sit on two share bases across it.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import polars as pl

from polyledger.datasets.dividends import NATURAL_KEY, unique_dividends
from polyledger.datasets.splits import SAME_SPLIT_WITHIN
from polyledger.errors import InputError, counted, user_stacklevel
from polyledger.ledger import SETTLED
from polyledger.ledger.queries import OPEN_UTC
from polyledger.ledger.records import in_lists
from polyledger.listings import EventOwners, Listing
from polyledger.periods import ET, et_today, stored_date
from polyledger.sync_refs import checked_key
from polyledger.trading_days import is_trading_day

if TYPE_CHECKING:
    from polyledger.download import Download

CHOICES = ("splits", "splits+dividends")
PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")
CLOSE_LOOKBACK = dt.timedelta(days=14)  # how far back a dividend's previous close is looked for
BAR_CURRENCY = "USD"  # what US stock bars are priced in: a dividend in another currency is left out
_BEGINNING = dt.datetime(1800, 1, 1, tzinfo=dt.timezone.utc)
_EVENTS = {"security_id": pl.String(), "date": pl.Date(), "split": pl.Float64(), "dividend": pl.Float64()}


class UnsettledAdjustmentWarning(UserWarning):
    """Some tickers' splits or dividends units are not fetched (or failed): their adjusted
    bars may miss events."""


class StaleAdjustmentWarning(UnsettledAdjustmentWarning):
    """Some tickers' bars go past the last session the ledger knows their splits (or
    dividends) through: an event since is in no table, and their adjusted bars may sit
    on two share bases across it."""


def check_choice(adjust: str | None, dataset: str, as_of: dt.date | str | None = None) -> None:
    if adjust is None:
        if as_of is not None:  # a share basis means nothing to raw bars: not silently ignored
            raise InputError(
                f"as_of applies to adjusted reads: pass adjust={' or '.join(map(repr, CHOICES))}"
            )
        return
    if adjust not in CHOICES:
        raise InputError(f"unknown adjust {adjust!r}: choose None, {', '.join(map(repr, CHOICES))}")
    if dataset not in ("minute", "day"):
        raise InputError(f"adjust applies to minute and day bars, not {dataset}")


def refuse_adjusted(download: Download, dataset: str, tickers: Sequence[str]) -> None:
    """One line, before any read, when the bars were fetched adjusted: adjusting them again
    would apply every split twice."""
    setting = download.ledger.query("SELECT value FROM settings WHERE key = 'adjusted'", {})
    # the read's tickers in slices (`in_lists`): a market's worth is past any database's bound variables
    fetched = any(
        download.ledger.query(
            "SELECT count(*) AS n FROM units WHERE dataset = :d AND state = 'done' AND adjusted = :yes "
            f"AND {test}",
            {"d": dataset, "yes": True, **params},
        )[0].n
        for test, params in in_lists("ticker", tickers, "t")
    )
    if fetched or (setting and setting[0].value == "true"):
        raise InputError(
            "this ledger's bars were fetched adjusted (adjusted=true): adjusting them on read would "
            "apply each split twice; read them with adjust=None, or fetch raw bars (`run --unadjusted`)"
        )


def adjusted(
    download: Download,
    frame: pl.LazyFrame,
    tickers: Sequence[str],
    adjust: str,
    as_of: dt.date | None,
    *,
    in_time_order: bool = False,
    bars_to: Mapping[str, dt.date] | None = None,
) -> pl.LazyFrame:
    """`frame` (bars of `tickers`, one symbol's files after another's in that order, each
    in time order; or each security's bars `in_time_order`) with the factors applied, on
    the share basis of `as_of` (None: today's). `bars_to`: the last session each ticker's
    bars in the read may hold, for the warning of events the ledger may not know yet."""
    listings = _related_listings(download, tickers)
    symbols = sorted({listing.ticker for listing in listings} | set(tickers))
    with_dividends = adjust == "splits+dividends"
    _warn_unsettled(download, symbols, ("splits", "dividends") if with_dividends else ("splits",), bars_to)
    # only events up to today (or a later as_of) are known to have happened: without
    # as_of every one of them applies, which is today's basis; an announced split or
    # dividend after it would otherwise rebase every bar, the latest session's too. An
    # event after both is in B(bar) and B(as_of) alike for every bar there is (no session
    # after today is held): left out, it costs no previous close, nor a warning for none
    horizon = et_today() if as_of is None else max(as_of, et_today())
    # whose an event listed under one of the symbols is: every company that ever held one of
    # them is asked (a symbol reused after a rename is another company's now)
    holders = download.ledger.listings(tickers=symbols)
    events = split_events(_split_rows(download, symbols), holders).filter(pl.col("date") <= horizon)
    if with_dividends:
        events = pl.concat([events, dividend_events(download, symbols, holders, events, horizon)])
    rank = {ticker: i for i, ticker in enumerate(tickers)}  # looked up per listing: a set, not a list
    in_order = in_time_order or all(
        _traded_in_read_order(group, rank) for group in _by_security(listings, rank).values()
    )
    return apply_steps(frame, factor_steps(events, as_of), in_time_order=in_order)


def _by_security(listings: Sequence[Listing], tickers: Mapping[str, int]) -> dict[str | None, list[Listing]]:
    groups: dict[str | None, list[Listing]] = defaultdict(list)
    for listing in listings:
        if listing.ticker in tickers:
            groups[listing.security_id].append(listing)
    return groups


def _traded_in_read_order(group: Sequence[Listing], rank: Mapping[str, int]) -> bool:
    """Whether a security's bars, read one symbol's files after another's (in the ledger's
    order, `rank`: symbol -> position), come in time order: its symbols traded one after
    the other in that order (a rename to a name that sorts after the old one), or it has
    one symbol."""
    names = sorted({listing.ticker for listing in group}, key=rank.__getitem__)
    first = {n: min(x.first_day or dt.date.min for x in group if x.ticker == n) for n in names}
    last = {n: max(x.last_day or dt.date.max for x in group if x.ticker == n) for n in names}
    return all(last[a] < first[b] for a, b in zip(names, names[1:], strict=False))


def factor_steps(events: pl.DataFrame, as_of: dt.date | None) -> pl.DataFrame:
    """Per security, the (price, volume) multipliers from each event day on, as a step
    table (security_id, since = 00:00 ET of the day, price, volume), since-sorted.

    With B(d) = the product of the ratios of the events after day d, a bar of day d is
    multiplied by B(d) / B(as_of) (B(as_of) = 1 without as_of: every event in `events`
    applies; `adjusted` passes those up to today, today's basis): see the module's doc."""
    by_security: dict[str, dict[dt.date, list[float]]] = defaultdict(dict)
    for security, day, split, dividend in events.iter_rows():
        split_now, dividend_now = by_security[security].get(day, [1.0, 1.0])
        by_security[security][day] = [split_now * split, dividend_now * dividend]
    rows: list[tuple[str, dt.datetime, float, float]] = []
    for security, days in by_security.items():
        ordered = sorted(days.items())
        base_split, base_dividend = _after(ordered, as_of)
        later_split = math.prod(s for _, (s, _d) in ordered)
        later_dividend = math.prod(d for _, (_s, d) in ordered)
        rows.append(_step(security, _BEGINNING, later_split, later_dividend, base_split, base_dividend))
        for day, (split, dividend) in ordered:  # from this day on, this event no longer applies
            later_split, later_dividend = later_split / split, later_dividend / dividend
            since = dt.datetime(day.year, day.month, day.day, tzinfo=ET).astimezone(dt.timezone.utc)
            rows.append(_step(security, since, later_split, later_dividend, base_split, base_dividend))
    schema = {
        "security_id": pl.String(),
        "since": pl.Datetime("ms", "UTC"),
        "_price": pl.Float64(),
        "_volume": pl.Float64(),
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort("since")


def _step(
    security: str, since: dt.datetime, split: float, dividend: float, base_split: float, base_dividend: float
) -> tuple[str, dt.datetime, float, float]:
    price_split = split / base_split
    return security, since, price_split * dividend / base_dividend, 1.0 / price_split


def _after(ordered: list[tuple[dt.date, list[float]]], as_of: dt.date | None) -> tuple[float, float]:
    """B(as_of): the product of the events after as_of (1 without as_of)."""
    if as_of is None:
        return 1.0, 1.0
    later = [ratios for day, ratios in ordered if day > as_of]
    return math.prod(s for s, _ in later), math.prod(d for _, d in later)


def apply_steps(frame: pl.LazyFrame, steps: pl.DataFrame, *, in_time_order: bool = True) -> pl.LazyFrame:
    """Each bar times the step in force at its timestamp for its security (1 if none).
    `in_time_order`: each security's bars are in time order already (else they are sorted
    for the join, then put back in their order)."""
    if steps.height == 0:
        return frame
    columns = frame.collect_schema().names()
    if not in_time_order:
        frame = frame.with_row_index("_row").sort("security_id", "timestamp")
    joined = frame.join_asof(
        steps.lazy(),
        left_on="timestamp",
        right_on="since",
        by="security_id",
        strategy="backward",
        check_sortedness=False,  # each security's bars are in time order, as are its steps
    )
    if not in_time_order:
        joined = joined.sort("_row")
    price, volume = pl.col("_price").fill_null(1.0), pl.col("_volume").fill_null(1.0)
    return joined.with_columns(
        *[(pl.col(name) * price).alias(name) for name in PRICE_COLUMNS],
        (pl.col("volume") * volume).alias("volume"),
    ).select(columns)


def split_events(
    rows: Iterable[tuple[str, dt.date, float, float]], listings: Sequence[Listing]
) -> pl.DataFrame:
    """(security_id, date, split ratio, 1.0) of each (ticker, execution_date, from, to) of a
    known company (`EventOwners`), each split once: one listed under two of its symbols
    is one split, on one date (`_one_date_each`)."""
    owners = EventOwners(listings)
    dated: dict[tuple[str, float], dict[dt.date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for ticker, day, split_from, split_to in rows:
        security = owners.security_on(ticker, day)
        if security is not None and split_from > 0 and split_to > 0:
            dated[(security, split_from / split_to)][day].append(ticker)
    _warn_unowned("splits", owners)
    events, said = [], []
    for (security, ratio), days in dated.items():
        for day in _one_date_each(security, ratio, days, owners, said):
            events.append((security, day, ratio, 1.0))
    if said:
        warnings.warn(
            f"{len(said)} splits listed under two symbols of a security on different dates, each "
            f"applied once: {'; '.join(said[:5])}{'; ...' if len(said) > 5 else ''}",
            UnsettledAdjustmentWarning,
            stacklevel=user_stacklevel(),
        )
    return pl.DataFrame(events, schema=_EVENTS, orient="row")


def _warn_unowned(kind: str, owners: EventOwners) -> None:
    """Say which events `owners` found more than one company for (`EventOwners.security_on`):
    left out, as a wrong owner's would move another company's prices."""
    if not owners.ambiguous:
        return
    named = [
        f"{ticker} {day} ({', '.join(sorted(securities))})"
        for (ticker, day), securities in sorted(owners.ambiguous.items())
    ]
    warnings.warn(
        f"{len(named)} {kind} left out of the adjustment, each dated outside every listing of its symbol, "
        "more than one company could own it (took the symbol after the date or left it just before, "
        f"trading under another symbol then; or lists under it days later): {', '.join(named[:5])}"
        f"{', ...' if len(named) > 5 else ''}",
        UnsettledAdjustmentWarning,
        stacklevel=user_stacklevel(),
    )


def _one_date_each(
    security: str, ratio: float, days: Mapping[dt.date, list[str]], owners: EventOwners, said: list[str]
) -> list[dt.date]:
    """The dates one security's splits of one ratio apply on: records under different
    symbols at most SAME_SPLIT_WITHIN apart are one split listed twice (the provider's
    records disagree; one symbol's own records are one date each already,
    `splits.one_date_each`), applied on the date of the record under the symbol the
    security traded under then; when both (or neither) traded then, on the date of the
    record under the symbol the security took last (the provider lists and corrects a
    company's events under its current symbol: polygon-io/issues#253). Each choice is
    added to `said`, naming the records."""
    kept = []
    for group in _listed_apart(days):
        chosen = _traded_then(security, group, owners)
        if len(group) > 1:
            records = ", ".join(f"{'/'.join(tickers)} {day}" for day, tickers in group)
            said.append(
                f"{security}: one {_ratio_text(ratio)} split listed as {records}, applied once, on {chosen}"
            )
        kept.append(chosen)
    return kept


def _listed_apart(days: Mapping[dt.date, list[str]]) -> list[list[tuple[dt.date, list[str]]]]:
    """The records of one security's splits of one ratio, in date order, grouped: a record
    joins the group before it when it is under other symbols than the group's and at most
    SAME_SPLIT_WITHIN from its first date."""
    groups: list[list[tuple[dt.date, list[str]]]] = []
    for day, tickers in sorted(days.items()):
        last = groups[-1] if groups else None
        if (
            last is not None
            and day - last[0][0] <= SAME_SPLIT_WITHIN
            and not {t for _, held in last for t in held} & set(tickers)
        ):
            last.append((day, tickers))
        else:
            groups.append([(day, tickers)])
    return groups


def _traded_then(security: str, group: Sequence[tuple[dt.date, list[str]]], owners: EventOwners) -> dt.date:
    """The date of the record listed under the symbol `security` traded under on that date,
    if one record's is; else of the one under the symbol it took last."""
    traded = [day for day, tickers in group if owners.symbols_on(security, day) & set(tickers)]
    if len(traded) == 1:
        return traded[0]
    return max(group, key=lambda record: max(owners.taken_on(security, t) for t in record[1]))[0]


def _ratio_text(ratio: float) -> str:
    """A split ratio as `from:to` (0.5: 1:2)."""
    return f"{ratio:g}:1" if ratio >= 1 else f"1:{1 / ratio:g}"


def dividend_events(
    download: Download,
    symbols: Sequence[str],
    listings: Sequence[Listing],
    splits: pl.DataFrame,
    until: dt.date | None = None,
) -> pl.DataFrame:
    """(security_id, ex-date, 1.0, 1 - cash / previous close) of each ex-date of a security
    (up to `until`, when given), cash the sum of its dividends going ex that day."""
    # each dividend once: also one the API listed under two ids (the file keeps both), or
    # a file fetched before records were de-duplicated on write; a regular and a special
    # dividend of one day stay two. The read behind reference(): symbols without
    # dividends units are warned of, not refused
    listed = (
        unique_dividends(download._read_reference("dividends", symbols))
        .select(*NATURAL_KEY)
        .with_columns(pl.col("currency").fill_null(BAR_CURRENCY))
        .drop_nulls(["ticker", "ex_dividend_date", "cash_amount"])
    )
    if until is not None:  # a dividend not due yet changes no bar of today's basis
        listed = listed.filter(pl.col("ex_dividend_date") <= until)
    owned, skipped = _cash_per_ex_date(listed.collect(), listings)
    closes = (
        _previous_closes(download, [(security, ticker, ex) for security, ticker, ex, _ in owned], listings)
        if owned
        else {}
    )
    out = []
    for security, ticker, ex, cash in owned:
        found = closes.get((security, ex))
        if found is None:
            skipped.append(f"{ticker} {ex} (no close in the {CLOSE_LOOKBACK.days} days before)")
            continue
        close_day, close = found
        # the close on the ex-date's share basis: a split between the two days applied
        between = splits.filter(
            (pl.col("security_id") == security) & (pl.col("date") > close_day) & (pl.col("date") <= ex)
        )
        close *= math.prod(between["split"].to_list())
        ratio = 1.0 - cash / close
        if ratio <= 0:
            skipped.append(f"{ticker} {ex} (cash {cash} >= close {close})")
            continue
        out.append((security, ex, 1.0, ratio))
    if skipped:
        warnings.warn(
            f"{len(skipped)} dividends left out of the adjustment: {', '.join(skipped[:5])}",
            UnsettledAdjustmentWarning,
            stacklevel=user_stacklevel(),
        )
    return pl.DataFrame(out, schema=_EVENTS, orient="row")


def _cash_per_ex_date(
    dividends: pl.DataFrame, listings: Sequence[Listing]
) -> tuple[list[tuple[str, str, dt.date, float]], list[str]]:
    """(security_id, ticker, ex-date, cash) of each ex-date of a known company (`EventOwners`):
    one distribution, a regular and a special dividend going ex together summed (1 - (D1 +
    D2) / P, not (1 - D1/P)(1 - D2/P), which leaves the pre-ex prices too high; the first
    one's symbol kept, for messages). A dividend listed under two of the company's symbols
    is one dividend (`_one_distribution`). Also returns those left out: paid in another
    currency than the bars'."""
    owners = EventOwners(listings)
    listed: dict[tuple[str, dt.date], dict[str, list[_Cash]]] = defaultdict(lambda: defaultdict(list))
    rows = dividends.select(
        "ticker", "ex_dividend_date", "cash_amount", "currency", "distribution_type", "frequency"
    ).iter_rows()
    for ticker, ex, cash, currency, kind, frequency in rows:
        security = owners.security_on(ticker, ex)
        if security is not None:  # else no known company's
            listed[(security, ex)][ticker].append(_Cash(cash, currency, kind, frequency))
    _warn_unowned("dividends", owners)
    owned, skipped = [], []
    for (security, ex), by_symbol in listed.items():
        paid = []
        for ticker, cash, currency in _one_distribution(by_symbol):
            if currency.upper() == BAR_CURRENCY:
                paid.append((ticker, cash))
            else:  # 0.50 CAD is not 0.50 off a price in dollars
                skipped.append(f"{ticker} {ex} (paid in {currency}, the bars are in {BAR_CURRENCY})")
        if paid:
            owned.append((security, paid[0][0], ex, sum(cash for _, cash in paid)))
    return owned, skipped


class _Cash(NamedTuple):
    """One dividend record's cash event: its amount and what kind of payment it says."""

    cash: float
    currency: str
    kind: str | None  # distribution_type: CD regular, SC special, ...
    frequency: int | None

    def same_event(self, other: _Cash) -> bool:
        """The same cash event listed twice: the same amount, and no kind both records
        give that differs (a field one leaves out is not known to differ)."""
        return (
            self.cash == other.cash
            and self.currency.upper() == other.currency.upper()
            and all(
                a is None or b is None or a == b
                for a, b in ((self.kind, other.kind), (self.frequency, other.frequency))
            )
        )


def _one_distribution(by_symbol: Mapping[str, list[_Cash]]) -> list[tuple[str, float, str]]:
    """(ticker, cash, currency) of each dividend of one security's ex-date, from the records
    listed under each of its symbols (each symbol's once already, `unique_dividends`). A
    record under another symbol that is the same cash event (`_Cash.same_event`: the
    provider fills pay, record and declaration dates, frequency and type per record, and
    has left them out of one) as one kept from another symbol is that one; each symbol's
    own records are distinct events (a regular and a special dividend of one amount stay
    two). The symbols listing most are taken first."""
    kept: list[tuple[str, _Cash]] = []
    for ticker, records in sorted(by_symbol.items(), key=lambda item: (-len(item[1]), item[0])):
        others = list(range(len(kept)))  # every record kept so far is another symbol's
        for record in records:
            match = next((i for i in others if kept[i][1].same_event(record)), None)
            if match is None:
                kept.append((ticker, record))
            else:
                others.remove(match)  # one of this symbol's records stands for it, no other
    return [(ticker, record.cash, record.currency) for ticker, record in kept]


def _previous_closes(
    download: Download, dividends: Sequence[tuple[str, str, dt.date]], listings: Sequence[Listing]
) -> dict[tuple[str, dt.date], tuple[dt.date, float]]:
    """{(security_id, ex-date): (session date, raw close)} of the security's latest session
    before each ex-date (within CLOSE_LOOKBACK) across its day and minute bars, under
    whichever of its symbols it traded then (an ex-date on the first session after a rename
    closed under the old symbol): day bars first (one read, only the sessions near an
    ex-date kept), then minute bars for the dividends whose day bar is not of the last
    trading day before the ex-date (a read of the days before each): a later session held
    only in minute bars (day units not fetched yet) beats an older day bar. On the same
    session the day bar's close is kept."""
    found: dict[tuple[str, dt.date], tuple[dt.date, float]] = {}
    for dataset in ("day", "minute"):
        missing = [
            (security, _symbols_before(listings, security, ticker, ex), ex)
            for security, ticker, ex in dividends
            # a day bar of the session just before the ex-date is the latest there can be
            if (security, ex) not in found or found[(security, ex)][0] < _last_trading_day_before(ex)
        ]
        if not missing:
            break
        near = pl.DataFrame(
            [
                (security, ex - dt.timedelta(days=k))
                for security, _, ex in missing
                for k in range(1, CLOSE_LOOKBACK.days + 1)
            ],
            schema={"security_id": pl.String(), "session": pl.Date()},
            orient="row",
        ).unique()
        with warnings.catch_warnings():  # the caller warns about this selection already
            warnings.simplefilter("ignore")
            # the read behind bars(), not bars(): which refuses tickers without units of the
            # dataset, and a security's symbols may have none (a download without day bars)
            if dataset == "day":
                first = min(ex for _, _, ex in missing) - CLOSE_LOOKBACK
                last = max(ex for _, _, ex in missing) - dt.timedelta(days=1)
                tickers = sorted({ticker for _, symbols, _ in missing for ticker in symbols})
                reads = [download._read_bars("day", tickers, first, last)]
            else:
                reads = [
                    download._read_bars("minute", symbols, ex - CLOSE_LOOKBACK, ex - dt.timedelta(days=1))
                    for _, symbols, ex in missing
                ]
        closes = (
            pl.concat(reads)
            .select(
                "security_id",
                pl.col("timestamp").dt.convert_time_zone(str(ET)).dt.date().alias("session"),
                "close",
            )
            .join(near.lazy(), on=["security_id", "session"], how="semi")
            .group_by("security_id", "session")
            .agg(pl.col("close").last())  # bars are in time order: the session's last close
            .collect()
            .sort("session")
        )
        wanted = pl.DataFrame(
            [(security, ex, ex - dt.timedelta(days=1)) for security, _, ex in missing],
            schema={"security_id": pl.String(), "ex": pl.Date(), "before": pl.Date()},
            orient="row",
        ).sort("before")
        matched = wanted.join_asof(
            closes,
            left_on="before",
            right_on="session",
            by="security_id",
            strategy="backward",
            tolerance=f"{CLOSE_LOOKBACK.days - 1}d",
            check_sortedness=False,
        ).drop_nulls("close")
        for security, ex, session, close in matched.select(
            "security_id", "ex", "session", "close"
        ).iter_rows():
            if (security, ex) not in found or session > found[(security, ex)][0]:
                found[(security, ex)] = (session, close)  # only a later session replaces a day bar's
    return found


def _last_trading_day_before(day: dt.date) -> dt.date:
    """The NYSE's last trading day before `day`."""
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def _symbols_before(listings: Sequence[Listing], security: str, ticker: str, ex: dt.date) -> list[str]:
    """The dividend's symbol and every other symbol of its security listed in the
    CLOSE_LOOKBACK days before its ex-date."""
    span = Listing(ticker, first_day=ex - CLOSE_LOOKBACK, last_day=ex - dt.timedelta(days=1))
    others = {x.ticker for x in listings if x.security_id == security and x.overlaps(span)}
    return sorted(others | {ticker})


def _split_rows(download: Download, symbols: Sequence[str]) -> list[tuple[str, dt.date, float, float]]:
    rows = [
        row
        for test, params in in_lists("ticker", symbols, "t")
        for row in download.ledger.query(
            f"SELECT ticker, execution_date, split_from, split_to FROM splits WHERE {test}", params
        )
    ]
    return [(row.ticker, stored_date(row.execution_date), row.split_from, row.split_to) for row in rows]


def _related_listings(download: Download, tickers: Sequence[str]) -> list[Listing]:
    """The listings of `tickers` and of every symbol their securities traded under."""
    own = download.ledger.listings(tickers=list(tickers)) if tickers else download.ledger.listings()
    securities = {listing.security_id for listing in own}
    everything = download.ledger.listings()
    return [listing for listing in everything if listing.security_id in securities]


def _warn_unsettled(
    download: Download,
    symbols: Sequence[str],
    datasets: Sequence[str],
    bars_to: Mapping[str, dt.date] | None = None,
) -> None:
    """Say which tickers' splits (dividends) are not known: planned but not settled, or
    never planned; their adjusted bars may miss events. With `bars_to`, also those whose
    bars go past what their settled units know (`_warn_stale`)."""
    if not symbols:
        return
    for dataset in datasets:
        units = _units_of(download, dataset, symbols)
        states = {ticker: row.state for ticker, row in units.items()}
        loose = [f"{t} ({states.get(t, 'not planned')})" for t in symbols if states.get(t) not in SETTLED]
        if loose:
            warnings.warn(
                f"{dataset} of {counted(len(loose), 'ticker')} are not settled, adjusted bars may miss "
                "events: "
                f"{', '.join(loose[:5])}{', ...' if len(loose) > 5 else ''} "
                f"(`polyledger plan --dataset {dataset}`, then `run`)",
                UnsettledAdjustmentWarning,
                stacklevel=user_stacklevel(),
            )
        if bars_to:
            _warn_stale(download, dataset, units, bars_to)


def _units_of(download: Download, dataset: str, symbols: Sequence[str]) -> dict[str, Any]:
    """{ticker: its unit of `dataset` (ticker, state, fetched_at)} of `symbols`, asked in
    slices (`in_lists`): the symbols of a market's read are past any database's bound variables."""
    return {
        row.ticker: row
        for test, params in in_lists("ticker", symbols, "t")
        for row in download.ledger.query(
            f"SELECT ticker, state, fetched_at FROM units WHERE dataset = :d AND {test}",
            {"d": dataset, **params},
        )
    }


def _warn_stale(
    download: Download, dataset: str, units: Mapping[str, Any], bars_to: Mapping[str, dt.date]
) -> None:
    """Say which tickers' bars go past the last session the ledger knows their `dataset`
    through: the later of their settled unit's fetch (`known_through`) and `sync`'s last
    look at the market's listing (which queues again the unit of a ticker with an event
    since, so a unit still settled after it was vouched for). A split or a dividend in
    between is in no table: across it the adjusted bars may sit on two share bases. Said,
    naming the tickers and both dates; the read goes on (unsettled units are said above)."""
    checked = download.ledger.setting(checked_key(dataset))
    checked_to = stored_date(checked) if checked else None
    behind = []
    for ticker, last in sorted(bars_to.items()):
        unit = units.get(ticker)
        if unit is None or unit.state not in SETTLED:
            continue
        known = max((d for d in (known_through(unit.fetched_at), checked_to) if d is not None), default=None)
        if known is not None and last > known:
            behind.append(f"{ticker} ({dataset} known to {known}, bars to {last})")
    if behind:
        since = (
            "a split since would leave their adjusted bars on two share bases"
            if dataset == "splits"
            else "a dividend since would be missing from their adjusted bars"
        )
        warnings.warn(
            f"{dataset} of {len(behind)} tickers are known to a day before their last bars, {since}: "
            f"{', '.join(behind[:5])}{', ...' if len(behind) > 5 else ''} (`polyledger sync` looks for "
            f"{dataset} announced since and fetches those tickers' units again)",
            StaleAdjustmentWarning,
            stacklevel=user_stacklevel(),
        )


def known_through(fetched_at: object) -> dt.date | None:
    """The last session whose events a fetch at `fetched_at` (the ledger's UTC text) saw:
    an event takes effect at its day's open, and a fetch counts as after it from 14:30 UTC
    that day, as in the stale audit (ledger/queries.py)."""
    if not fetched_at:
        return None
    text = str(fetched_at)
    day = stored_date(text)
    return day if text[11:16] >= OPEN_UTC else day - dt.timedelta(days=1)
