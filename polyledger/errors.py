"""One exception hierarchy: callers catch by meaning, not by library."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import FrameType

from polyledger.secrets import redact


class PolyledgerError(Exception):
    """Base of every error polyledger raises on purpose."""


class InputError(PolyledgerError):
    """Bad user input (file, option, date). The CLI prints it on one line and exits 2."""


class SchemaTooNewError(InputError):
    """The ledger was written by a newer polyledger than this one."""


class LedgerError(PolyledgerError):
    """The ledger refused an operation."""


class IllegalTransition(LedgerError):
    """A unit was asked to move between states the state machine does not allow."""


class LeaseLost(LedgerError):
    """A worker tried to settle a unit it no longer holds (its lease expired and moved on)."""


class FetchError(PolyledgerError):
    """A request for a unit's data did not succeed.

    `error_class` is the short, stable name stored in the ledger (``http_503``,
    ``timeout``, ``not_entitled`` ...); users group failures by it.
    """

    error_class = "fetch_error"

    def __init__(
        self,
        message: str,
        *,
        error_class: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        if error_class:
            self.error_class = error_class
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after


class TransientError(FetchError):
    """Worth retrying: 429, 5xx, timeouts, resets, truncated or malformed bodies."""

    error_class = "transient"


class PermanentError(FetchError):
    """Retrying will not help this unit (not entitled, not found, bad request, protocol)."""

    error_class = "permanent"


class NotEntitled(PermanentError):
    error_class = "not_entitled"


class ProtocolError(PermanentError):
    """The server's answer breaks the documented protocol (e.g. pagination that does not advance)."""

    error_class = "protocol"


class FatalRunError(PolyledgerError):
    """Stops the whole run at once; units in flight go back to pending."""

    error_class = "fatal"


class AuthError(FatalRunError):
    """Missing or unknown API key."""

    error_class = "auth"


class StorageError(FatalRunError):
    """The data folder, or a file a command writes, cannot be written (disk full,
    read-only, permissions)."""

    error_class = "storage"


# --- the error classes stored in the ledger, by what a retry can do ------------------------

# Worth another try later: the server or the network misbehaved, not the request (any
# http_5xx too).
TRANSIENT_CLASSES = frozenset(
    {"http_429", "timeout", "connection", "truncated", "invalid_json", "bad_shape", "lease_expired"}
    # flat files: a ticker unit whose days are not all read yet (they are being read)
    | {"days_unread"}
    # an answer that left out bars it has (a first day asked alone held some), or came
    # before the unit's last day had ended by the API's own clock
    | {"clipped", "not_ended"}
    # a running unit a plan took back from its run (the symbol's listings changed over its
    # days): an attempt's class, the unit pending again
    | {"relisted"}
)
# Retrying will not change these (nor any other http_4xx, nor internal:<exception type>);
# `unknown` is what a failed unit without a class is grouped under.
PERMANENT_CLASSES = frozenset(
    {"not_entitled", "not_found", "bad_request", "pagination", "adjusted_mismatch", "out_of_range"}
    | {"invalid_ticker", "protocol", "permanent", "fetch_error", "unknown"}
    # flat files: a trading day's object is not in the bucket a day after it was due
    # (`retry` it once it is there); not in it before that: a later run reads it by itself
    | {"missing_file", "not_published"}
    # flat files: a ticker unit whose days were read for other tickers (one planned since),
    # or have no day unit (it was queued after its run planned the days): the next run
    # reads them and queues the unit again by itself
    | {"days_outdated"}
)
# the HTTP statuses whose class has a name of its own; any other is http_<status>
_STATUS_CLASSES = {400: "bad_request", 403: "not_entitled", 404: "not_found"}


def status_class(status: int) -> str:
    """The error class of an HTTP answer that is not a 200."""
    return _STATUS_CLASSES.get(status, f"http_{status}")


def is_transient_class(error_class: str) -> bool:
    """True for the error classes a retry may cure (any 5xx included)."""
    return error_class in TRANSIENT_CLASSES or (error_class.startswith("http_5") and len(error_class) == 8)


def is_known_class(name: str) -> bool:
    """True for every error class a unit can fail with, whether or not one has."""
    return (
        is_transient_class(name)
        or name in PERMANENT_CLASSES
        or name.startswith("internal:")
        or (name.startswith("http_") and name[5:].isdigit())
    )


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and its noun in the number it takes: "1 unit", "2,048 units"."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def some_of(names: Sequence[str], shown: int = 5) -> str:
    """The first few names, quoted, and how many in all (for a one-line message)."""
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(map(repr, names[:shown])) + more


def one_line(exc: BaseException | str, limit: int | None = 200, *, with_type: bool = False) -> str:
    """An exception's message (or any text) for a one-line report: whitespace collapsed,
    secrets redacted, then cut to `limit` characters (redacted first: a key cut in two
    would no longer be recognised); `with_type` puts the exception's type name first."""
    text = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
    text = redact(" ".join(text.split()))
    return text if limit is None else text[:limit]


def user_stacklevel() -> int:
    """The `stacklevel` for `warnings.warn`, called where it is called, that points at the
    first caller outside this package (a notebook's line, whichever of polyledger's paths
    led to the warning: `dl.bars`, `dl.dollar_bars`, an adjusted read)."""
    package = os.path.normcase(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and _file_of(frame).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _file_of(frame: FrameType) -> str:
    return os.path.normcase(os.path.abspath(frame.f_code.co_filename))
