"""What a valid ticker looks like, and how it is spelled as a folder name: one rule for
universe files, the CLI, the worker and the storage layout (a ticker becomes a URL
segment as it is, and a path component through `ticker_path_component`).

Tickers are case-sensitive as Polygon spells them: a lowercase `p` marks a preferred
(`ABCpA`), `w` a warrant, `r` a right, so `ABCpA` and `ABCPA` are different securities;
dots mark share classes (`BRK.A`) and a few contain `-` (`BF-B`).
"""

from __future__ import annotations

import re

from polyledger.errors import InputError

# ASCII letters of either case, digits, '.' and '-'; starts with an upper-case letter or a
# digit (a root is never lower case: `brk.a` is a typo, which the API would answer with an
# empty 200, a false "no data"; and never a path component like ".." or an option like
# "-x"), 16 characters at most.
TICKER_RE = re.compile(r"^[A-Z0-9][A-Za-z0-9.\-]{0,15}$")

# Written before each lowercase letter in a folder name, and after a trailing '.'; it never
# occurs in a ticker, so the spelling can be read back whatever the file system's case.
PATH_ESCAPE = "_"
_COMPONENT_RE = re.compile(r"^(?:[A-Z0-9.\-]|_[a-z])+_?$")


def validate_ticker(ticker: str, where: str = "") -> str:
    """Return the ticker unchanged or raise an InputError saying what is wrong with it."""
    prefix = f"{where}: " if where else ""
    if ticker != ticker.strip() or " " in ticker:
        raise InputError(f"{prefix}ticker {ticker!r} contains spaces")
    if not TICKER_RE.match(ticker) or ".." in ticker:
        raise InputError(
            f"{prefix}invalid ticker {ticker!r}: use letters A-Z or a-z, digits, '.' and '-' "
            "as Polygon spells them (at most 16, starting with an upper-case letter or a digit)"
        )
    return ticker


def ticker_path_component(ticker: str) -> str:
    """The folder name a (valid) ticker is stored under, after `ticker=`: the ticker itself
    when it has no lowercase letter and does not end in '.', so `AAPL`, `BRK.B`, `BF-B`
    keep their folders. Otherwise each lowercase letter is written `_` + the letter
    (`ABCpA` -> `ABC_pA`) and a trailing '.' gets a `_` after it (`A.` -> `A._`): no two
    tickers share a name even where case is ignored (macOS, Windows), and no name ends in
    a dot (Windows drops it). Readers get the ticker from a file's `ticker` column."""
    validate_ticker(ticker)
    escaped = "".join(PATH_ESCAPE + c if "a" <= c <= "z" else c for c in ticker)
    return escaped + PATH_ESCAPE if ticker.endswith(".") else escaped


def ticker_from_path_component(component: str) -> str:
    """The ticker a `ticker_path_component` stands for (its inverse), or an InputError."""
    if not _COMPONENT_RE.match(component):
        raise InputError(f"invalid ticker folder name {component!r}")
    ticker = component.removesuffix(PATH_ESCAPE).replace(PATH_ESCAPE, "")
    if ticker_path_component(ticker) != component:  # e.g. a '_' after a non-final '.'
        raise InputError(f"invalid ticker folder name {component!r}")
    return ticker
