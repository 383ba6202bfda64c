"""Ledger tables as SQLModel classes: readable from a notebook, used as Core tables on hot paths.

The schema itself is created and evolved by the Alembic migrations in `migrations/`;
these classes must match the latest migration (a test checks it).
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class Unit(SQLModel, table=True):
    """One work unit: a dataset x ticker x period, and everything known about fetching it."""

    __tablename__ = "units"

    id: Optional[int] = Field(default=None, primary_key=True)
    dataset: str
    ticker: str
    period: str  # the calendar month ("2024-03") or year ("2024") the unit belongs to
    period_start: str  # ISO date, US/Eastern session date, inclusive
    period_end: str  # ISO date, inclusive
    state: str = "pending"
    rows: Optional[int] = None  # bars in the unit's file; 0 for empty_confirmed
    attempts: int = 0
    last_error: Optional[str] = None
    error_class: Optional[str] = None
    adjusted: Optional[bool] = None  # how the stored bars were requested
    fetched_at: Optional[str] = None
    file_path: Optional[str] = None  # relative to the data folder, forward slashes
    checksum: Optional[str] = None  # sha256 of the Parquet file
    bytes: Optional[int] = None  # size of the Parquet file
    requests: int = 0  # HTTP requests spent on this unit, all attempts
    source: Optional[str] = None  # where its settled bars came from: rest | flatfiles
    lease_owner: Optional[str] = None
    lease_token: Optional[str] = None
    lease_expires_at: Optional[str] = None
    created_at: str
    updated_at: str


class UnitAttempt(SQLModel, table=True):
    """One attempt at a unit: why did it fail is one query on this table."""

    __tablename__ = "unit_attempts"

    id: Optional[int] = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="units.id")
    run_id: Optional[str] = None
    started_at: str
    ended_at: str
    outcome: str  # the state the attempt left the unit in
    error_class: Optional[str] = None
    error: Optional[str] = None
    http_status: Optional[int] = None
    request_id: Optional[str] = None
    requests: int = 0
    bytes: int = 0
    bars: int = 0
    duplicates: int = 0  # bars that arrived twice with one timestamp (the first was kept)


class Run(SQLModel, table=True):
    """One `polyledger run` invocation."""

    __tablename__ = "runs"

    id: str = Field(primary_key=True)
    started_at: str
    ended_at: Optional[str] = None
    host: str
    pid: int
    workers: int
    rate: float
    adjusted: bool
    base_url: str
    outcome: Optional[str] = None  # finished | stopped | interrupted | lost (died: leases reclaimed)
    units_settled: int = 0  # units it finished (done, empty or failed), kept current with the heartbeat
    requests: int = 0
    owner: Optional[str] = None  # the lease owner id of its workers
    last_seen_at: Optional[str] = None  # its last heartbeat


class Setting(SQLModel, table=True):
    """A ledger-wide choice, e.g. `adjusted`: one ledger never mixes adjusted and raw bars."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True)
    value: str


class Split(SQLModel, table=True):
    """A split known for a ticker (from the splits dataset): what the stale-adjustment audit reads."""

    __tablename__ = "splits"

    ticker: str = Field(primary_key=True)
    execution_date: str = Field(primary_key=True)  # ISO date
    split_from: float
    split_to: float
    recorded_at: str


class QualityFlag(SQLModel, table=True):
    """One finding of `audit --quality` (replaced whole by each check)."""

    __tablename__ = "quality_flags"

    id: Optional[int] = Field(default=None, primary_key=True)
    checked_at: str
    dataset: str
    ticker: str
    session_date: Optional[str] = None  # ISO date, US/Eastern
    check_name: str
    detail: str
    value: Optional[float] = None
    unit_id: Optional[int] = None


class Listing(SQLModel, table=True):
    """A symbol over a window of session dates, and the security it belongs to (`polyledger.listings`)."""

    __tablename__ = "listings"

    id: Optional[int] = Field(default=None, primary_key=True)
    ticker: str = Field(index=True)
    first_day: Optional[str] = None  # ISO session date, inclusive; None: unbounded
    last_day: Optional[str] = None
    security_id: str = Field(index=True)  # composite FIGI, or polyledger's derived `PL:` id
    link: str  # how security_id was made: composite_figi | ticker_event | derived | universe_file
    name: Optional[str] = None
    cik: Optional[str] = None
    composite_figi: Optional[str] = None
    share_class_figi: Optional[str] = None
    recorded_at: str
    source: Optional[str] = None  # the universe file a plan recorded it from (None: unknown)


class UnattributedBars(SQLModel, table=True):
    """A unit's bars that fall inside no known listing of its symbol (null security_id)."""

    __tablename__ = "unattributed_bars"

    unit_id: int = Field(foreign_key="units.id", primary_key=True)
    ticker: str
    first_day: str  # ISO session dates of the first and last such bar
    last_day: str
    bars: int
    recorded_at: str


class Planned(SQLModel, table=True):
    """What `plan` was asked, per dataset and universe file: what `sync` plans again."""

    __tablename__ = "planned"
    __table_args__ = (UniqueConstraint("dataset", "universe", name="uq_planned_dataset_universe"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    dataset: str
    universe: str  # absolute path of the universe file; '' for a dataset without one
    first_day: Optional[str] = None  # ISO date, the earliest --from; None for per-ticker datasets
    last_day: Optional[str] = None  # the last --to given; None: through yesterday
    planned_at: str
    widest_day: Optional[str] = None  # the latest --to ever given or session synced through; None: no --to
    forgotten: bool = False  # `sync --forget`: not synced; audit still judges its range


class Unwidened(SQLModel, table=True):
    """A clipped unit a plan asked to widen while a run held it (`busy`): the days the plan
    asked of it, in no unit until a later plan widens it (`audit`: `unplanned`)."""

    __tablename__ = "unwidened"

    unit_id: int = Field(foreign_key="units.id", primary_key=True)
    first_day: str  # ISO date
    last_day: str  # ISO date
    planned_at: str


class UniverseBuild(SQLModel, table=True):
    """How `universe` built a file: what `sync` builds it again with."""

    __tablename__ = "universe_builds"

    out: str = Field(primary_key=True)  # absolute path of the CSV
    types: str  # comma-separated
    exchanges: str
    cap_max: Optional[float] = None
    as_of: Optional[str] = None  # the --date given (None: the build day)
    built_at: str


class SyncLock(SQLModel, table=True):
    """Who runs `sync` right now (a row while one runs): host, pid, since, last heartbeat."""

    __tablename__ = "sync_lock"

    name: str = Field(primary_key=True)
    token: str
    host: str
    pid: int
    since: str
    beat_at: str


class KeyRate(SQLModel, table=True):
    """An API key's rate limit as a run measured it (`polyledger.polygon.keyshare`): a run
    starting later on the key starts there instead of probing from `--rate`. The key
    itself is never stored: `key_id` is a one-way digest of the API and the key."""

    __tablename__ = "key_rates"

    key_id: str = Field(primary_key=True)
    limit_rps: float  # requests per second the key was measured to allow
    learned_at: float  # epoch seconds, on the clock of the host that measured it
    learned_by: str  # the run that measured it


class KeyMember(SQLModel, table=True):
    """A run sending requests with a key now, and the grid of request slots the runs on
    that key share (`polyledger.polygon.keyshare`). Rows of runs gone stale are ignored
    and replaced; nothing here outlives the runs."""

    __tablename__ = "key_members"

    member: str = Field(primary_key=True)  # the run's id
    key_id: str = Field(index=True)
    joined_at: float  # epoch seconds on the run's host (hosts sharing a key keep clocks in step)
    seen_at: float
    rate: float  # the key's requests/second as that run has it
    anchor: float  # epoch seconds where its grid of slots starts
    known: Optional[float] = None  # the key's limit as that run measured it
    throttled: int = 0  # 429s that run has seen
    ok: int = 0  # its requests accepted so far


class FlatFile(SQLModel, table=True):
    """One day file read from the provider's flat files for a day unit (`minute_files`,
    `day_files`): what was read, and the ETag last seen in the bucket (a change: stale)."""

    __tablename__ = "flat_files"

    unit_id: int = Field(foreign_key="units.id", primary_key=True)
    object_key: str
    etag: str  # as read
    size: int  # bytes of the gzip object
    rows: int  # rows of the whole day file (every symbol)
    universe: str  # hash of the tickers the day was staged for
    seen_etag: Optional[str] = None  # last seen in the bucket (`audit --etags`)
    read_at: str
    changed_at: Optional[str] = None  # a read found another ETag than the one before
