"""The ledger stays cheap: planning 1,000,000 units, auditing them, and claim + complete
with 8 threads.

    python bench/ledger.py [--units 1000000] [--threads 8] [--claims 20000]

Claim + complete is measured twice: one unit per claim and per settle, and the way a run
works (a ticker's consecutive months in one claim, a page's units settled together).

Baseline in the same run: the same inserts through SQLModel ORM objects (`add_all`) on
a 50,000-unit sample, the way a plan must never be written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import threading
import time
from pathlib import Path

from sqlmodel import Session

from polyledger.checks.audit import audit
from polyledger.ledger import AttemptRecord, FetchedUnit, Ledger, PlannedUnit, StoredFile, Unit, iso, utc_now
from polyledger.output.report import write_report
from polyledger.periods import unit_periods


def planned_units(count: int) -> list[PlannedUnit]:
    months = list(unit_periods("month", dt.date(2004, 1, 1), dt.date(2025, 12, 31)))  # 264 months
    tickers = (count + len(months) - 1) // len(months)
    units = [PlannedUnit("minute", f"T{i:05d}", s, e) for i in range(tickers) for s, e in months]
    return units[:count]


def bench_orm(path: Path, units: list[PlannedUnit]) -> float:
    ledger = Ledger(path)
    now = iso(utc_now())
    began = time.perf_counter()
    with Session(ledger.engine) as session:
        session.add_all(
            Unit(
                dataset=u.dataset,
                ticker=u.ticker,
                period=u.period,
                period_start=u.period_start.isoformat(),
                period_end=u.period_end.isoformat(),
                created_at=now,
                updated_at=now,
            )
            for u in units
        )
        session.commit()
    elapsed = time.perf_counter() - began
    ledger.close()
    return elapsed


def bench_claims(ledger: Ledger, threads: int, claims: int, group: int = 1) -> float:
    """Units claimed and completed per second by `threads` threads. group=1: one unit per
    claim and per settle. group>1: as a run works, a unit plus the ticker's following
    months in one claim each, settled together in one transaction (a page's units)."""
    done = 0
    lock = threading.Lock()
    stored = StoredFile("x/part.parquet", 100, "sha256:0", 1000)
    attempt = AttemptRecord(requests=1, bars=100)

    def worker() -> None:
        nonlocal done
        owner = f"bench-{threading.get_ident()}"
        while True:
            with lock:
                if done >= claims:
                    return
                done += group
            if group == 1:
                unit = ledger.claim(owner, 60)[0]
                ledger.settle_done(unit, stored, True, attempt)
                continue
            head = ledger.claim(owner, 60)[0]
            units = [head, *ledger.claim_following(owner, 60, head, group - 1)]
            ledger.settle_fetched([FetchedUnit(unit, attempt, stored) for unit in units], True)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return done / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--orm-sample", type=int, default=50_000)
    args = parser.parse_args()
    units = planned_units(args.units)
    with tempfile.TemporaryDirectory() as scratch:
        orm = bench_orm(Path(scratch) / "orm.db", units[: args.orm_sample])
        with Ledger(Path(scratch) / "ledger.db") as ledger:
            began = time.perf_counter()
            added = ledger.add_units(units)
            planning = time.perf_counter() - began
            sample = time.perf_counter()
            ledger.add_units(units[: args.orm_sample])  # all present: measures the idempotent path
            replan = time.perf_counter() - sample
            began = time.perf_counter()
            audit(ledger)
            audit_seconds = time.perf_counter() - began
            began = time.perf_counter()
            write_report(ledger, Path(scratch) / "report.html")
            report_seconds = time.perf_counter() - began
            rate = bench_claims(ledger, args.threads, args.claims)
            grouped = bench_claims(ledger, args.threads, args.claims, group=12)
    bulk_sample = planning * args.orm_sample / args.units
    print(f"plan {added:,} units: {planning:.1f} s ({args.units / planning:,.0f} units/s)")
    print(f"re-plan {args.orm_sample:,} existing units: {replan:.2f} s")
    print(
        f"ORM add_all baseline, {args.orm_sample:,} units: {orm:.2f} s "
        f"-> bulk is {orm / bulk_sample:.1f}x faster"
    )
    print(f"audit of the {args.units:,}-unit ledger: {audit_seconds:.2f} s (target < 3 s)")
    print(f"HTML report of the {args.units:,}-unit ledger: {report_seconds:.2f} s")
    print(
        f"claim + complete, {args.threads} threads, {args.claims:,} units "
        f"on a {args.units:,}-unit ledger: {rate:,.0f} units/s"
    )
    print(
        f"claim + complete as a run does it (a ticker's 12 months per claim, settled in one "
        f"transaction), {args.threads} threads: {grouped:,.0f} units/s"
    )


if __name__ == "__main__":
    main()
