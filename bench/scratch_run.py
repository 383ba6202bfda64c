"""The common preamble of the run benchmarks: a ledger and data folder in a temporary
directory, tickers planned, and a Run ready to execute against a stand-in."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.plan import PlanResult, plan
from polyledger.storage import BarStore


def months_from(start: dt.date, months: int) -> dt.date:
    """The last day of the `months`-th month from `start` (a first of the month)."""
    return (start + dt.timedelta(days=31 * months)).replace(day=1) - dt.timedelta(days=1)


@contextmanager
def scratch_run(
    url: str, key: str, tickers: list[str], start: dt.date, end: dt.date, options: RunOptions
) -> Iterator[tuple[Run, PlanResult]]:
    """Minute units of `tickers` over [start, end] in a fresh ledger, and the Run to fetch them."""
    with tempfile.TemporaryDirectory() as scratch, Ledger(Path(scratch) / "ledger.db") as ledger:
        planned = plan(ledger, tickers, "minute", start, end)
        yield (
            Run(ledger, BarStore(Path(scratch) / "data"), api_key=key, base_url=url, options=options),
            planned,
        )
