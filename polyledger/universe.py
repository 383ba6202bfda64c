"""Reading a universe file: a CSV or Parquet file with a `ticker` column, validated strictly.

Each row is a listing (`polyledger.listings.Listing`). Optional `list_date` and
`delisted_utc` columns (as Polygon's reference API gives them; `delisted_utc` is "the
last date that the asset was traded"), and `first_date`/`last_date` (where polyledger
bounded it: a rename, a reused symbol without a list date) bound its window, so planning skips the periods
outside its life. One ticker may sit on several rows when they are different listings
(a symbol reused by another company): their windows must not overlap. Optional
identity columns (`name`, `cik`, `composite_figi`, `share_class_figi`, `security_id`,
`link`) say which security each listing is.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

from polyledger.errors import InputError, one_line
from polyledger.listings import LINKS, Listing, assign_security_ids, check_securities
from polyledger.periods import DATE_RE, iso_date
from polyledger.symbols import validate_ticker

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
IDENTITY_COLUMNS = ("name", "cik", "composite_figi", "share_class_figi", "security_id", "link")
COLUMNS = ("ticker", "list_date", "delisted_utc", "first_date", "last_date", *IDENTITY_COLUMNS)

# one data row before validation: (position like "line 4", {column: value} of COLUMNS)
_Record = tuple[str, dict[str, object]]


def read_universe(path: Path) -> list[str]:
    """Tickers of a universe file, in file order (see read_members)."""
    return [member.ticker for member in read_members(path)]


def read_members(path: Path) -> list[Listing]:
    """Listings of a universe file (`.parquet`, else CSV), in file order, each with its
    security_id. Blank lines, a UTF-8 BOM and extra columns are fine; anything else wrong
    (no file, no `ticker` column, a bad ticker, a bad date, one ticker's rows with
    overlapping windows) raises an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise InputError(f"universe path is a folder, not a file: {path}")
        raise InputError(f"universe file not found: {path}")
    records = _parquet_records(path) if path.suffix.lower() == ".parquet" else _csv_records(path)
    members: list[Listing] = []
    positions: dict[Listing, str] = {}
    for position, values in records:
        where = f"{path.name} {position}"
        member = _member(where, values)
        for other in members:
            if other.ticker == member.ticker and other.overlaps(member):
                if (other.first_day, other.last_day) == (member.first_day, member.last_day):
                    raise InputError(
                        f"{where}: duplicate ticker {member.ticker!r} (first on {positions[other]})"
                    )
                raise InputError(
                    f"{where}: ticker {member.ticker!r} is already listed on {positions[other]} with an "
                    f"overlapping window ({other.window_text()} and {member.window_text()}): several rows "
                    "of one ticker must be different listings (distinct list_date/delisted_utc windows)"
                )
        positions[member] = position
        members.append(member)
    if not members:
        raise InputError(f"universe file {path} lists no tickers")
    assigned = assign_security_ids(members)
    check_securities(assigned, path.name)
    return assigned


def _member(where: str, values: dict[str, object]) -> Listing:
    ticker = values.get("ticker")
    if ticker is None or ticker == "":
        raise InputError(f"{where}: empty ticker")
    if not isinstance(ticker, str):
        raise InputError(f"{where}: invalid ticker {ticker!r}: expected text")
    validate_ticker(ticker, where)
    listed = _date(where, "list_date", values.get("list_date"))
    bounded = _date(where, "first_date", values.get("first_date"))
    first = max((day for day in (listed, bounded) if day is not None), default=None)
    delisted = _last_day(where, values.get("delisted_utc"))
    renamed = _date(where, "last_date", values.get("last_date"))
    last = min((day for day in (delisted, renamed) if day is not None), default=None)
    if first is not None and last is not None and first > last:
        starts = "list_date" if first == listed else "first_date"
        given = ", ".join(
            f"{name} {values[name]!r}"
            for name in ("delisted_utc", "last_date")
            if not _blank(values.get(name))
        )
        raise InputError(f"{where}: {starts} {first} is after the last trading day {last} ({given})")
    identity = {name: _text(values.get(name)) for name in IDENTITY_COLUMNS}
    if identity["link"] is not None and identity["link"] not in LINKS:
        raise InputError(f"{where}: unknown link {identity['link']!r}: expected one of {', '.join(LINKS)}")
    return Listing(ticker, first, last, **identity)


def _text(value: object) -> str | None:
    return None if _blank(value) else str(value).strip()


def _date(where: str, column: str, value: object) -> dt.date | None:
    if _blank(value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return iso_date(str(value).strip())
    except ValueError:
        pass
    raise InputError(f"{where}: invalid {column} {_shown(value)}: expected YYYY-MM-DD")


def _last_day(where: str, value: object) -> dt.date | None:
    """The last session date of a delisted listing. The API documents `delisted_utc` as
    "the last date that the asset was traded", so a timestamp's own date is that day
    (`2019-09-30T00:00:00Z` -> 2019-09-30). Where a provider stamps the midnight after
    instead, the window is one day too long, never too short: monthly units plan through
    the end of that month anyway, and an empty answer after the last trade is cheap where
    a lost final session is not."""
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if DATE_RE.fullmatch(text):
            return iso_date(text)
        if TIMESTAMP_RE.match(text):
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    raise InputError(
        f"{where}: invalid delisted_utc {_shown(value)}: expected a timestamp like 2023-04-21T00:00:00Z "
        "or YYYY-MM-DD"
    )


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _shown(value: object) -> str:
    return repr(value if isinstance(value, str) else str(value))


def _one_column_each(path: Path, names: list[str]) -> None:
    """An InputError when a column polyledger reads is there twice (e.g. `ticker` and
    `Ticker`, as a join of two lists gives): which one is meant is ambiguous, and reading
    the first would leave the other's tickers silently unplanned."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(
            f"universe file {path} has the column {', '.join(map(repr, twice))} more than once "
            "(column names are compared without case): keep one"
        )


def _csv_records(path: Path) -> Iterator[_Record]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            # strict: a quote never closed is an error, not the rest of the file in one field
            reader = csv.reader(handle, strict=True)
            read, first_line = [], 1
            for row in reader:  # numbered by the line a row begins on (a quoted field may span lines)
                read.append((first_line, row))
                first_line = reader.line_num + 1
    except UnicodeDecodeError:
        raise InputError(f"universe file {path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"universe file {path} is not valid CSV: {exc} (line {reader.line_num})") from None
    rows = [(number, row) for number, row in read if any(c.strip() for c in row)]
    if not rows:
        raise InputError(f"universe file {path} is empty")
    header_line, header = rows[0]
    names = [name.strip().lower() for name in header]
    if "ticker" not in names:
        separator = next((mark for mark in (";", "\t", "|") if any(mark in name for name in header)), None)
        hint = f" (its columns look separated by {separator!r}: a universe CSV uses ',')" if separator else ""
        raise InputError(
            f"universe file {path} has no 'ticker' column in its header (line {header_line}){hint}"
        )
    _one_column_each(path, [name for name in names if name in COLUMNS])
    columns = {name: names.index(name) for name in COLUMNS if name in names}
    for number, row in rows[1:]:
        yield f"line {number}", {name: row[i] for name, i in columns.items() if i < len(row)}


def _parquet_records(path: Path) -> Iterator[_Record]:
    import polars as pl  # only Parquet universes need it

    try:
        schema = pl.read_parquet_schema(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"universe file {path} is not a readable Parquet file: {one_line(exc)}") from None
    _one_column_each(path, [name.strip().lower() for name in schema if name.strip().lower() in COLUMNS])
    names = {name.strip().lower(): name for name in schema}
    if "ticker" not in names:
        raise InputError(f"universe file {path} has no 'ticker' column")
    wanted = {name: names[name] for name in COLUMNS if name in names}
    try:
        frame = pl.read_parquet(path, columns=list(wanted.values()))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"universe file {path} is not a readable Parquet file: {one_line(exc)}") from None
    columns = {name: frame[column].to_list() for name, column in wanted.items()}
    for index in range(frame.height):
        yield f"row {index + 1}", {name: values[index] for name, values in columns.items()}
