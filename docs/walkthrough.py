# %% [markdown]
# # From a download to research: a walkthrough
#
# A notebook in plain Python (`# %%` cells: VS Code, PyCharm, Jupyter with jupytext, or
# `python docs/walkthrough.py`). It reads a raw download of the built-in demo: adjusted
# daily and minute series, dollar bars, and a picture of what the ledger holds. Every cell
# runs in the tests (tests/test_walkthrough.py) against the demo's ledger.
# Conventions: [research.md](research.md).

# %%
import os
import warnings
from pathlib import Path

import polars as pl

import polyledger
from polyledger.demo import run_demo
from polyledger.download import UnsettledUnitsWarning

# the demo's plan is entitled from 2023 only: its 2022 units failed on purpose, and reads
# that include them say so
warnings.simplefilter("ignore", UnsettledUnitsWarning)

# a raw download (bars fetched unadjusted, as `polyledger run --unadjusted` does): adjusting
# on read refuses bars the API already adjusted. The demo runs a local stand-in API, no key.
FOLDER = Path(os.environ.get("POLYLEDGER_WALKTHROUGH", "polyledger-research-demo"))
if not (FOLDER / "ledger.db").exists():
    run_demo(FOLDER, adjusted=False)
dl = polyledger.open(FOLDER / "ledger.db", FOLDER / "data")
dl.units().group_by("dataset", "state").len().sort("dataset", "state")

# %% [markdown]
# ## Adjusted daily bars
#
# AAPL split 1:4 on 2023-08-14. Raw closes drop by about 4x that day; split-adjusted ones
# (prices before the split divided by 4, volumes multiplied by 4) run on.

# %%
raw = dl.bars("day", tickers="AAPL", start="2023-08-09", end="2023-08-17").collect()
daily = dl.bars("day", tickers="AAPL", start="2023-08-09", end="2023-08-17", adjust="splits").collect()
jumps = pl.DataFrame(
    {
        "day": raw["timestamp"].dt.convert_time_zone("America/New_York").dt.date(),
        "raw_close": raw["close"],
        "adjusted_close": daily["close"],
        "adjusted_volume": daily["volume"],
    }
).with_columns(
    raw_change=pl.col("raw_close").pct_change(), adjusted_change=pl.col("adjusted_close").pct_change()
)
print(jumps)
assert jumps["raw_change"].min() < -0.7 and jumps["adjusted_change"].abs().max() < 0.2

# %% [markdown]
# `as_of` puts prices on the share basis of a day: as of 2023-08-01, before the split, the
# bars before it are the raw ones and the later ones are multiplied by 4.

# %%
before = dl.bars(
    "day", tickers="AAPL", start="2023-08-09", end="2023-08-17", adjust="splits", as_of="2023-08-01"
)
print(before.select("timestamp", "close").collect())

# %% [markdown]
# ## Adjusted minute bars, and dividends
#
# Minute bars the same way. With `"splits+dividends"` a cash dividend multiplies the prices
# before its ex-date by 1 - dividend / previous close (PLUG paid 0.12 on 2023-02-06).

# %%
minutes = dl.bars("minute", tickers="AAPL", start="2023-08-11", end="2023-08-14", adjust="splits").collect()
print(minutes.group_by_dynamic("timestamp", every="1d").agg(pl.col("close").last(), pl.col("volume").sum()))

plug = dl.bars(
    "day", tickers="PLUG", start="2023-02-01", end="2023-02-08", adjust="splits+dividends"
).collect()
plug_raw = dl.bars("day", tickers="PLUG", start="2023-02-01", end="2023-02-08").collect()
print(plug.select("timestamp", "close", factor=plug["close"] / plug_raw["close"]))

# %% [markdown]
# ## Dollar bars
#
# About 20 bars a day: each session's threshold is the mean daily dollar volume of the 20
# sessions before it, divided by 20 (the first session is warm-up). A bar closes on the
# minute its dollars reach the threshold; bars span sessions.

# %%
bars = dl.dollar_bars(["AAPL", "SIRI", "PLUG"], bars_per_day=20, start="2023-01-01", adjust="splits")
per_day = (
    bars.with_columns(day=pl.col("end").dt.convert_time_zone("America/New_York").dt.date())
    .group_by("ticker", "day")
    .len()
    .group_by("ticker")
    .agg(pl.col("len").mean().alias("bars_a_day"), pl.col("len").sum().alias("bars"))
    .sort("ticker")
)
print(per_day)
print(bars.head(3))

# %% [markdown]
# ## Coverage
#
# Which months of minute bars the ledger holds, per ticker: a text table, and a picture
# when matplotlib is installed.

# %%
units = dl.units("minute").with_columns(month=pl.col("period_start").dt.strftime("%Y-%m"))
coverage = units.pivot(
    on="month", index="ticker", values="state", aggregate_function="first", sort_columns=True
)
print(coverage.select("ticker", *sorted(coverage.columns[1:])[-6:]))

try:
    import matplotlib

    matplotlib.use("Agg")  # a file, not a window
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
if plt is not None:
    codes = {"done": 2, "empty_confirmed": 1}
    months = sorted(coverage.columns[1:])
    grid = [[codes.get(row[m], 0) for m in months] for row in coverage.iter_rows(named=True)]
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=2)
    axes.set_yticks(range(coverage.height), coverage["ticker"].to_list())
    axes.set_xticks(range(0, len(months), 3), months[::3], rotation=45)
    axes.set_title("minute bars: done (yellow), empty (green), failed or missing (purple)")
    figure.tight_layout()
    figure.savefig(FOLDER / "coverage.png")

# %%
dl.close()
