"""What passes in and out of the ledger: planned, claimed and fetched units, an attempt's
record, a stored file; and the small helpers every part of the ledger uses (timestamps,
owner ids, `IN` lists)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from polyledger.listings import Unattributed

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    """Fixed-width UTC timestamps, so string comparison in SQL is time comparison."""
    # isoformat is ~8x cheaper than strftime, and this runs on every claim and settle
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def in_list(column: str, values: Iterable[object], prefix: str) -> tuple[str, dict]:
    """`column IN (:p0, :p1, ...)` and its parameters, for a list of values."""
    params = {f"{prefix}{i}": value for i, value in enumerate(values)}
    return f"{column} IN ({', '.join(':' + key for key in params)})", params


# values per IN list: under the bound variables of any SQLite (999 before 3.32) and of
# PostgreSQL's protocol (65535), whatever a universe holds
IN_LIST_SIZE = 500


def in_lists(
    column: str, values: Iterable[object], prefix: str, size: int = IN_LIST_SIZE
) -> Iterator[tuple[str, dict]]:
    """`in_list` over `values` (each once: a value repeated in two slices would match its
    rows twice), `size` at a time: one statement per slice, so a list of any length stays
    under the database's limit of bound variables."""
    distinct = list(dict.fromkeys(values))
    for at in range(0, len(distinct), size):
        yield in_list(column, distinct[at : at + size], prefix)


def new_owner_id() -> str:
    """Who holds a lease: host, process and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class PlannedUnit:
    dataset: str
    ticker: str
    period_start: dt.date
    period_end: dt.date
    period_name: str | None = None  # set for units that are not a calendar period ("all")

    @property
    def period(self) -> str:
        """The calendar period that identifies the unit (a plan may clip its ends)."""
        if self.period_name is not None:
            return self.period_name
        if self.period_start.year != self.period_end.year:
            raise ValueError("a unit never spans two years")
        # integer formatting: strftime here was a third of planning's time
        if self.period_start.month == self.period_end.month and self.dataset != "day":
            return f"{self.period_start.year:04d}-{self.period_start.month:02d}"
        return f"{self.period_start.year:04d}"


@dataclass(frozen=True)
class ClaimedUnit:
    id: int
    dataset: str
    ticker: str
    period_start: dt.date
    period_end: dt.date
    attempts: int
    lease_token: str
    claimed_at: str
    previous_file: str | None = None  # the file an earlier settle recorded (a unit fetched again)


@dataclass(frozen=True)
class SeenUnit:
    """A settled unit as a check read it (`audit --deep`): `repair` acts on it only while it
    is still exactly so (`Resets.hold_unchanged`); any change since (a run fetched it again,
    a reset queued it) leaves it alone."""

    id: int
    state: str  # done | empty_confirmed
    attempts: int
    updated_at: str  # every state change sets it
    file_path: str | None
    checksum: str | None


@dataclass(frozen=True)
class AttemptRecord:
    """What one attempt did, stored in unit_attempts when the unit settles."""

    requests: int = 0
    bytes: int = 0
    bars: int = 0
    http_status: int | None = None
    request_id: str | None = None
    error_class: str | None = None
    error: str | None = None
    duplicates: int = 0  # bars that arrived twice with one timestamp (the first is kept)


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the data folder, forward slashes
    rows: int
    checksum: str
    bytes: int


@dataclass(frozen=True)
class FetchedUnit:
    """A unit whose answer is complete: its file, or None when it has no bars."""

    unit: ClaimedUnit
    attempt: AttemptRecord
    stored: StoredFile | None
    unattributed: Unattributed | None = None  # its bars inside no known listing of the symbol
    source: str = "rest"  # where the bars came from: rest (the API) | flatfiles
    # the ledger time its bars are as of, when before its settle (ISO text): a flat-file
    # build's snapshot of its days, so a day read again after it makes the unit stale
    as_of: str | None = None
