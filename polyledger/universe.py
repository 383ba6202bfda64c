"""Reading a universe file: a CSV or Parquet file with a `ticker` column, validated strictly.

Optional `list_date` and `delisted_utc` columns (as Polygon's reference API gives them)
bound each ticker's listing window, so planning can skip the periods outside its life.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from polyledger.errors import InputError, one_line
from polyledger.periods import ET
from polyledger.symbols import validate_ticker

# fromisoformat alone also takes 20230101 and 2023-W01-1, which nobody means here
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
DATE_COLUMNS = ("list_date", "delisted_utc")


@dataclass(frozen=True)
class UniverseMember:
    """A ticker and its listing window: the first and last US/Eastern session dates it can
    trade (None = unbounded on that side)."""

    ticker: str
    list_date: dt.date | None = None
    last_day: dt.date | None = None


# one data row before validation: (position like "line 4", ticker, list_date, delisted_utc)
_Record = tuple[str, object, object, object]


def read_universe(path: Path) -> list[str]:
    """Tickers of a universe file, in file order (see read_members)."""
    return [member.ticker for member in read_members(path)]


def read_members(path: Path) -> list[UniverseMember]:
    """Members of a universe file (`.parquet`, else CSV), in file order. Blank lines, a UTF-8
    BOM and extra columns are fine; anything else wrong (no file, no `ticker` column, a bad
    or repeated ticker, a bad date) raises an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise InputError(f"universe path is a folder, not a file: {path}")
        raise InputError(f"universe file not found: {path}")
    records = _parquet_records(path) if path.suffix.lower() == ".parquet" else _csv_records(path)
    members: list[UniverseMember] = []
    seen: dict[str, str] = {}
    for position, ticker, list_date, delisted_utc in records:
        where = f"{path.name} {position}"
        member = _member(where, ticker, list_date, delisted_utc)
        if member.ticker in seen:
            raise InputError(f"{where}: duplicate ticker {member.ticker!r} (first on {seen[member.ticker]})")
        seen[member.ticker] = position
        members.append(member)
    if not members:
        raise InputError(f"universe file {path} lists no tickers")
    return members


def _member(where: str, ticker: object, list_date: object, delisted_utc: object) -> UniverseMember:
    if ticker is None or ticker == "":
        raise InputError(f"{where}: empty ticker")
    if not isinstance(ticker, str):
        raise InputError(f"{where}: invalid ticker {ticker!r}: expected text")
    validate_ticker(ticker, where)
    first = _list_date(where, list_date)
    last = _last_day(where, delisted_utc)
    if first is not None and last is not None and first > last:
        raise InputError(
            f"{where}: list_date {first} is after the last trading day {last} (delisted_utc {delisted_utc!r})"
        )
    return UniverseMember(ticker, first, last)


def _list_date(where: str, value: object) -> dt.date | None:
    if _blank(value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    text = str(value).strip()
    if DATE_RE.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise InputError(f"{where}: invalid list_date {_shown(value)}: expected YYYY-MM-DD")


def _last_day(where: str, value: object) -> dt.date | None:
    """The last ET session date before the delisting instant; a plain date is that day."""
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        return _et_day_before(value)
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if DATE_RE.match(text):
            return dt.date.fromisoformat(text)
        if TIMESTAMP_RE.match(text):
            return _et_day_before(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    raise InputError(
        f"{where}: invalid delisted_utc {_shown(value)}: expected a timestamp like 2023-04-21T00:00:00Z "
        "or YYYY-MM-DD"
    )


def _et_day_before(instant: dt.datetime) -> dt.date:
    # Polygon stamps a delisting at the midnight after the last session (in UTC or ET):
    # a millisecond earlier is still inside that session's ET date
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.timezone.utc)  # the column is UTC by name
    return (instant - dt.timedelta(milliseconds=1)).astimezone(ET).date()


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _shown(value: object) -> str:
    return repr(value if isinstance(value, str) else str(value))


def _csv_records(path: Path) -> Iterator[_Record]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError:
        raise InputError(f"universe file {path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"universe file {path} is not valid CSV: {exc}") from None
    rows = [(number, row) for number, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not rows:
        raise InputError(f"universe file {path} is empty")
    header_line, header = rows[0]
    names = [name.strip().lower() for name in header]
    if "ticker" not in names:
        raise InputError(f"universe file {path} has no 'ticker' column in its header (line {header_line})")
    columns = [names.index(name) if name in names else None for name in ("ticker", *DATE_COLUMNS)]

    def cell(row: list[str], column: int | None) -> str:
        return row[column] if column is not None and column < len(row) else ""

    for number, row in rows[1:]:
        ticker, list_date, delisted_utc = (cell(row, column) for column in columns)
        yield f"line {number}", ticker, list_date, delisted_utc


def _parquet_records(path: Path) -> Iterator[_Record]:
    import polars as pl  # only Parquet universes need it

    try:
        schema = pl.read_parquet_schema(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"universe file {path} is not a readable Parquet file: {one_line(exc)}") from None
    names = {name.strip().lower(): name for name in reversed(list(schema))}  # first spelling wins
    if "ticker" not in names:
        raise InputError(f"universe file {path} has no 'ticker' column")
    wanted = [names[name] for name in ("ticker", *DATE_COLUMNS) if name in names]
    try:
        frame = pl.read_parquet(path, columns=wanted)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"universe file {path} is not a readable Parquet file: {one_line(exc)}") from None
    columns = [frame[names[name]].to_list() if name in names else None for name in ("ticker", *DATE_COLUMNS)]
    for index in range(frame.height):
        ticker, list_date, delisted_utc = (None if c is None else c[index] for c in columns)
        yield f"row {index + 1}", ticker, list_date, delisted_utc
