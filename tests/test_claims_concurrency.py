"""Two processes x 8 threads claiming from one ledger (a file here; PostgreSQL in
test_postgres.py) never get the same unit."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from collections import Counter

from polyledger.ledger import AttemptRecord, Ledger, new_owner_id
from polyledger.plan import plan

THREADS = 8


def claim_until_empty(location: str, start: threading.Barrier | None = None) -> list[int]:
    """One process: 8 threads claim and settle until nothing is pending; returns claimed ids.
    `location`: a ledger file or a PostgreSQL URL (tests/test_postgres.py uses it too)."""
    ledger = Ledger(location, create=False)
    if start is not None:
        start.wait()  # both processes claim from the same moment: spawning takes longer than the work
    claimed: list[int] = []
    lock = threading.Lock()
    owner = new_owner_id()

    def worker() -> None:
        while True:
            units = ledger.claim(owner, 60, limit=3)
            if not units:
                return
            for unit in units:
                ledger.settle_empty(unit, True, AttemptRecord(requests=1))
            with lock:
                claimed.extend(u.id for u in units)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.close()
    return claimed


def assert_no_double_claims_across_two_processes(location: str) -> None:
    """2,000 units, two processes x 8 threads claiming from the same moment: every unit
    claimed exactly once, each claim recorded once. For a ledger file or a PostgreSQL URL."""
    with Ledger(location) as ledger:
        tickers = [f"T{i:03d}" for i in range(100)]
        plan(ledger, tickers, "minute", dt.date(2023, 1, 1), dt.date(2024, 8, 31))  # 2,000 units
        total = ledger.query("SELECT count(*) FROM units")[0][0]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        start = manager.Barrier(2)
        results = pool.starmap(claim_until_empty, [(location, start), (location, start)])
    every_claim = Counter(unit_id for ids in results for unit_id in ids)
    assert all(len(ids) > 0 for ids in results), "both processes should have taken work"
    assert max(every_claim.values()) == 1, "a unit was claimed twice"
    assert len(every_claim) == total == 2000
    with Ledger(location, create=False) as ledger:
        assert ledger.counts() == {"minute": {"empty_confirmed": total}}
        assert ledger.query("SELECT max(attempts) FROM units")[0][0] == 1
        assert ledger.query("SELECT count(*) FROM unit_attempts")[0][0] == total


def test_no_double_claims_across_two_processes_and_16_threads(tmp_path):
    assert_no_double_claims_across_two_processes(str(tmp_path / "ledger.db"))
