"""Projected wall time of the full job (3,107 tickers, 2004-2025, minute bars) at 100
requests/second, from the requests per ticker-year measured here on a mixed universe.

    python bench/scale.py [--tickers 40] [--years 4]

The sample mixes densities like a small-cap universe (20 to 900 minute bars a day, some
names listed late or delisted early). Requests are counted by the stand-in (in-process
here: only counts matter, not time). Compared with the previous system's 14-16 h.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.plan import plan
from polyledger.storage import BarStore
from polyledger.testing import Listing, StandInServer, SyntheticMarket

KEY = "scale-key"
FULL_TICKERS, FULL_YEARS = 3_107, 22  # 2004-01-01 .. 2025-12-31
RATE = 100.0  # requests/second, the paid plans' recommended ceiling
PREVIOUS_HOURS = (14, 16)


def sample_listings(count: int, first: dt.date, last: dt.date, seed: int) -> list[Listing]:
    chance = random.Random(seed)
    listings = []
    for index in range(count):
        density = int(20 * (45 ** chance.random()))  # log-uniform, 20 .. 900 bars a day
        listed = (
            first + dt.timedelta(days=chance.randrange((last - first).days))
            if chance.random() < 0.3
            else None
        )
        delisted = last - dt.timedelta(days=chance.randrange(365)) if chance.random() < 0.2 else None
        listings.append(
            Listing(f"M{index:03d}", list_date=listed, delist_date=delisted, bars_per_day=density)
        )
    return listings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=40)
    parser.add_argument("--years", type=int, default=4)
    args = parser.parse_args()
    first, last = dt.date(2020, 1, 1), dt.date(2020 + args.years - 1, 12, 31)
    listings = sample_listings(args.tickers, first, last, seed=2026)
    with StandInServer(SyntheticMarket(listings, seed=3), api_keys=(KEY,)) as server:
        with tempfile.TemporaryDirectory() as scratch, Ledger(Path(scratch) / "ledger.db") as ledger:
            plan(ledger, [x.ticker for x in listings], "minute", first, last)
            began = time.perf_counter()
            report = Run(
                ledger,
                BarStore(Path(scratch) / "data"),
                api_key=KEY,
                base_url=server.url,
                options=RunOptions(workers=8, rate=100_000),
            ).execute()
            elapsed = time.perf_counter() - began
            bars = ledger.query("SELECT sum(rows) AS n FROM units")[0].n
        requests = server.stats.bars_requests
    per_ticker_year = requests / (args.tickers * args.years)
    full_requests = per_ticker_year * FULL_TICKERS * FULL_YEARS
    request_hours = full_requests / RATE / 3600
    full_bars = bars / (args.tickers * args.years) * FULL_TICKERS * FULL_YEARS
    client_hours = full_bars / (bars / elapsed) / 3600  # pessimistic: the stand-in shared the cores
    hours = max(request_hours, client_hours)
    print(
        f"sample: {args.tickers} tickers x {args.years} years, {bars:,} bars, {requests:,} requests "
        f"({report.outcome}): {per_ticker_year:.2f} requests per ticker-year"
    )
    print(f"requests: {full_requests:,.0f} for the full job -> {request_hours:.2f} h at {RATE:g} requests/s")
    print(
        f"client: {bars / elapsed:,.0f} bars/s in this run -> {full_bars / 1e9:.1f} billion bars "
        f"take {client_hours:.2f} h (pessimistic: the stand-in shared the 2 cores)"
    )
    print(
        f"projected: {hours:.2f} h, the slower of the two; previous system {PREVIOUS_HOURS[0]}-"
        f"{PREVIOUS_HOURS[1]} h -> {PREVIOUS_HOURS[0] / hours:.1f}-{PREVIOUS_HOURS[1] / hours:.1f}x faster"
    )


if __name__ == "__main__":
    main()
