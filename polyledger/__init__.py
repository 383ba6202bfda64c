"""polyledger: historical Polygon.io / Massive bars into partitioned Parquet, tracked by a ledger."""

__version__ = "0.1.0"
