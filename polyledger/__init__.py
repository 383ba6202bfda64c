"""polyledger: historical Polygon.io / Massive bars into partitioned Parquet, tracked by a ledger.

In a notebook: `dl = polyledger.open("ledger.db", "data")`, then `dl.units()`,
`dl.bars("minute", tickers=[...], start=..., end=...)`, `dl.audit()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyledger.fetch.heap import share_one_arena

# before any thread allocates (polars starts its threads on import): a run's threads then
# reuse each other's freed page buffers instead of faulting in new ones (fetch/heap.py)
share_one_arena()

if TYPE_CHECKING:
    from pathlib import Path

    from polyledger.download import Download


def open(ledger: Path | str = "ledger.db", data: Path | str = "data") -> Download:  # noqa: A001
    """Open a download (an existing ledger and its data folder) for reading; see
    `polyledger.download`. Imported lazily so the command line starts fast."""
    from polyledger.download import Download

    return Download(ledger, data)


def __getattr__(name: str) -> str:
    # `polyledger.__version__` from package metadata, read only when asked (see _version)
    if name == "__version__":
        from polyledger._version import version

        return version()
    raise AttributeError(f"module 'polyledger' has no attribute {name!r}")
