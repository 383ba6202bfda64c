"""Splits: one unit per ticker, every split of its history (stocks/v1/splits).

    splits/ticker=AAPL/part.parquet

Also copied into the ledger's `splits` table, so the stale-adjustment audit is one query.

The API may list one split on two dates (the recorded /v3/reference/splits answer lists
Shopify's one 10-for-1 split on 2022-06-22 and on 2022-06-29): two records of a ticker
with the same ratio within SAME_SPLIT_WITHIN of each other are one split listed twice
(`one_date_each`). Both kept, every earlier price would be adjusted by the ratio twice.
Which date is real is decided from the ledger's own raw bars of the ticker when they
show it (the open after one date moves by the ratio from the close before it, and the
open after the other does not move); otherwise the unit fails `conflicting_splits`
naming the dates, and nothing of the ticker's splits is changed.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, NamedTuple

import polars as pl

from polyledger.datasets.reference import ReferenceEndpoint, fetch_results, unique_records
from polyledger.datasets.spec import DatasetSpec, FileReader, ticker_path
from polyledger.errors import PermanentError
from polyledger.periods import ET

if TYPE_CHECKING:
    from polyledger.ledger import ClaimedUnit, Ledger
    from polyledger.polygon.client import PolygonClient
    from polyledger.polygon.paging import FetchCost

SPLITS = ReferenceEndpoint(
    "splits",
    "/stocks/v1/splits",
    {"limit": "5000"},
    {
        "ticker": pl.String(),
        "execution_date": pl.Date(),
        "split_from": pl.Float64(),
        "split_to": pl.Float64(),
        "adjustment_type": pl.String(),
        "historical_adjustment_factor": pl.Float64(),
        "id": pl.String(),
    },
    ("execution_date",),
)


# what makes two records without an id the same split (historical_adjustment_factor is
# recomputed by the API as later splits come)
NATURAL_KEY = ("ticker", "execution_date", "split_from", "split_to", "adjustment_type")


def fetch(client: PolygonClient, unit: ClaimedUnit, adjusted: bool, spent: FetchCost) -> pl.DataFrame:
    params = {**SPLITS.params, "ticker": unit.ticker}
    frame = unique_records(
        fetch_results(client, SPLITS, SPLITS.path, params, unit.ticker, spent), NATURAL_KEY
    )
    check_one_ratio_a_day(unit.ticker, frame)
    return frame


def check_one_ratio_a_day(ticker: str, frame: pl.DataFrame) -> None:
    """Two different ratios on one execution date cannot both be the split: the unit
    fails `conflicting_splits` saying both (the ledger's table, which adjustment and the
    stale audit read, holds one ratio a day; keeping either one silently would adjust
    every earlier bar by a guess). A later `retry --class conflicting_splits` asks again."""
    ratios = (
        frame.select("execution_date", "split_from", "split_to")
        .drop_nulls()
        .filter(pl.col("split_from") > 0)
        .with_columns((pl.col("split_to") / pl.col("split_from")).round(9).alias("ratio"))
        .unique(["execution_date", "ratio"], maintain_order=True)  # 1->4 and 2->8 agree
    )
    clashes = ratios.filter(pl.col("execution_date").is_duplicated())
    if clashes.height:
        day = clashes.get_column("execution_date")[0]
        said = [
            f"{a:g}->{b:g}"
            for a, b in clashes.filter(pl.col("execution_date") == day)
            .sort("ratio")
            .select("split_from", "split_to")
            .rows()
        ]
        raise PermanentError(
            f"the API lists {len(said)} different splits of {ticker} on {day}: {' and '.join(said)}",
            error_class="conflicting_splits",
        )


# Two records of one ticker with the same ratio at most this far apart are one split listed
# twice. A company does not split twice by the same ratio within a month (each split is
# decided, announced and given a record date weeks ahead; companies that split again do so
# years later), while a split listed on a wrong date sits days to weeks from its real one
# (SHOP's: 7 days). The same span as the API's late entries (`queries.LATE_ENTRY_DAYS`).
SAME_SPLIT_WITHIN = dt.timedelta(days=31)
# how far from a listed date the sessions around it may be (a long weekend, a halt)
NEAR = dt.timedelta(days=7)
# a ratio closer to 1 than 5:4 moves a price no more than an ordinary day may: bars cannot
# tell its date, and the unit fails instead
SMALLEST_TOLD = math.log(1.25)


def one_date_each(ticker: str, frame: pl.DataFrame, sessions: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` with each split listed twice (the same ratio on dates at most
    SAME_SPLIT_WITHIN apart, `listed_twice`) kept on its real date only, the records of
    the other dates dropped. The real date is the one where the ticker's raw bars
    (`sessions`: session, open, close; None: none in the ledger) move by the ratio from
    the close before it to the open on or after it, while they do not move on the others
    (each move within a quarter of the ratio's log distance from it, or from 1). Bars
    that say anything else, or none, fail the unit `conflicting_splits` naming the dates:
    nothing is adjusted by a guess. A later `retry --class conflicting_splits` asks again
    (the API corrected, or raw day bars around the dates fetched since)."""
    dropped: list[tuple[dt.date, float]] = []
    for split in listed_twice(frame):
        moves = {day: _move(sessions, day) for day in split.days}
        real = _real_date(split.ratio, moves)
        if real is None:
            raise PermanentError(
                _listed_twice_message(ticker, split, moves), error_class="conflicting_splits"
            )
        dropped += [(day, split.ratio) for day in split.days if day != real]
    if not dropped:
        return frame
    gone = pl.DataFrame(dropped, schema={"execution_date": pl.Date(), "_ratio": pl.Float64()}, orient="row")
    return (
        frame.with_columns(_RATIO.alias("_ratio"))
        .join(gone, on=["execution_date", "_ratio"], how="anti", maintain_order="left")
        .drop("_ratio")
    )


# a record's ratio, as records are compared by it: 1->4 and 2->8 are one ratio
_RATIO = (pl.col("split_to") / pl.col("split_from")).round(9)


class ListedTwice(NamedTuple):
    """One split the API lists on several dates: its ratio as the first record says it."""

    split_from: float
    split_to: float
    ratio: float  # split_to / split_from, as records are compared by it (_RATIO)
    days: list[dt.date]


def listed_twice(frame: pl.DataFrame) -> list[ListedTwice]:
    """Each split the frame lists on more than one date: records of one ratio whose dates
    follow each other at most SAME_SPLIT_WITHIN apart."""
    dated = (
        frame.select("execution_date", "split_from", "split_to")
        .drop_nulls()
        .filter((pl.col("split_from") > 0) & (pl.col("split_to") > 0))
        .with_columns(_RATIO.alias("ratio"))
        .unique(["ratio", "execution_date"], keep="first", maintain_order=True)
        .sort("ratio", "execution_date")
    )
    groups: list[ListedTwice] = []
    for day, split_from, split_to, ratio in dated.iter_rows():
        last = groups[-1] if groups else None
        if last is not None and last.ratio == ratio and day - last.days[-1] <= SAME_SPLIT_WITHIN:
            last.days.append(day)
        else:
            groups.append(ListedTwice(split_from, split_to, ratio, [day]))
    return [group for group in groups if len(group.days) > 1]


def _move(sessions: pl.DataFrame | None, day: dt.date) -> float | None:
    """open of the first session on or after `day` / close of the last one before it, both
    within NEAR of it; None without them."""
    if sessions is None:
        return None
    before = sessions.filter(pl.col("session").is_between(day - NEAR, day, closed="left"))
    after = sessions.filter(pl.col("session").is_between(day, day + NEAR))
    if not (before.height and after.height):
        return None
    close, opened = (
        before.sort("session").get_column("close")[-1],
        after.sort("session").get_column("open")[0],
    )
    return opened / close if close and opened and close > 0 and opened > 0 else None


def _real_date(ratio: float, moves: dict[dt.date, float | None]) -> dt.date | None:
    """The one date whose move is the split's (prices times 1 / ratio) while every other
    date's is none, each within a quarter of the ratio's log distance; else None."""
    step = math.log(ratio)
    if abs(step) < SMALLEST_TOLD or any(move is None for move in moves.values()):
        return None
    band = abs(step) / 4
    moved = [day for day, move in moves.items() if abs(math.log(move) + step) < band]  # type: ignore[arg-type]
    still = [day for day, move in moves.items() if abs(math.log(move)) < band]  # type: ignore[arg-type]
    return moved[0] if len(moved) == 1 and len(still) == len(moves) - 1 else None


def _listed_twice_message(ticker: str, split: ListedTwice, moves: dict[dt.date, float | None]) -> str:
    days = split.days
    listed = f"{', '.join(d.isoformat() for d in days[:-1])} and {days[-1].isoformat()}"
    said = (
        f"the API lists one {split.split_from:g}->{split.split_to:g} split of {ticker} on {len(days)} "
        f"dates {(days[-1] - days[0]).days} days apart, {listed}"
    )
    if abs(math.log(split.ratio)) < SMALLEST_TOLD:
        why = "a ratio this close to 1 cannot be told from an ordinary day in bars"
    elif any(move is None for move in moves.values()):
        why = f"the ledger has no raw day or minute bars of {ticker} around every date to tell which is real"
    else:
        seen = ", ".join(f"{day} x{move:.3g}" for day, move in moves.items())
        why = f"its raw bars (open / previous close: {seen}) do not tell which is real"
    return f"{said}: {why}; {'neither' if len(days) == 2 else 'none'} is kept"


def raw_sessions(ledger: Ledger, files: FileReader, ticker: str, days: list[dt.date]) -> pl.DataFrame | None:
    """(session, open, close) of `ticker` around `days`, from the ledger's raw (unadjusted)
    day bars, else its raw minute bars (a session's first open and last close); None when
    it has neither there. Nothing is requested: only files the ledger holds are read."""
    first, last = min(days) - NEAR, max(days) + NEAR
    for dataset in ("day", "minute"):
        rows = ledger.query(
            "SELECT file_path FROM units WHERE dataset = :d AND ticker = :t AND state = 'done' "
            "AND adjusted = :raw AND period_end >= :first AND period_start <= :last ORDER BY period_start",
            {"d": dataset, "t": ticker, "raw": False, "first": first.isoformat(), "last": last.isoformat()},
        )
        paths = [row.file_path for row in rows if row.file_path]
        if not paths:
            continue
        session = pl.col("timestamp").dt.convert_time_zone(str(ET)).dt.date().alias("session")
        found = (
            files.scan_parquet(paths, hive_partitioning=False)
            .select(session, "timestamp", "open", "close")
            .filter(pl.col("session").is_between(first, last))
            .sort("timestamp")
            .group_by("session", maintain_order=True)
            .agg(pl.col("open").first(), pl.col("close").last())
            .collect()
        )
        if found.height:
            return found
    return None


def split_rows(frame: pl.DataFrame) -> list[tuple[str, float, float]]:
    """(execution_date, split_from, split_to) of a splits frame, for the ledger's table."""
    if frame.height == 0:
        return []
    rows = frame.select("execution_date", "split_from", "split_to").drop_nulls().rows()
    return [(day.isoformat(), float(split_from), float(split_to)) for day, split_from, split_to in rows]


def copy_to_ledger(ledger: Ledger, files: FileReader, unit: ClaimedUnit, frame: pl.DataFrame) -> pl.DataFrame:
    """Each split on one date (`one_date_each`, told by the ledger's raw bars), then the
    ticker's rows of the ledger's table replaced; returns the rows to store."""
    twice = listed_twice(frame)
    if twice:
        days = [day for split in twice for day in split.days]
        frame = one_date_each(unit.ticker, frame, raw_sessions(ledger, files, unit.ticker, days))
    ledger.replace_splits(unit.ticker, split_rows(frame))
    return frame


def layout(ticker: str, period_start: dt.date) -> str:
    return ticker_path("splits", ticker)


SPEC = DatasetSpec(
    name="splits",
    grain="ticker",
    summary="splits (a unit per ticker)",
    schema=SPLITS.schema,
    layout=layout,
    stand_in="/stocks/v1/splits?ticker=T: the synthetic listings' splits, paged",
    fetch_unit=fetch,
    after_fetch=copy_to_ledger,
)
