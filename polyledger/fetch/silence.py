"""Telling a dead run from a slow one, without trusting another host's clock.

A process killed with -9 stops at once but keeps its units until their leases run out (60 s
by default), and every other run sits idle that long once the rest is done. So a run says
it is alive every `beat` seconds (`runs.last_seen_at`, with its counters; its leases are
still renewed every quarter lease), and watches the others: it remembers each one's
`last_seen_at` as a value, and when that value last changed on its own clock. A run whose
value stayed the same for SILENT_BEATS beats, while the watcher itself looked at least every
MAX_GAP_BEATS beats, is dead: its units are taken back at once (`Ledger.reclaim_silent`).

- Hosts' clocks are never compared: a skewed clock cannot make a live run look dead.
- A watcher that could not look regularly (its own beat late: a locked ledger, a dropped
  connection, a stalled process) starts counting again, so an outage everyone shares never
  makes anyone look dead.
- A live run keeps beating however slow its requests are: only its heartbeat thread matters.
- A window as long as the lease or longer adds nothing: the lease alone decides then.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping

BEAT_SECONDS = 2.0  # how often a run says it is alive (at most: a quarter lease if shorter)
SILENT_BEATS = 5  # beats a run may miss before it is taken for dead
MAX_GAP_BEATS = 3  # a watcher that did not look for longer than this starts counting again


def beat_seconds(lease_seconds: float) -> float:
    return min(lease_seconds / 4, BEAT_SECONDS)


class SilenceWatch:
    """Which other runs stopped beating, as seen from this process. Thread-safe: the
    heartbeat thread observes, workers ask who is silent."""

    def __init__(self, lease_seconds: float, silent_beats: int | None = None) -> None:
        self.beat = beat_seconds(lease_seconds)
        beats = SILENT_BEATS if silent_beats is None else silent_beats
        window = beats * self.beat
        # None: no window shorter than the lease, expired leases alone take units back
        self.window: float | None = window if 0 < window < lease_seconds else None
        self.max_gap = MAX_GAP_BEATS * self.beat
        self._seen: dict[str, tuple[str, dt.datetime]] = {}  # owner -> (last_seen_at, unchanged since)
        self._looked: dt.datetime | None = None
        self._lock = threading.Lock()

    def observe(self, now: dt.datetime, seen: Mapping[str, str]) -> None:
        """What the ledger showed at `now` (this process's clock): owner -> `last_seen_at`
        of every other open run holding units. Call it right after this run's own beat."""
        with self._lock:
            regular = self._looked is not None and (now - self._looked).total_seconds() <= self.max_gap
            self._looked = now
            kept: dict[str, tuple[str, dt.datetime]] = {}
            for owner, value in seen.items():
                before = self._seen.get(owner)
                unchanged = regular and before is not None and before[0] == value
                kept[owner] = before if unchanged else (value, now)  # type: ignore[assignment]
            self._seen = kept

    def silent(self, now: dt.datetime) -> dict[str, str]:
        """Runs seen silent for the whole window: owner -> the `last_seen_at` they kept (the
        ledger takes their units back only if it still shows that value). Nothing while this
        watcher's own last look is older than a gap: its view is stale."""
        with self._lock:
            looked = self._looked
            if self.window is None or looked is None or (now - looked).total_seconds() > self.max_gap:
                return {}
            return {
                owner: value
                for owner, (value, since) in self._seen.items()
                if (looked - since).total_seconds() >= self.window
            }
