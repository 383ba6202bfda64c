"""The stand-in server for benchmarks, and the stand-in's own speed.

As a helper: `standin(...)` starts `polyledger serve` in its own process, so its work is not
counted as the client's (CPU, memory).

As a script, the stand-in's speed (figures, never test assertions: a test may not depend on
how fast the machine is):

    python bench/standin.py [--repeat 5]

prints the best of `--repeat` times to generate a dense month of minute bars (900 bars a
day; the synthetic market was built for about 50 ms or less) and to serve one full
50,000-bar page over HTTP without compression (built for about 0.5 s or less).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests

from polyledger.testing import Listing, StandInServer, SyntheticMarket
from polyledger.testing.market import et_midnight_ms

KEY = "standin-bench-key"
DENSE_MONTH_TARGET_S = 0.05
FULL_PAGE_TARGET_S = 0.5


@contextmanager
def standin(
    tickers: list[str], *, key: str, bars_per_day: int, seed: int = 0, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """`polyledger serve` on a free port; yields its base URL."""
    command = [
        sys.executable,
        "-m",
        "polyledger",
        "serve",
        "--port",
        "0",
        "--api-key",
        key,
        "--seed",
        str(seed),
        "--tickers",
        ",".join(tickers),
        "--bars-per-day",
        str(bars_per_day),
        *extra,
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait()


def best_of(repeat: int, action: Callable[[], float | None]) -> float:
    """The shortest of `repeat` runs of `action`, in seconds: `action` returns its own time
    when it knows better (the server's answer time), else the call is timed here."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        measured = action()
        best = min(best, measured if measured is not None else time.perf_counter() - started)
    return best


def dense_month_seconds(market: SyntheticMarket, repeat: int) -> float:
    march = (et_midnight_ms(dt.date(2024, 3, 1)), et_midnight_ms(dt.date(2024, 4, 1)))

    def generate() -> None:
        market.minute_bars("DENSE", *march)

    return best_of(repeat, generate)


def full_page_seconds(market: SyntheticMarket, repeat: int) -> float:
    with StandInServer(market, api_keys=(KEY,)) as server, requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {KEY}"
        url = f"{server.url}/v2/aggs/ticker/DENSE/range/1/minute/2024-01-01/2024-12-31"

        def serve() -> float:
            answer = http.get(
                url, params={"limit": 50000}, headers={"Accept-Encoding": "identity"}, timeout=60
            )
            assert answer.json()["resultsCount"] == 50000
            return answer.elapsed.total_seconds()  # until the headers: the server's work

        return best_of(repeat, serve)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    market = SyntheticMarket([Listing("DENSE", bars_per_day=900)], seed=7)
    figures = (
        (
            "dense month generated (900 bars/day)",
            dense_month_seconds(market, args.repeat),
            DENSE_MONTH_TARGET_S,
        ),
        ("50,000-bar page served (identity)", full_page_seconds(market, args.repeat), FULL_PAGE_TARGET_S),
    )
    for name, seconds, target in figures:
        verdict = "within" if seconds <= target else "ABOVE"
        built_for = f"{verdict} the {target * 1000:.0f} ms built for"
        print(f"{name}: best {seconds * 1000:.1f} ms of {args.repeat} ({built_for})")


if __name__ == "__main__":
    main()
