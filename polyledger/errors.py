"""One exception hierarchy: callers catch by meaning, not by library."""

from __future__ import annotations


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
    """The data folder cannot be written (disk full, read-only, permissions)."""

    error_class = "storage"


# --- the taxonomy of error classes stored in the ledger --------------------------------

# Worth another try later: the server or the network misbehaved, not the request. Every
# other class (not_entitled, not_found, bad_request, pagination, adjusted_mismatch,
# out_of_range, invalid_ticker, internal:*) is permanent: retrying will not change it.
TRANSIENT_CLASSES = frozenset(
    {"http_429", "timeout", "connection", "truncated", "invalid_json", "bad_shape", "lease_expired"}
)


def is_transient_class(error_class: str) -> bool:
    """True for the error classes a retry may cure (any 5xx included)."""
    return error_class in TRANSIENT_CLASSES or (error_class.startswith("http_5") and len(error_class) == 8)
