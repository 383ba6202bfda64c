"""Start the stand-in server in its own process for a benchmark, so its work is not counted
as the client's (CPU, memory)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


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
