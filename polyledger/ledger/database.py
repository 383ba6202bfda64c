"""Opening a ledger: the SQLite engine with its pragmas, or a PostgreSQL engine, and schema
migrations (the same Alembic revisions for both).

A ledger location is a SQLite file path or a `postgresql://` (or `postgresql+psycopg://`) URL.
"""

from __future__ import annotations

import importlib.resources
import re
import shlex
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Union
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy import exc as sa_exc

from polyledger.errors import InputError, SchemaTooNewError, one_line

if TYPE_CHECKING:
    from alembic.config import Config

# The migration scripts' newest revision (`head_revision()`; a test keeps them equal): a
# ledger already at it opens without alembic, whose scripts and templates cost each
# interpreter ~12 MB and ~0.1 s (every `run --processes` child opens the ledger).
SCHEMA_HEAD = "0015"

BUSY_TIMEOUT_MS = 30_000
PG_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
# taken by `migrate` on PostgreSQL so two processes opening a new ledger do not both migrate it
_MIGRATION_LOCK = 0x706C6C67

Location = Union[Path, str]


def is_postgres(location: object) -> bool:
    """Whether a ledger location names a PostgreSQL database (rather than a SQLite file)."""
    return isinstance(location, str) and location.lower().startswith(PG_SCHEMES)


def parse_location(location: Location) -> Location:
    """A SQLite ledger's Path, or a PostgreSQL URL (checked, its password registered for
    redaction) as given."""
    if isinstance(location, Path):
        return location
    if not is_postgres(location):
        if "://" in str(location):
            raise InputError(
                f"unsupported ledger URL {redact_url(str(location))!r}: use a SQLite file path or "
                "postgresql://user:password@host[:port]/database"
            )
        return Path(location)
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise InputError(f"invalid ledger URL {redact_url(location)!r}: {exc}") from None
    if not parts.path.strip("/"):
        raise InputError(f"ledger URL {redact_url(location)!r} names no database: add /<database>")
    return location


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}{':' + str(parts.port) if parts.port else ''}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url.split("@")[-1] if "@" in url else url


def describe(location: Location) -> str:
    """How to name a ledger in messages (never with a password)."""
    return redact_url(location) if is_postgres(location) else str(location)


def postgres_place(url: str) -> str:
    """A PostgreSQL ledger's place however a host spells its URL (`postgres://`,
    `postgresql+psycopg://`, a user, a password, options, the default port left out):
    postgresql://host:port/database. (Hosts reaching the server by different names still
    differ: nothing in a URL tells them apart.)"""
    parts = urlsplit(libpq_url(url))
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"postgresql://{(parts.hostname or 'localhost').lower()}:{port}{parts.path or '/'}"


def libpq_url(url: str) -> str:
    """The URL as psycopg.connect takes it (no SQLAlchemy driver suffix)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.lower().startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + libpq_url(url)[len("postgresql://") :]


def connect_postgres(url: str, **kwargs):  # type: ignore[no-untyped-def]
    """A plain psycopg connection (autocommit: transactions are begun explicitly);
    unreachable servers are an InputError without the password."""
    import psycopg

    try:
        return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise _cannot_open(url, exc) from None


def _cannot_open(url: str, exc: BaseException) -> InputError:
    reason = one_line(getattr(exc, "orig", None) or exc, limit=None)
    message = f"cannot open the ledger {redact_url(url)}: {reason}"
    missing = re.search(r'database "(.+?)" does not exist', reason)
    if missing:
        # polyledger makes the ledger's tables, never the database: that needs a role
        # allowed to create databases, which a shared server rarely gives its users
        message += f" (create it first: {_createdb_command(url, missing.group(1))})"
    return InputError(message)


def _createdb_command(url: str, database: str) -> str:
    """`createdb` for the server and user the URL names (never its password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        where = conninfo_to_dict(libpq_url(url))
    except Exception:  # noqa: BLE001 - the hint is a courtesy
        where = {}
    options = [
        f"{flag} {shlex.quote(str(where[key]))}"
        for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user"))
        if where.get(key)
    ]
    return " ".join(["createdb", *options, shlex.quote(database)])


def _migrations_config() -> Config:
    from alembic.config import Config

    config = Config()
    location = importlib.resources.files("polyledger.migrations")
    config.set_main_option("script_location", str(location))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_migrations_config()).get_current_head()


def configure_connection(connection: sqlite3.Connection) -> None:
    """Pragmas every ledger connection uses; transactions are begun explicitly."""
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # a read-only ledger: reading still works, writing fails with a clear error
    # NORMAL may lose the last commits on power loss; those units are simply fetched again
    cursor.execute("PRAGMA synchronous=NORMAL")
    # checkpoint (the only fsync under NORMAL) every ~40 MB of WAL instead of every 4 MB:
    # claim + complete with 8 threads went from ~3,500 to ~4,300 units/s
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """A plain DBAPI connection to a ledger that `open_engine` has already migrated."""
    connection = sqlite3.connect(
        Path(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
    )
    configure_connection(connection)
    return connection


def create_sqlite_engine(path: Path) -> Engine:
    """An engine whose connections use WAL, NORMAL sync and a generous busy timeout.

    Transactions are begun explicitly (driver autocommit off) so `immediate=True`
    can take the write lock up front, which deferred BEGIN would not.
    """
    engine = create_engine(
        f"sqlite:///{Path(path).as_posix()}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=32,
        max_overflow=32,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        configure_connection(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest revision; refuse a ledger from a newer polyledger."""
    if current_revision(engine) == SCHEMA_HEAD:
        return SCHEMA_HEAD  # the usual case: no write lock needed, so readers never wait for a run
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = _migrations_config()
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    with engine.connect().execution_options(immediate=True) as connection:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            current = MigrationContext.configure(connection).get_current_revision()
            if current == head:
                return head
            if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
                raise SchemaTooNewError(
                    f"ledger schema {current!r} is newer than this polyledger knows ({head!r}): "
                    "upgrade polyledger"
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    return head


def current_revision(engine: Engine) -> str | None:
    """The ledger's schema revision (alembic's version table, read as alembic reads it);
    None for a database without a ledger."""
    with engine.connect() as connection:
        current = None
        if inspect(connection).has_table("alembic_version"):
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
            if len(rows) > 1:  # one line of migrations: never several heads
                raise SchemaTooNewError(f"ledger schema has several revisions: {sorted(r[0] for r in rows)}")
            current = rows[0][0] if rows else None
        connection.rollback()
    return current


def create_postgres_engine(url: str) -> Engine:
    """A psycopg engine; its connections are checked before use (a server may drop idle ones)."""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=8,
        max_overflow=32,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )


def open_postgres_engine(url: str, *, create: bool, migrate_schema: bool = True) -> Engine:
    """Open (and migrate) a PostgreSQL ledger; with create=False a database without a ledger
    is an InputError. Unreachable servers and bad credentials are InputErrors (no password)."""
    engine = create_postgres_engine(url)
    try:
        try:
            with engine.connect() as connection:
                has_ledger = inspect(connection).has_table("units")
                connection.rollback()
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise _cannot_open(url, exc) from None
        if not has_ledger and not create:
            raise InputError(f"no ledger at {redact_url(url)}: run `polyledger plan` first")
        if migrate_schema:
            migrate(engine)
    except Exception:
        engine.dispose()
        raise
    return engine


def open_engine(path: Location, *, create: bool, migrate_schema: bool = True) -> Engine:
    """Open (and migrate) the ledger at `path` (a SQLite file or a PostgreSQL URL); with
    create=False a missing ledger is an InputError."""
    path = parse_location(path)
    if isinstance(path, str):
        return open_postgres_engine(path, create=create, migrate_schema=migrate_schema)
    existed = path.exists()
    if not existed:
        if not create:
            raise InputError(f"no ledger at {path}: run `polyledger plan` first")
        if not path.parent.exists():
            raise InputError(f"folder for the ledger does not exist: {path.parent}")
    elif path.is_dir():
        raise InputError(f"ledger path is a folder, not a file: {path}")
    else:
        _check_is_sqlite(path)
    engine = create_sqlite_engine(path)
    if not migrate_schema:
        return engine
    try:
        if existed:
            _check_is_ledger(engine, path, create)
        migrate(engine)
    except Exception:
        engine.dispose()
        raise
    return engine


def _check_is_ledger(engine: Engine, path: Path, create: bool) -> None:
    """An existing SQLite file is a ledger (it has a schema revision), or empty and to be
    made one (create): never another program's database, which a migration would write
    polyledger's tables into."""
    if current_revision(engine) is not None:
        return
    tables = inspect(engine).get_table_names()
    if tables:
        raise InputError(
            f"{path} is a SQLite database but not a polyledger ledger (it holds {', '.join(tables[:3])}"
            f"{', ...' if len(tables) > 3 else ''}): give another --ledger"
        )
    if not create:
        raise InputError(f"no ledger at {path} (an empty database): run `polyledger plan` first")


def _check_is_sqlite(path: Path) -> None:
    with path.open("rb") as handle:
        magic = handle.read(16)
    if magic and magic != b"SQLite format 3\x00":
        raise InputError(f"{path} is not a SQLite ledger")


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the ledger: read-only file mode plus an authorizer
    that allows only reads (so ATTACH, PRAGMA writes and the like fail too)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no ledger at {path}")
    _check_is_sqlite(path)
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
    allowed.add(getattr(sqlite3, "SQLITE_RECURSIVE", 33))

    def authorizer(action: int, *_args: object) -> int:
        return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY

    connection.set_authorizer(authorizer)
    return connection
