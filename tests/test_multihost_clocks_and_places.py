"""Hosts on one PostgreSQL ledger judge leases by the server's clock whatever their own
(also `import` and `repair`, and after a wall-clock step), and name the ledger the same
however they spell its URL (found by a review; each test failed before its fix)."""

# ruff: noqa: F811 - the fixtures imported from test_postgres and test_s3 are the tests' arguments
from __future__ import annotations

import datetime as dt

import pytest
from test_postgres import admin_url, new_database, pg_url  # noqa: F401 - fixtures
from test_s3 import bucket, moto_endpoint  # noqa: F401 - fixtures

from polyledger.errors import InputError
from polyledger.ledger import Ledger, PlannedUnit
from polyledger.ledger.records import utc_now


def test_import_from_postgres_refuses_a_live_run_whatever_this_hosts_clock(pg_url, tmp_path, monkeypatch):
    """Scenario: host A runs on a PostgreSQL ledger and holds a unit under a fresh 60 s
    lease (written in the server's time, `server_clock.py`). On host B, whose own clock runs
    two minutes fast, `polyledger import --from <pg> --ledger copy.db` is started (or
    `repair`, which shares `live_leases` through `_refuse_while_running`).

    Wrong: `transfer.live_leases` compares `lease_expires_at` with `utc_now()` (this host's
    clock), not the ledger's server clock every other lease decision on PostgreSQL uses, so
    host B judges A's live lease expired and copies the ledger while the run is going
    (the copy misses whatever the run settles afterwards, and `repair` would quarantine and
    requeue under a live run). Docs: "Both refuse while a run holds live leases on the
    source". Failed before: no InputError, the copy was made."""
    from polyledger.ledger import transfer

    with Ledger(pg_url) as a:
        a.add_units([PlannedUnit("minute", "ALFA", dt.date(2024, 2, 1), dt.date(2024, 2, 29))])
        a.start_run("run-a", workers=1, rate=1.0, adjusted=True, base_url="http://x", owner="host-a")
        (unit,) = a.claim("host-a", 60.0, 1)
        assert a.heartbeat("host-a", 60.0) == 1 and a.still_holds(unit)  # a live lease, by the server

        # this host's clock two minutes fast (as in test_a_live_lease_is_never_expired_by_another_hosts_clock)
        monkeypatch.setattr(transfer, "utc_now", lambda: utc_now() + dt.timedelta(minutes=2))
        copy = tmp_path / "copy.db"
        with pytest.raises(InputError, match="a run holds 1 unit "):
            transfer.copy_ledger(pg_url, copy)
        assert not copy.exists()


def test_a_host_whose_clock_steps_after_measuring_the_server_never_takes_back_live_units(pg_url):
    """Scenario: two hosts on one PostgreSQL ledger. Host B's ledger clock is the server's
    (`ServerClock`: B's wall clock plus an offset measured now and again every 5 minutes).
    Right after B measured the offset, B's wall clock is stepped two minutes forward (NTP
    correcting a drifted clock after boot, a VM resumed from a pause, an admin's `date -s`):
    a step, not the slow drift the 5-minute re-measure is sized for.

    Wrong: for up to 5 minutes B's ledger clock is two minutes ahead of the server, so B's
    `reclaim_expired` takes back host A's freshly renewed live unit (recorded `lease_expired`,
    A's run closed `lost` while it is running; the unit fetched twice). ledger.md: "hosts
    whose own clocks differ by more than a lease never take back each other's live units".
    Elapsed time since the measurement should come from the monotonic clock (server time at
    the measurement + monotonic elapsed), which a wall-clock step does not move. Failed before:
    reclaim_expired returned A's unit."""
    from polyledger.ledger.server_clock import ServerClock

    step = [dt.timedelta(0)]

    def wall_clock_b() -> dt.datetime:
        return utc_now() + step[0]

    with Ledger(pg_url) as a, Ledger(pg_url) as b:
        b.clock = ServerClock(b._server_now, local=wall_clock_b)
        b.clock()  # the offset measured (about zero: same machine as the server)
        a.add_units([PlannedUnit("minute", "ALFA", dt.date(2024, 2, 1), dt.date(2024, 2, 29))])
        a.start_run("run-a", workers=1, rate=1.0, adjusted=True, base_url="http://x", owner="host-a")
        (unit,) = a.claim("host-a", 60.0, 1)
        assert a.heartbeat("host-a", 60.0) == 1
        step[0] = dt.timedelta(minutes=2)  # B's wall clock stepped forward by NTP, seconds later
        assert b.reclaim_expired() == []
        assert a.still_holds(unit)


def test_a_copied_s3_prefix_is_refused_when_hosts_spell_the_postgres_url_differently(
    work, market, bucket, pg_url
):
    """Scenario: hosts share one PostgreSQL ledger and one S3 prefix. Host A names the ledger
    `postgresql://user:pw@host/db`; host B names the same database `postgresql+psycopg://...`
    (both spellings documented; likewise a password in the URL on one host and in
    PGPASSWORD / ~/.pgpass on another, or a hostname against an IP). Someone copied the
    prefix as a backup (`aws s3 sync s3://b/data s3://b/backup`), and host B is given
    `--data s3://b/backup` by mistake.

    Wrong: `storage/home.py` records where the ledger itself is (`_place_of`: the redacted
    URL *as spelled*) and `_refuse_copy` skips its copy check whenever that place differs
    ("a ledger no longer where it recorded the folder is a copy itself, or moved"). Host B's
    spelling differs, so the copy of the prefix is accepted, the ledger's `data_folder` now
    names `s3://b/backup`, and host A on the original prefix is accepted too (B's spelling
    differs from A's): the download is split over two prefixes, the ledger saying `done`
    for units whose files are in the other one. With one spelling the same run is refused
    ("is a copy of this ledger's folder", test_s3.py). Failed before: host B's
    run exited 0."""
    import os

    from support import API_KEY, run_cli, write_universe
    from test_s3 import _client, _keys

    from polyledger.testing import StandInServer

    os.environ.setdefault("POLYGON_API_KEY", API_KEY)
    url = f"s3://{bucket}/data"
    spelled_b = "postgresql+psycopg://" + pg_url[len("postgresql://") :]
    write_universe(work / "u.csv", ["TINY"])
    planned = run_cli(
        "plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31", "--ledger", pg_url
    )
    assert planned.code == 0, planned.err
    client = _client()
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        first = run_cli("run", "--base-url", server.url, "--data", url, "--ledger", pg_url)
        assert first.code == 0, first.err
        for key in _keys(bucket, "data/"):
            client.copy_object(
                Bucket=bucket, Key="backup/" + key[len("data/") :], CopySource={"Bucket": bucket, "Key": key}
            )
        refused = run_cli(
            "run", "--base-url", server.url, "--data", f"s3://{bucket}/backup", "--ledger", spelled_b
        )
    assert refused.code == 2 and "is a copy of this ledger's folder" in refused.err, (
        refused.code,
        refused.err,
    )
