"""Runs (a row per `polyledger run`, kept current by its heartbeat) and the ledger's settings."""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import insert, text

from polyledger.ledger.connection import LedgerConnection, _reconnecting
from polyledger.ledger.models import Run
from polyledger.ledger.records import iso

_RUNS = Run.__table__


LEDGER_ID = "ledger_id"  # the setting: what the ledger's data folder's marker names
# a setting recorded unless the ledger has one already (named parameters k, v)
CLAIM_SETTING = "INSERT INTO settings (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING"


def new_ledger_id() -> str:
    return uuid.uuid4().hex


class Runs(LedgerConnection):
    @_reconnecting
    def claim_setting(self, key: str, value: str) -> str:
        """Record `value` for `key` unless the ledger has one already; returns the stored
        value. Atomic, so two processes starting together agree on the first one."""
        with self._write() as cursor:
            cursor.execute(CLAIM_SETTING, {"k": key, "v": value})
            return cursor.execute("SELECT value FROM settings WHERE key = :k", {"k": key}).fetchone()[0]

    @_reconnecting
    def release_setting(self, key: str, value: str) -> None:
        """Forget `key` if it still holds `value` (a claim this process made and could not
        keep); another value stays."""
        with self._write() as cursor:
            cursor.execute("DELETE FROM settings WHERE key = :k AND value = :v", {"k": key, "v": value})

    def identity(self) -> str:
        """This ledger's id: what its data folder's marker names, so that another ledger's
        run never writes into it (copied by export/import). Made with the first units
        planned (`add_units`), so a backup taken after `plan` has it; a ledger planned by
        an earlier version gets it here, at its first call."""
        return self.claim_setting(LEDGER_ID, new_ledger_id())

    @_reconnecting
    def start_run(
        self,
        run_id: str,
        *,
        workers: int,
        rate: float,
        adjusted: bool,
        base_url: str,
        owner: str | None = None,
    ) -> None:
        now = iso(self.clock())
        with self.engine.begin() as connection:
            connection.execute(
                insert(_RUNS),
                {
                    "id": run_id,
                    "owner": owner,
                    "started_at": now,
                    "last_seen_at": now,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "workers": workers,
                    "rate": rate,
                    "adjusted": adjusted,
                    "base_url": base_url,
                },
            )

    @_reconnecting
    def run_alive(self, run_id: str, units_settled: int, requests: int) -> None:
        """A heartbeat of the run: its counters so far, and when it was last seen alive
        (a run that dies keeps what it did; the reclaim of its leases closes it)."""
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE runs SET last_seen_at = :now, units_settled = :settled, requests = :requests "
                    "WHERE id = :id AND ended_at IS NULL"
                ),
                {"now": iso(self.clock()), "settled": units_settled, "requests": requests, "id": run_id},
            )

    @_reconnecting
    def end_run(self, run_id: str, outcome: str, units_settled: int, requests: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE runs SET ended_at = :now, last_seen_at = :now, outcome = :outcome, "
                    "units_settled = :settled, requests = :requests WHERE id = :id"
                ),
                {
                    "now": iso(self.clock()),
                    "outcome": outcome,
                    "settled": units_settled,
                    "requests": requests,
                    "id": run_id,
                },
            )
