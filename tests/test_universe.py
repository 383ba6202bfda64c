from pathlib import Path

import pytest

from polyledger.errors import InputError
from polyledger.universe import read_universe, validate_ticker


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
        ("ticker\naapl\n", "not upper case"),
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
