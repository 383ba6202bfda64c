"""Tickers as the API spells them (polygon-api.md, Symbols and identities): case-sensitive
(`ABCpA`, a preferred, is not `ABCPA`), with dots and hyphens; each one a folder of its
own even where the file system ignores case, today's upper-case folders unchanged; and
`universe` -> `plan` -> `run` keeps `ABCpA` and `ABCPA` apart end to end."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from support import API_KEY, STORED_COLUMNS, run_cli, truth

import polyledger
from polyledger.errors import InputError
from polyledger.storage import unit_relative_path
from polyledger.symbols import ticker_from_path_component, ticker_path_component, validate_ticker
from polyledger.testing import Listing, StandInServer, SyntheticMarket
from polyledger.universe import read_universe

D = dt.date
TICKER_DATASETS = ("minute", "day", "splits", "dividends", "details")


@pytest.mark.parametrize("ticker", ["ABCpA", "ABCPA", "BRK.A", "BF-B", "Xw", "A", "9", "A.B-C", "A."])
def test_tickers_of_either_case_with_dots_and_hyphens_are_valid_as_they_are(ticker):
    assert validate_ticker(ticker) == ticker


@pytest.mark.parametrize(
    "ticker",
    [
        "",
        ".",
        "..",
        "A..B",
        ".A",
        "-A",
        "_A",
        "A_B",
        "A B",
        " A",
        "A/B",
        "A\\B",
        "Ä",
        "AÄ",
        "A:B",
        "A" * 17,
        "brk.a",
        "abcpa",
    ],
)
def test_anything_else_is_one_line_naming_the_ticker(ticker):
    with pytest.raises(InputError) as caught:
        validate_ticker(ticker, "u.csv line 2")
    message = str(caught.value)
    assert message.startswith("u.csv line 2: ") and repr(ticker) in message and "\n" not in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("ticker", "component"),
    [
        ("AAPL", "AAPL"),  # existing folders stay exactly as they are
        ("BRK.B", "BRK.B"),
        ("BF-B", "BF-B"),
        ("ABCPA", "ABCPA"),
        ("ABCpA", "ABC_pA"),
        ("Abc", "A_b_c"),
        ("A.", "A._"),  # Windows would drop a final dot
        ("CON", "CON"),  # a device name, but only whole names are: the folder is `ticker=CON`
    ],
)
def test_the_path_component_of_a_ticker(ticker, component):
    assert ticker_path_component(ticker) == component
    assert ticker_from_path_component(component) == ticker
    for dataset in TICKER_DATASETS:
        path = unit_relative_path(dataset, ticker, D(2024, 3, 1))
        assert f"/ticker={component}/" in path and path.count("/ticker=") == 1


def test_existing_upper_case_layouts_are_unchanged():
    march = D(2024, 3, 1)
    assert (
        unit_relative_path("minute", "BRK.B", march) == "minute/ticker=BRK.B/year=2024/month=03/part.parquet"
    )
    assert unit_relative_path("day", "BF-B", march) == "day/ticker=BF-B/year=2024/part.parquet"
    assert unit_relative_path("splits", "AAPL", march) == "splits/ticker=AAPL/part.parquet"
    assert unit_relative_path("details", "AAPL", march) == "details/as_of=2024-03-01/ticker=AAPL/part.parquet"


WINDOWS_DEVICES = [
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
]


@pytest.mark.parametrize("device", WINDOWS_DEVICES)
def test_windows_device_names_are_never_a_whole_path_component(device):
    """Windows reserves these names (in any case, with any extension) for devices; a ticker
    may be one (`CON`, `NUL`...), and stays safe because its folder is `ticker=<name>`."""
    mixed = device[0] + device[1:].lower()  # a ticker starts upper case; its class letters may not
    for ticker in (device, mixed, f"{device}.A", f"{mixed}.a"):
        for part in unit_relative_path("minute", ticker, D(2024, 3, 1)).split("/"):
            stem = part.split(".", 1)[0].upper()
            assert stem not in WINDOWS_DEVICES, (ticker, part)


def test_the_path_component_is_refused_for_anything_but_a_ticker():
    for bad in ("../x", "A B", "", "A..B"):
        with pytest.raises(InputError):
            ticker_path_component(bad)
    for bad in ("A_", "_A", "a", "A_._", "A/B", "", "ticker=A", "A__a"):
        with pytest.raises(InputError):
            ticker_from_path_component(bad)


def _folded(ticker: str) -> str:
    """The unit's folder as a case-insensitive file system compares it."""
    return unit_relative_path("minute", ticker, D(2024, 3, 1)).casefold()


def _safe_folder(ticker: str) -> None:
    component = ticker_path_component(ticker)
    assert not component.endswith((".", " ")) and component.isascii()
    assert not set(component) & set('<>:"/\\|?* '), component  # nothing Windows or a shell reads


def test_no_two_tickers_share_a_folder_where_case_is_ignored():
    """Every ticker of up to four characters from an alphabet with both cases, a digit, '.'
    and '-' (case variants of one another included): all folders differ, case ignored."""
    alphabet = "aAbBpP1.-"
    tickers = []
    for length in range(1, 5):
        for chars in itertools.product(alphabet, repeat=length):
            ticker = "".join(chars)
            try:
                tickers.append(validate_ticker(ticker))
            except InputError:
                continue
    assert {"ABpA", "ABPA", "AbBP", "A.", "P-1"} <= set(tickers) and len(tickers) > 2000
    folded: dict[str, str] = {}
    for ticker in tickers:
        _safe_folder(ticker)
        other = folded.setdefault(_folded(ticker), ticker)
        assert other == ticker, f"{other!r} and {ticker!r} share a folder where case is ignored"


def _valid(text: str) -> bool:
    try:
        return validate_ticker(text) == text
    except InputError:
        return False


TICKERS = st.text("ABCPXZabcpwxz019.-", min_size=1, max_size=16).filter(_valid)


@given(TICKERS, st.data())
def test_a_ticker_and_its_case_variants_never_share_a_folder(ticker, data):
    """A ticker, and any change of case of any of its letters: the same folder (case
    ignored) only when they are the same ticker; the folder reads back as the ticker."""
    flips = data.draw(st.lists(st.booleans(), min_size=len(ticker), max_size=len(ticker)))
    # the first letter stays: a ticker starts upper case (a lowercase root is refused)
    variant = ticker[0] + "".join(
        c.swapcase() if flip else c for c, flip in zip(ticker[1:], flips[1:], strict=True)
    )
    _safe_folder(ticker)
    assert ticker_from_path_component(ticker_path_component(ticker)) == ticker
    assert (_folded(ticker) == _folded(variant)) == (ticker == variant)


# --- universe -> plan -> run with ABCpA and ABCPA -----------------------------------------

LISTED = D(2024, 1, 2)
SYMBOLS = [
    Listing("ABCpA", bars_per_day=6, type="PFD", list_date=LISTED),  # the preferred
    Listing("ABCPA", bars_per_day=6, list_date=LISTED),  # a different common stock
    Listing("ALFA", bars_per_day=6, list_date=LISTED),
]


def test_a_universe_file_may_list_both_spellings_but_not_one_twice(tmp_path):
    both = tmp_path / "both.csv"
    both.write_text("ticker\nABCpA\nABCPA\n", encoding="utf-8")
    assert read_universe(both) == ["ABCpA", "ABCPA"]
    twice = tmp_path / "twice.csv"
    twice.write_text("ticker\nABCpA\nABCPA\nABCpA\n", encoding="utf-8")
    with pytest.raises(InputError, match="duplicate ticker 'ABCpA'"):
        read_universe(twice)


def test_a_preferred_and_a_common_spelled_alike_stay_apart_from_universe_to_files(work: Path):
    market = SyntheticMarket(SYMBOLS, seed=5)
    week = (D(2024, 1, 2), D(2024, 1, 5))  # the stand-in keys bars by the ticker as spelled
    assert (
        not truth(market, "minute", "ABCpA", *week)
        .drop("ticker")
        .equals(truth(market, "minute", "ABCPA", *week).drop("ticker"))
    )
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        built = run_cli("universe", "--out", "u.csv", "--base-url", server.url, "--type", "CS,PFD")
        assert built.code == 0, built.out + built.err
        table = pl.read_csv(work / "u.csv")
        rows = {row["ticker"]: row for row in table.iter_rows(named=True)}
        planned = run_cli(
            "plan", "--universe", "u.csv", "--dataset", "minute", "--from", "2024-01-01", "--to", "2024-02-29"
        )
        assert planned.code == 0, planned.out + planned.err
        ran = run_cli("run", "--base-url", server.url, "--workers", "2", "--rate", "5000")
        assert ran.code == 0, ran.out + ran.err
    audited = run_cli("audit", "--deep")  # every file where its unit says, none unowned
    assert audited.code == 0, audited.out + audited.err

    # both kept, each with its own details (not one's copied to the other)
    assert sorted(rows) == ["ABCPA", "ABCpA", "ALFA"]
    for ticker in ("ABCpA", "ABCPA"):
        details = market.reference(ticker)
        assert rows[ticker]["type"] == details["type"]
        assert rows[ticker]["list_date"] == details["list_date"]
        assert rows[ticker]["market_cap"] == pytest.approx(details["market_cap"])
    assert rows["ABCpA"]["market_cap"] != rows["ABCPA"]["market_cap"]
    assert len(list((work / "data" / "details").glob("as_of=*/ticker=ABC_pA/part.parquet"))) == 1

    data = work / "data" / "minute"
    assert sorted(p.name for p in data.iterdir()) == ["ticker=ABCPA", "ticker=ABC_pA", "ticker=ALFA"]
    for ticker, folder in (("ABCpA", "ticker=ABC_pA"), ("ABCPA", "ticker=ABCPA")):
        stored = pl.concat([pl.read_parquet(p) for p in sorted((data / folder).rglob("part.parquet"))])
        expected = truth(market, "minute", ticker, D(2024, 1, 1), D(2024, 2, 29), adjusted=True)
        assert stored.height > 0
        assert_frame_equal(stored.select(STORED_COLUMNS).sort("timestamp"), expected)
        with polyledger.open(work / "ledger.db", work / "data") as dl:
            read = dl.bars("minute", tickers=[ticker]).collect()
        assert_frame_equal(read.select(STORED_COLUMNS).sort("timestamp"), expected)
    # the one-liner of docs/data.md gives each bar its real ticker
    everything = pl.scan_parquet(str(data / "**" / "*.parquet"), hive_partitioning=False).collect()
    assert set(everything["ticker"]) == {"ABCpA", "ABCPA", "ALFA"}
