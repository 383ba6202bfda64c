"""What the flat-file tests share: the universe and range, the bucket on moto, the env."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from support import read_dataset, run_cli, write_universe

from polyledger.testing import SyntheticMarket
from polyledger.testing.flatfiles import FlatDefects, publish, s3_client
from polyledger.trading_days import trading_days

D = dt.date
START, END = D(2023, 4, 1), D(2023, 6, 30)  # Good Friday, Memorial Day, Juneteenth inside
HOLIDAYS = (D(2023, 4, 7), D(2023, 5, 29), D(2023, 6, 19))
UNIVERSE = ["AAPL", "GONE", "MID3", "NEWCO", "TINY"]  # GONE delists in April, NEWCO lists in June
OTHERS = ["PLUG", "SIRI"]  # in the day files, not in the universe
DAYS = trading_days(START, END)
KEY_ID = "AKIAFLATFILESTEST"
SECRET = "flat-s3cr3t-NEVER-printed-4b2a"  # distinctive, so a leak is easy to grep for


def use_bucket(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str) -> None:
    monkeypatch.setenv("POLYLEDGER_FLATFILES_KEY_ID", KEY_ID)
    monkeypatch.setenv("POLYLEDGER_FLATFILES_SECRET", SECRET)
    monkeypatch.setenv("POLYLEDGER_FLATFILES_ENDPOINT", endpoint)
    monkeypatch.setenv("POLYLEDGER_FLATFILES_BUCKET", bucket)


def publish_market(
    endpoint: str, bucket: str, market: SyntheticMarket, defects: FlatDefects = FlatDefects()
) -> dict[str, str]:
    return publish(s3_client(endpoint), bucket, market, DAYS, UNIVERSE + OTHERS, defects=defects)


def plan(work: Path, name: str, datasets: tuple[str, ...] = ("minute", "day")) -> tuple[str, str]:
    """A ledger and data folder `name` with units of the universe over the range."""
    write_universe(work / "universe.csv", UNIVERSE)
    ledger, data = f"{name}.db", f"{name}-data"
    for dataset in datasets:
        result = run_cli(
            "plan", "--universe", "universe.csv", "--from", START, "--to", END, "--dataset", dataset,
            "--ledger", ledger,
        )  # fmt: skip
        assert result.code == 0, result.err
    return ledger, data


def bars(work: Path, data: str, dataset: str) -> pl.DataFrame:
    """The stored bars but vwap and otc (flat files have neither: null and false), on
    trading days only."""
    frame = read_dataset(work / data, dataset).drop("vwap", "otc")
    dates = frame.get_column("timestamp").dt.convert_time_zone("America/New_York").dt.date()
    return frame.filter(~dates.is_in(HOLIDAYS))
