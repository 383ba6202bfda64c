"""Reading a universe file: a CSV with a `ticker` column, validated strictly."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from polyledger.errors import InputError

# As Polygon spells US tickers (BRK.B, BF-B); must start with a letter or digit so a
# ticker can never become a path component like ".." in the data folder.
TICKER_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")


def validate_ticker(ticker: str, where: str = "") -> str:
    """Return the ticker unchanged or raise an InputError saying what is wrong with it."""
    prefix = f"{where}: " if where else ""
    if ticker != ticker.strip() or " " in ticker:
        raise InputError(f"{prefix}ticker {ticker!r} contains spaces")
    if ticker and ticker != ticker.upper() and TICKER_RE.match(ticker.upper()):
        raise InputError(f"{prefix}ticker {ticker!r} is not upper case (did you mean {ticker.upper()!r}?)")
    if not TICKER_RE.match(ticker):
        raise InputError(
            f"{prefix}invalid ticker {ticker!r}: use A-Z, digits, '.' and '-' as Polygon spells them"
        )
    return ticker


def read_universe(path: Path) -> list[str]:
    """Tickers from a universe CSV, in file order. Blank lines and a UTF-8 BOM are fine;
    anything else wrong (no file, no `ticker` column, a bad or repeated ticker) raises."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"universe file not found: {path}")
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
    column = names.index("ticker")
    tickers: list[str] = []
    seen: dict[str, int] = {}
    for number, row in rows[1:]:
        value = row[column] if column < len(row) else ""
        where = f"{path.name} line {number}"
        if value == "":
            raise InputError(f"{where}: empty ticker")
        validate_ticker(value, where)
        if value in seen:
            raise InputError(f"{where}: duplicate ticker {value!r} (first on line {seen[value]})")
        seen[value] = number
        tickers.append(value)
    if not tickers:
        raise InputError(f"universe file {path} lists no tickers")
    return tickers
