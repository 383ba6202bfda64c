import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from support import run_cli

from polyledger.errors import InputError
from polyledger.listings import Listing
from polyledger.universe import read_members, read_universe, validate_ticker


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "u.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_ticker_column_ignoring_others_blank_lines_and_bom(tmp_path):
    path = write(tmp_path, "\ufeffname,ticker,cap\nApple,AAPL,1\n\nBerkshire,BRK.B,2\nBrown,BF-B,3\n")
    assert read_universe(path) == ["AAPL", "BRK.B", "BF-B"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("AAPL\nMSFT\n", "no 'ticker' column"),
        ("ticker;name\nAAPL;Apple\n", "separated by ';': a universe CSV uses ','"),
        ("ticker\tname\nAAPL\tApple\n", "separated by '\\t'"),
        ("ticker\nAA_PL\n", "invalid ticker 'AA_PL'"),
        ("ticker\n AAPL\n", "contains spaces"),
        ("ticker\nAA PL\n", "contains spaces"),
        ("ticker\nAAPL\nMSFT\nAAPL\n", "duplicate ticker 'AAPL' (first on line 2)"),
        ("ticker\n../etc\n", "invalid ticker"),
        ("ticker\n..\n", "invalid ticker"),
        ("ticker\nA/B\n", "invalid ticker"),
        ("ticker\n", "lists no tickers"),
        ("", "is empty"),
        ("ticker,name\n,x\n", "empty ticker"),
    ],
)
def test_bad_universe_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(InputError) as caught:
        read_universe(write(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_universe(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="not UTF-8"):
        read_universe(write(tmp_path, "ticker\nSOCI\xc9T\xc9\n", encoding="latin-1"))


@pytest.mark.parametrize("ticker", ["A", "BRK.B", "BF-B", "GOOGL", "X1"])
def test_valid_tickers(ticker):
    assert validate_ticker(ticker) == ticker


@pytest.mark.parametrize("ticker", ["", ".", "..", "-A", "A B", "A/B", "A\\B", "Ä", "TOOLONGTICKERNAME1"])
def test_invalid_tickers(ticker):
    with pytest.raises(InputError):
        validate_ticker(ticker)


# --- listing windows -------------------------------------------------------------

D = dt.date


def windows(members: list[Listing]) -> list[tuple[str, dt.date | None, dt.date | None]]:
    return [(m.ticker, m.first_day, m.last_day) for m in members]


def member_of(tmp_path: Path, delisted_utc: str = "", list_date: str = "") -> Listing:
    path = write(tmp_path, f"ticker,list_date,delisted_utc\nAAPL,{list_date},{delisted_utc}\n")
    return read_members(path)[0]


def test_list_date_and_delisted_utc_become_a_listing_window(tmp_path):
    text = (
        "\ufeffticker,name,list_date,delisted_utc\n"
        "AAPL,Apple,1980-12-12,\n"
        "\n"
        "GONE,Gone Inc,2001-05-02,2023-04-21T00:00:00Z\n"
        "PLAIN,Plain,,\n"
    )
    assert windows(read_members(write(tmp_path, text))) == [
        ("AAPL", D(1980, 12, 12), None),
        ("GONE", D(2001, 5, 2), D(2023, 4, 21)),  # delisted_utc: the last date traded
        ("PLAIN", None, None),
    ]
    assert read_universe(write(tmp_path, text)) == ["AAPL", "GONE", "PLAIN"]


def test_a_file_without_date_columns_has_no_windows(tmp_path):
    members = read_members(write(tmp_path, "ticker,name\nAAPL,x\nBF-B,y\n"))
    assert windows(members) == [("AAPL", None, None), ("BF-B", None, None)]


@pytest.mark.parametrize(
    "delisted_utc, last_day",
    [
        # "the last date that the asset was traded": the timestamp's own date, never the day
        # before (reading it as the midnight after lost every delisted name's final session)
        ("2023-04-21T00:00:00Z", D(2023, 4, 21)),
        ("2023-04-21T04:00:00Z", D(2023, 4, 21)),
        ("2023-04-21T23:59:59.999Z", D(2023, 4, 21)),
        ("2023-01-21T05:00:00Z", D(2023, 1, 21)),
        ("2023-04-21T00:00:00+00:00", D(2023, 4, 21)),
        ("2023-04-21T00:00:00-04:00", D(2023, 4, 21)),  # the date as written in its own offset
        ("2023-04-21T00:00:00", D(2023, 4, 21)),
        ("2023-04-21", D(2023, 4, 21)),  # a plain date is the last day itself
        (" 2023-04-21 ", D(2023, 4, 21)),
    ],
)
def test_delisted_utc_is_the_last_day_traded(tmp_path, delisted_utc, last_day):
    assert member_of(tmp_path, delisted_utc=delisted_utc).last_day == last_day


@pytest.mark.parametrize(
    "row, message",
    [
        ("AAPL,2023-13-01,", "u.csv line 4: invalid list_date '2023-13-01': expected YYYY-MM-DD"),
        ("AAPL,20230101,", "u.csv line 4: invalid list_date '20230101': expected YYYY-MM-DD"),
        ("AAPL,2023-W01-1,", "u.csv line 4: invalid list_date '2023-W01-1'"),
        ("AAPL,2023-02-30,", "u.csv line 4: invalid list_date '2023-02-30'"),
        ("AAPL,,yesterday", "u.csv line 4: invalid delisted_utc 'yesterday': expected a timestamp like"),
        ("AAPL,,2023-04-31T00:00:00Z", "u.csv line 4: invalid delisted_utc '2023-04-31T00:00:00Z'"),
        ("AAPL,,2023-04-21T25:00:00Z", "u.csv line 4: invalid delisted_utc"),
        ("AAPL,,2023-04-21T00:00:00Q", "u.csv line 4: invalid delisted_utc"),
        (
            "AAPL,2023-04-22,2023-04-21T00:00:00Z",
            # the columns the row gave, none it did not (a new user saw "last_date None")
            "u.csv line 4: list_date 2023-04-22 is after the last trading day 2023-04-21 "
            "(delisted_utc '2023-04-21T00:00:00Z')",
        ),
    ],
)
def test_bad_listing_dates_are_one_line_errors_naming_the_line(tmp_path, row, message):
    path = write(tmp_path, f"ticker,list_date,delisted_utc\nMSFT,,\n\n{row}\n")
    with pytest.raises(InputError) as caught:
        read_members(path)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_listed_and_delisted_on_one_session_is_fine(tmp_path):
    member = member_of(tmp_path, list_date="2023-04-21", delisted_utc="2023-04-21T00:00:00Z")
    assert (member.first_day, member.last_day) == (D(2023, 4, 21), D(2023, 4, 21))


def test_bad_listing_date_through_the_cli_exits_2_with_one_line(work):
    (work / "u.csv").write_text("ticker,list_date\nAAPL,2020-01-01\nNEWCO,2023-13-01\n", encoding="utf-8")
    result = run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-12-31")
    assert result.code == 2
    assert result.err == "error: u.csv line 3: invalid list_date '2023-13-01': expected YYYY-MM-DD\n"
    assert not (work / "ledger.db").exists()


# --- Parquet universes -----------------------------------------------------------


def polygon_like_frame() -> pl.DataFrame:
    """The columns the `universe` command writes (polyledger/universe_build.py): list_date
    as a date, delisted_utc as the text Polygon gives."""
    return pl.DataFrame(
        {
            "ticker": ["AAPL", "NEWCO", "GONE"],
            "name": ["Apple", "New Co", "Gone Inc"],
            "primary_exchange": ["XNAS", "XNYS", "XNAS"],
            "type": ["CS", "CS", "CS"],
            "active": [True, True, False],
            "cik": ["0000320193", None, "0000000001"],
            "composite_figi": ["BBG000B9XRY4", None, None],
            "list_date": [D(1980, 12, 12), D(2023, 6, 14), None],
            "delisted_utc": [None, None, "2023-04-21T00:00:00Z"],
            "market_cap": [3.0e12, None, None],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_universe_commands_files_read_the_same(tmp_path, suffix):
    path = tmp_path / f"universe{suffix}"
    frame = polygon_like_frame()
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)  # nulls become empty cells
    members = read_members(path)
    assert windows(members) == [
        ("AAPL", D(1980, 12, 12), None),
        ("NEWCO", D(2023, 6, 14), None),
        ("GONE", None, D(2023, 4, 21)),
    ]
    # the identity columns make the security: the FIGI where known, else a derived id
    assert [(m.security_id, m.link, m.cik) for m in members] == [
        ("BBG000B9XRY4", "composite_figi", "0000320193"),
        ("PL:NEWCO", "derived", None),
        ("PL:GONE:cik0000000001", "derived", "0000000001"),
    ]


def test_parquet_universe_with_typed_dates(tmp_path):
    frame = pl.DataFrame(
        {
            "Ticker": ["NEWCO", "GONE", "EST"],
            "list_date": [D(2023, 6, 14), None, None],
            "delisted_utc": [
                None,
                dt.datetime(2023, 4, 21, 4, 0, tzinfo=dt.timezone.utc),
                dt.datetime(2023, 1, 21, 5, 0, 0, 1000, tzinfo=dt.timezone.utc),
            ],
        }
    )
    path = tmp_path / "universe.PARQUET"
    frame.write_parquet(path)
    assert windows(read_members(path)) == [
        ("NEWCO", D(2023, 6, 14), None),
        ("GONE", None, D(2023, 4, 21)),
        ("EST", None, D(2023, 1, 21)),
    ]


@pytest.mark.parametrize(
    "frame, message",
    [
        (pl.DataFrame({"symbol": ["AAPL"]}), "has no 'ticker' column"),
        (pl.DataFrame({"ticker": ["AAPL", "aa/pl"]}), "u.parquet row 2: invalid ticker 'aa/pl'"),
        (pl.DataFrame({"ticker": ["AAPL", None]}), "u.parquet row 2: empty ticker"),
        (
            pl.DataFrame({"ticker": ["AAPL", "AAPL"]}),
            "u.parquet row 2: duplicate ticker 'AAPL' (first on row 1)",
        ),
        (pl.DataFrame({"ticker": [1, 2]}), "u.parquet row 1: invalid ticker 1: expected text"),
        (pl.DataFrame({"ticker": ["A"], "list_date": ["2023-13-01"]}), "u.parquet row 1: invalid list_date"),
        (pl.DataFrame({"ticker": ["A"], "delisted_utc": ["soon"]}), "u.parquet row 1: invalid delisted_utc"),
        (pl.DataFrame({"ticker": pl.Series([], dtype=pl.String)}), "lists no tickers"),
    ],
)
def test_bad_parquet_universe_is_one_clear_error(tmp_path, frame, message):
    path = tmp_path / "u.parquet"
    frame.write_parquet(path)
    with pytest.raises(InputError) as caught:
        read_members(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_parquet_name_on_a_text_file_is_an_input_error(tmp_path):
    path = tmp_path / "u.parquet"
    path.write_text("ticker\nAAPL\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_members(path)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_universe_with_two_ticker_columns_is_refused_not_half_read(tmp_path: Path, kind: str) -> None:
    """`ticker,name,Ticker` (a join of two lists) was read from its first ticker column
    only: the other's tickers were silently never planned (found by a review)."""
    path = tmp_path / f"u.{kind}"
    if kind == "csv":
        path.write_text("ticker,name,Ticker\nAAPL,x,MSFT\n", encoding="utf-8")
    else:
        pl.DataFrame({"ticker": ["AAPL"], "name": ["x"], "Ticker": ["MSFT"]}).write_parquet(path)
    with pytest.raises(InputError, match="'ticker' more than once"):
        read_members(path)


def test_plan_refuses_a_universe_with_two_ticker_columns_in_one_line(work) -> None:
    (work / "u.csv").write_text("ticker,name,Ticker\nAAPL,x,MSFT\n", encoding="utf-8")
    result = run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31")
    assert result.code == 2 and result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert not (work / "ledger.db").exists()
