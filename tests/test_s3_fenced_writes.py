"""An S3 write is fenced by the writer's lease like a local one: the file is uploaded to a
temporary key, the lease checked, then copied over the final key on the server, so a
worker whose lease ran out while its upload was in flight never replaces the file of the
unit's new owner (from an adversarial review of the multi-host S3 store). Runs against
moto in server mode (a local S3)."""

from __future__ import annotations

import datetime as dt

from test_s3 import bucket, moto_endpoint  # noqa: F401 - fixtures

from polyledger.ledger import Ledger, PlannedUnit
from polyledger.ledger.records import utc_now


def _minute_bars(close: float):  # type: ignore[no-untyped-def]
    import polars as pl

    return pl.DataFrame(
        {
            "ticker": ["ALFA"],
            "timestamp": [dt.datetime(2024, 2, 1, 15, tzinfo=dt.timezone.utc)],
            "close": [close],
        },
        schema={"ticker": pl.String, "timestamp": pl.Datetime("ms", "UTC"), "close": pl.Float64},
    )


def test_an_s3_upload_whose_lease_lapses_in_flight_never_replaces_the_new_owners_file(
    work,
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """Guards docs/ledger.md's promise that a worker whose lease lapsed "can neither replace
    a file nor settle the unit afterwards", on S3. Two hosts on one ledger and one S3
    prefix: while host A's upload is in flight (a large object on a slow link, or host A
    paused: GC, swap, a VM stalled), A's lease runs out; host B takes the unit back, writes
    its own file and settles it `done`. Then A's upload lands.

    Wrong (the code before the fix, which asked `still_ours()` once before a PUT straight to
    the final key): A's object replaced B's file of a `done` unit, the ledger's checksum
    B's, the bytes A's (`audit --deep`: checksum_mismatch). Right: A's bytes went to a
    temporary key, the lease check after the upload refuses, the temporary is removed, and
    the prefix audits clean with B's file in place."""
    from polyledger.checks.files import deep_check
    from polyledger.ledger import AttemptRecord, FetchedUnit
    from polyledger.storage import BarStore

    url = f"s3://{bucket}/data"
    with Ledger(work / "ledger.db") as a, Ledger(work / "ledger.db") as b:
        a.add_units([PlannedUnit("minute", "ALFA", dt.date(2024, 2, 1), dt.date(2024, 2, 29))])
        (unit_a,) = a.claim("host-a", 60.0, 1)
        store_a, store_b = BarStore(url), BarStore(url)
        mine = store_a.encode_unit("minute", "ALFA", unit_a.period_start, _minute_bars(1.0), adjusted=True)
        theirs = store_b.encode_unit("minute", "ALFA", unit_a.period_start, _minute_bars(2.0), adjusted=True)
        assert mine.file.checksum != theirs.file.checksum

        fs = store_a._filesystem()
        upload = fs.pipe_file

        def slow_upload(path, value, **kwargs):  # type: ignore[no-untyped-def]
            # while A's object is on its way, A's lease runs out and host B takes the unit over
            b.clock = lambda: utc_now() + dt.timedelta(minutes=2)
            assert b.reclaim_expired() != []
            (unit_b,) = b.claim("host-b", 60.0, 1)
            stored_b = store_b.put_unit(theirs, still_ours=lambda: b.still_holds(unit_b))
            assert b.settle_fetched([FetchedUnit(unit_b, AttemptRecord(bars=1), stored_b)], True) == [True]
            return upload(path, value, **kwargs)

        monkeypatch.setattr(fs, "pipe_file", slow_upload)
        try:
            stored_a = store_a.put_unit(mine, still_ours=lambda: a.still_holds(unit_a))
        except Exception:  # noqa: BLE001 - refusing to write is the right outcome
            stored_a = None
        if stored_a is not None:
            assert a.settle_fetched([FetchedUnit(unit_a, AttemptRecord(bars=1), stored_a)], True) == [False]

        (row,) = b.query("SELECT state, checksum FROM units")
        assert tuple(row) == ("done", theirs.file.checksum)
        findings = deep_check(b, BarStore(url))
        assert [(f.kind, f.path) for f in findings] == [], findings  # the done unit's file is B's


def test_an_s3_writes_temporary_is_a_stray_to_audit_and_cleaned_beside_units_taken_back(
    work,
    bucket,  # noqa: F811 - the fixture
):
    """The temporary an S3 write leaves when its writer is killed between the upload and the
    copy: `audit --deep` reports it as the local backend's (`stray_temporary`, never a
    unit's file nor an extra one), and the cleaner a reclaim runs beside the units it takes
    back removes it once it is old enough (a younger one may be a live writer's)."""
    from polyledger.checks.files import deep_check
    from polyledger.fetch.runner import temporaries_cleaner
    from polyledger.storage import TEMP_MARK, TEMP_SUFFIX, BarStore

    url = f"s3://{bucket}/data"
    store = BarStore(url)
    unit = ("minute", "ALFA", dt.date(2024, 2, 1))
    encoded = store.encode_unit(*unit, _minute_bars(1.0), adjusted=True)
    seen: list = []

    def deep_check_now():  # type: ignore[no-untyped-def]
        with Ledger(work / "ledger.db") as ledger:
            return [(f.kind, f.path) for f in deep_check(ledger, BarStore(url))]

    def killed_after_the_upload() -> bool:
        seen.append((deep_check_now(), [str(p) for p in store.temporaries()]))
        raise KeyboardInterrupt  # as a kill between the upload and the copy would leave it

    fs = store._filesystem()
    remove = fs.rm_file
    fs.rm_file = lambda key: None  # the process is gone: nobody removes its temporary
    try:
        store.put_unit(encoded, still_ours=killed_after_the_upload)
    except KeyboardInterrupt:
        pass
    finally:
        fs.rm_file = remove
    ((findings, temporaries),) = seen
    folder = encoded.file.path.rsplit("/", 1)[0]
    (temporary,) = temporaries
    name = temporary.rsplit("/", 1)[-1]
    assert temporary.startswith(f"{folder}/") and name.startswith(TEMP_MARK) and name.endswith(TEMP_SUFFIX)
    assert findings == [("stray_temporary", temporary)]
    assert not store.exists(encoded.file.path) and [str(p) for p in store.temporaries()] == [temporary]

    assert store.temporaries(["minute/ticker=BETA/year=2024/month=02/part.parquet"]) == []
    temporaries_cleaner(store, 3600.0)([unit])  # young: perhaps a live writer's
    assert [str(p) for p in store.temporaries([encoded.file.path])] == [temporary]
    temporaries_cleaner(store, 0.0)([unit])
    assert store.temporaries() == [] and not store.exists(temporary)
