"""What a valid ticker looks like: one rule for universe files, the CLI, the worker and
the storage layout (a ticker becomes a path component and a URL segment)."""

from __future__ import annotations

import re

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
