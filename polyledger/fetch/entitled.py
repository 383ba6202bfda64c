"""How far back the plan's history surely reaches, as far as this run has seen.

A plan's history starts at one date for every ticker, and a range straddling it may come
back as a 200 without its earlier days (polygon-api.md, "Entitlement boundaries"): an empty
answer, or a late first bar, proves nothing for days that may lie before it. Any bar proves
its day and every later one entitled, so an answer for a range starting on or after the
earliest day a bar was seen on (of any ticker, per dataset) cannot have been clipped; only
ranges starting before it are checked (`fetch.units`: their first day asked alone).
"""

from __future__ import annotations

import datetime as dt
import threading


class EntitledFrom:
    """The earliest day, per dataset, this run knows inside the plan's history (shared by its
    workers)."""

    def __init__(self) -> None:
        self._earliest: dict[str, dt.date] = {}
        self._lock = threading.Lock()

    def note(self, dataset: str, day: dt.date) -> None:
        """`day` is inside the plan's history: a bar was seen on it, or a 200 for it alone."""
        with self._lock:
            known = self._earliest.get(dataset)
            if known is None or day < known:
                self._earliest[dataset] = day

    def covers(self, dataset: str, day: dt.date) -> bool:
        """Whether `day` is surely inside the plan's history (a bar was seen on or before it)."""
        with self._lock:
            known = self._earliest.get(dataset)
        return known is not None and day >= known
