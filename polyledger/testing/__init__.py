"""Test doubles for the Polygon / Massive API: a deterministic synthetic market and a
stand-in HTTP server that serves it (with optional faults, rate limits, latency and
data defects)."""

from polyledger.testing.market import Dividend, Listing, Split, SyntheticMarket
from polyledger.testing.messy import messy_listings
from polyledger.testing.server import Defects, FaultPlan, StandInServer

__all__ = [
    "Defects",
    "Dividend",
    "FaultPlan",
    "Listing",
    "Split",
    "StandInServer",
    "SyntheticMarket",
    "messy_listings",
]
