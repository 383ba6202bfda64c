"""Claim throughput of the two ledger backends: claims + settles per second with 1 and 4
processes x 8 threads, on SQLite and on PostgreSQL.

    python bench/claims.py [--units 20000] [--pg postgresql://user:pw@127.0.0.1:5432/db]

The PostgreSQL URL may also come from POLYLEDGER_TEST_PG_URL (a fresh database is made and
dropped inside it). One unit per claim and per settle, the ledger's worst case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from polyledger.ledger import AttemptRecord, Ledger, new_owner_id
from polyledger.plan import plan

THREADS = 8


def work(location: str, start) -> int:  # type: ignore[no-untyped-def]
    """One process: 8 threads claim and settle until nothing is pending."""
    ledger = Ledger(location, create=False)
    owner, done, lock = new_owner_id(), [0], threading.Lock()
    start.wait()

    def worker() -> None:
        while units := ledger.claim(owner, 60):
            for unit in units:
                ledger.settle_empty(unit, True, AttemptRecord(requests=1))
            with lock:
                done[0] += len(units)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.close()
    return done[0]


def measure(location: str, units: int, processes: int) -> float:
    tickers = [f"C{i:05d}" for i in range((units + 11) // 12)]
    with Ledger(location) as ledger:
        plan(ledger, tickers, "minute", dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        start = manager.Barrier(processes + 1)
        pending = pool.starmap_async(work, [(location, start)] * processes)
        start.wait()
        began = time.perf_counter()
        settled = sum(pending.get())
        return settled / (time.perf_counter() - began)


def pg_database(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"polyledger_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return name, urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))


def drop(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as connection:
        # not WITH (FORCE): it refuses a non-superuser when autovacuum is in the database,
        # while a plain DROP stops autovacuum itself
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND usename = current_user AND pid != pg_backend_pid()",
            (name,),
        )
        connection.execute(f"DROP DATABASE IF EXISTS {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--pg", default=os.environ.get("POLYLEDGER_TEST_PG_URL"))
    args = parser.parse_args()
    for processes in (1, 4):
        with tempfile.TemporaryDirectory() as scratch:
            rate = measure(str(Path(scratch) / "ledger.db"), args.units, processes)
        print(f"sqlite, {processes} process(es) x {THREADS} threads: {rate:,.0f} units/s")
        if not args.pg:
            continue
        name, url = pg_database(args.pg)
        try:
            rate = measure(url, args.units, processes)
        finally:
            drop(args.pg, name)
        print(f"postgresql, {processes} process(es) x {THREADS} threads: {rate:,.0f} units/s")
    if not args.pg:
        print("postgresql: skipped (no --pg URL and no POLYLEDGER_TEST_PG_URL)")


if __name__ == "__main__":
    main()
