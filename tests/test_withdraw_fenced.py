"""A run withdrawing a unit's old file (its answer has no bars now) asks for its lease
again last, right before the file leaves the dataset's folder: a worker whose lease ran
out while it moved the file (a host paused; on an object store, during the copy to
.quarantine/) never takes away the file the unit's new owner wrote and settled `done`
(from an adversarial review of the paths that move files). On an object store the
remaining window is the DELETE request itself, as for a write's final copy."""

from __future__ import annotations

import datetime as dt

import pytest
from support import fetch_one_again, one_bar
from test_s3 import bucket, moto_endpoint  # noqa: F401 - fixtures (moto in server mode)

import polyledger.storage.local as local_storage
from polyledger.errors import LeaseLost
from polyledger.ledger import AttemptRecord, FetchedUnit, Ledger, PlannedUnit
from polyledger.ledger.records import utc_now
from polyledger.storage import BarStore

D = dt.date
FEB = D(2024, 2, 1)


@pytest.fixture(params=["local", "s3"])
def location(request, work):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return str(work / "data")
    return f"s3://{request.getfixturevalue('bucket')}/data"


def test_a_withdraw_whose_lease_lapses_mid_move_never_takes_away_the_new_owners_file(
    work, location, monkeypatch
):
    with Ledger(work / "ledger.db") as a, Ledger(work / "ledger.db") as b:
        a.add_units([PlannedUnit("minute", "ALFA", FEB, D(2024, 2, 29))])
        (first,) = a.claim("setup", 60.0, 1)
        old = BarStore(location).write_unit("minute", "ALFA", FEB, one_bar("ALFA", 1.0), adjusted=True)
        assert a.settle_fetched([FetchedUnit(first, AttemptRecord(bars=1), old)], True) == [True]
        assert a.reset_settled("minute", ["ALFA"]) == 1  # fetched again (e.g. sync's re-read)
        (unit_a,) = a.claim("host-a", 60.0, 1)
        store_a = BarStore(location)
        taken_over = []

        def host_b_takes_the_unit() -> None:
            """A paused mid-move: its lease runs out, B takes the unit, writes and settles it."""
            b.clock = lambda: utc_now() + dt.timedelta(minutes=2)
            assert b.reclaim_expired() != []
            taken_over.append(fetch_one_again(b, location, "host-b", 2.0))

        if location.startswith("s3://"):  # paused during the copy to .quarantine/
            fs = store_a._filesystem()
            real_copy = fs.copy

            def copy_then_paused(*args, **kwargs):  # type: ignore[no-untyped-def]
                real_copy(*args, **kwargs)
                host_b_takes_the_unit()

            monkeypatch.setattr(fs, "copy", copy_then_paused)
        else:  # paused once the quarantine's name is claimed, before the rename
            real_claim = local_storage._claim_name

            def claim_then_paused(path):  # type: ignore[no-untyped-def]
                claimed = real_claim(path)
                host_b_takes_the_unit()
                return claimed

            monkeypatch.setattr(local_storage, "_claim_name", claim_then_paused)

        with pytest.raises(LeaseLost):
            store_a.withdraw_unit(unit_a.previous_file, still_ours=lambda: a.still_holds(unit_a))
        assert a.settle_fetched([FetchedUnit(unit_a, AttemptRecord(), None)], True) == [False]
        (new,) = taken_over
        state = b.query("SELECT state, checksum FROM units WHERE id = :id", {"id": unit_a.id})[0]
    assert (state.state, state.checksum) == ("done", new.checksum)
    assert BarStore(location).rows_and_checksum(new.path)[1] == new.checksum  # B's file, in place
