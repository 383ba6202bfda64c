"""Test doubles for the Polygon / Massive API: a deterministic synthetic market and a
stand-in HTTP server that serves it (with optional faults, rate limits and latency)."""

from polyledger.testing.market import Dividend, Listing, Split, SyntheticMarket
from polyledger.testing.server import FaultPlan, StandInServer

__all__ = ["Dividend", "FaultPlan", "Listing", "Split", "StandInServer", "SyntheticMarket"]
