"""The lock that keeps two `polyledger sync` from overlapping, held in the ledger (a row of
`sync_lock`), so it holds across hosts on a PostgreSQL ledger.

The holder beats every `beat` seconds. A second sync finds the row and either stops (the
holder is alive: `LockHeld`, its own exit code) or takes the lock over, saying so, when
the holder is dead: its heartbeat is older than `stale_after` (measured by the database's
clock, which also wrote it: hosts' clocks are never compared), or it ran on a host of this
very name under a pid that no longer exists here and its heartbeat is a few beats old
(containers share a hostname, not their pids: a live holder there still beats). The
takeover only lands if the row still shows the heartbeat it was judged by. A row holding
this lock's own token is its own (a write that landed, its answer lost to a reconnect): it
is held, never taken for another sync's. The lock is released on every way out of the
`with` block."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from types import TracebackType

from polyledger.errors import PolyledgerError
from polyledger.ledger import Ledger
from polyledger.ledger.sync_memory import LockHolder

log = logging.getLogger(__name__)

LOCK_NAME = "sync"
BEAT_SECONDS = 5.0
STALE_AFTER = 60.0  # a holder silent for 12 beats is dead (a slow ledger delays a beat, not 12)
# a holder of this hostname whose pid is gone here is dead once silent this long: another
# container's live sync (same hostname, its own pids) beats well within it
QUIET_AFTER = 3 * BEAT_SECONDS


class LockHeld(PolyledgerError):
    """Another sync holds the lock and is alive."""

    def __init__(self, holder: LockHolder) -> None:
        super().__init__(
            f"another sync is running: host {holder.host} pid {holder.pid} since {holder.since} "
            f"(last heartbeat {holder.age:.0f} s ago); nothing done"
        )
        self.holder = holder


def _pid_gone(pid: int) -> bool:
    """Is there no process `pid` on this host? (Unknown, as on Windows: False.)"""
    if os.name != "posix":
        return False  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return False


def dead_reason(
    holder: LockHolder, stale_after: float, host: str, quiet_after: float = QUIET_AFTER
) -> str | None:
    """Why `holder` is dead, or None while it may be alive."""
    if (
        holder.host == host
        and holder.age > quiet_after
        and holder.pid != os.getpid()
        and _pid_gone(holder.pid)
    ):
        return f"pid {holder.pid} no longer runs on this host, no heartbeat for {holder.age:.0f} s"
    if holder.age > stale_after:
        return f"no heartbeat for {holder.age:.0f} s"
    return None


class SyncLock:
    """`with SyncLock(ledger):` holds the ledger's sync lock for the block. `took_over`
    says whose lock was taken from a dead holder (one line), else None."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        beat: float = BEAT_SECONDS,
        stale_after: float = STALE_AFTER,
        quiet_after: float = QUIET_AFTER,
    ) -> None:
        self.ledger = ledger
        self.beat = beat
        self.stale_after = stale_after
        self.quiet_after = quiet_after
        self.host = socket.gethostname()
        self.token = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.took_over: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        pid = os.getpid()
        taking: str | None = None  # the takeover tried, should its answer be lost
        for _ in range(3):  # a holder that leaves between our two looks: look again
            if self.ledger.try_sync_lock(LOCK_NAME, self.token, self.host, pid):
                return
            holder = self.ledger.sync_lock_holder(LOCK_NAME)
            if holder is None:
                continue
            if holder.token == self.token:
                # our own row: a write that landed but whose answer was lost (a PostgreSQL
                # reconnect repeats the call, which then finds the row it wrote)
                self.took_over = taking
                return
            reason = dead_reason(holder, self.stale_after, self.host, self.quiet_after)
            if reason is None:
                raise LockHeld(holder)
            taking = (
                f"took over the sync lock of host {holder.host} pid {holder.pid} "
                f"(since {holder.since}): {reason}"
            )
            if self.ledger.take_over_sync_lock(LOCK_NAME, holder, self.token, self.host, pid):
                self.took_over = taking
                return
        holder = self.ledger.sync_lock_holder(LOCK_NAME)
        if holder is None:
            raise PolyledgerError("could not take the sync lock: the ledger kept changing hands")
        if holder.token == self.token:  # the last takeover landed, its answer lost
            self.took_over = taking
            return
        raise LockHeld(holder)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.ledger.release_sync_lock(LOCK_NAME, self.token)

    def _beat(self) -> None:
        while not self._stop.wait(self.beat):  # a timed wait: the heartbeat's own period
            try:
                if not self.ledger.beat_sync_lock(LOCK_NAME, self.token):
                    # taken over after 12 missed beats: this sync goes on (the ledger keeps
                    # two runs apart), but no longer holds the lock
                    log.warning("the sync lock was taken over by another sync after missed heartbeats")
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried next period
                pass

    def __enter__(self) -> SyncLock:
        self.acquire()
        self._thread = threading.Thread(target=self._beat, name="sync-lock-beat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
