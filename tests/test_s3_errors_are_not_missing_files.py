"""An object store's error is never read as "no such file": a HEAD or GET answered 500, a
throttle or a timeout says nothing about the object, so no check calls a good file missing
or damaged, `repair` never queues its unit again nor moves it, a withdraw never says there
was no file, a quarantine never copies over an earlier one, and another ledger's prefix is
never taken for this one's (found by a review: fsspec's `isfile` answers False for any
error)."""

from __future__ import annotations

import datetime as dt
import errno

from support import one_bar, run_cli, settle_one_done, unit_state
from test_s3 import bucket, moto_endpoint  # noqa: F401 - fixtures (moto in server mode)

from polyledger.errors import StorageError
from polyledger.ledger import Ledger
from polyledger.storage import QUARANTINE, BarStore

D = dt.date
FEB = D(2024, 2, 1)
STAMP = "20260101T000000Z"


def _fail_s3_once(monkeypatch, method: str, suffix: str, error: Exception) -> list:  # type: ignore[no-untyped-def]
    """s3fs's `method` (of S3FileSystem, async or not) raises `error` the first time it is
    asked about a key ending in `suffix` (a 500, a throttle, a 403, a timeout: what any
    request may answer once), then works again. Returns the calls it failed."""
    import inspect

    import s3fs

    real = getattr(s3fs.S3FileSystem, method)
    failed: list = []

    def fails_now(path) -> bool:  # type: ignore[no-untyped-def]
        if str(path).rstrip("/").endswith(suffix) and not failed:
            failed.append(path)
            return True
        return False

    async def flaky_async(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fails_now(path):
            raise error
        return await real(self, path, *args, **kwargs)

    def flaky(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fails_now(path):
            raise error
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(
        s3fs.S3FileSystem, method, flaky_async if inspect.iscoroutinefunction(real) else flaky
    )
    return failed


def _server_error() -> OSError:
    # what s3fs raises for a HeadObject answered 500 InternalError once its retries are spent
    return OSError(errno.EIO, "An error occurred (InternalError) when calling the HeadObject operation (500)")


def test_s3_a_head_that_fails_once_is_no_missing_file_and_repair_keeps_the_good_file(
    work,
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """`ObjectStore.exists` is fsspec's `isfile`, which answers False for *any* exception
    (fsspec/asyn.py `_isfile`: `except Exception: return False`): one HEAD answered 500 (or
    403, a throttle, a timeout) while `repair` checks the files makes a good file a
    `missing_file`; `repair` then queues the done unit again and, its next HEAD answered,
    moves the good file to .quarantine/. `audit --deep` reports a missing file that is there.
    (polyledger/storage/objectstore.py:247 `exists`, read by checks/files.py:107)"""
    url = f"s3://{bucket}/data"
    with Ledger(work / "ledger.db") as ledger:
        alfa, stored = settle_one_done(ledger, BarStore(url), "ALFA", 1.0)
        settle_one_done(ledger, BarStore(url), "BRAVO", 2.0)  # two files: not "every file missing"
    failed = _fail_s3_once(monkeypatch, "_info", stored.path, _server_error())

    result = run_cli("repair", "--data", url)

    assert failed, "the premise: one HEAD of ALFA's file failed"
    with Ledger(work / "ledger.db") as ledger:
        state = unit_state(ledger, alfa)
    assert "missing_file" not in result.out and state == "done" and BarStore(url).exists(stored.path), (
        f"one failed HEAD: repair said {result.out.strip()!r}, ALFA's good unit is now {state!r} "
        f"and its file is {'in place' if BarStore(url).exists(stored.path) else 'moved to .quarantine/'}"
    )
    # the store could not say: repair stops in one line naming the file, and changes nothing
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result
    assert "cannot tell whether" in result.err and stored.path in result.err
    again = run_cli("repair", "--data", url)  # the store answers again: nothing to repair
    assert again.code == 0 and "files and ledger agree" in again.out, again


def test_s3_a_get_that_times_out_once_is_no_damaged_file(
    work,
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """`_check_unit_file` takes any exception while reading a file for damage ("any parse
    failure"): on an object store a GET that times out (or is answered 500/503) makes a good
    file `unreadable_file`, and `repair` queues its done unit again and moves the good file
    to .quarantine/. (polyledger/checks/files.py:110-112 `except Exception`)"""
    url = f"s3://{bucket}/data"
    with Ledger(work / "ledger.db") as ledger:
        alfa, stored = settle_one_done(ledger, BarStore(url), "ALFA", 1.0)
    failed = _fail_s3_once(monkeypatch, "_open", stored.path, TimeoutError("Read timeout on endpoint URL"))

    result = run_cli("repair", "--data", url)

    assert failed, "the premise: one GET of ALFA's file failed"
    with Ledger(work / "ledger.db") as ledger:
        state = unit_state(ledger, alfa)
    assert "unreadable_file" not in result.out and state == "done" and BarStore(url).exists(stored.path), (
        f"one timed-out GET: repair said {result.out.strip()!r}, ALFA's good unit is now {state!r}"
    )
    assert result.code == 1 and "cannot read" in result.err and stored.path in result.err, result


def test_s3_withdrawing_a_file_whose_head_fails_never_says_there_was_none(
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """A run whose unit has no bars now withdraws its old file (`withdraw_unit`: moved to
    .quarantine/, or StorageError "when the file stays"), then settles it empty_confirmed.
    On S3 a failed HEAD reads as "no file": `withdraw_unit` returns None, the unit settles
    empty while its old bars stay in the dataset's folder, and every folder read returns
    them ("the ledger never says 'no bars' while a read of the folder finds the old ones").
    (polyledger/storage/base.py:176 `if not self.exists(relative): return None`, through
    objectstore.py:247)"""
    store = BarStore(f"s3://{bucket}/data")
    encoded = store.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 1.0), adjusted=True)
    store.put_unit(encoded)
    _fail_s3_once(monkeypatch, "_info", encoded.file.path, _server_error())

    try:
        kept = store.withdraw_unit(encoded.file.path)
    except StorageError:
        return  # right: the unit must not settle while its file may still be there
    assert kept is not None or not store.exists(encoded.file.path), (
        f"withdraw_unit said there was no file, yet {encoded.file.path} is still in the dataset's folder"
    )


def test_s3_repair_never_takes_another_ledgers_prefix_for_its_own_after_one_failed_head(
    work,
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """`repair` refuses a prefix whose marker names another ledger ("never quarantine another
    ledger's files", cli.py `check_home`). The marker is read through `exists` too: one HEAD
    of `polyledger-data.json` answered 500 reads as "no marker", the check passes, and
    `repair` of ledger one given ledger two's prefix (a typo in --data) finds every file of
    ledger two's at one of its paths "damaged", queues the units again and moves ledger
    two's files to .quarantine/. (polyledger/storage/base.py:220 `marker` through
    objectstore.py:247; home.py:95 `check_holder` passes on {})"""
    from polyledger.storage import MARKER
    from polyledger.storage.home import hold_home

    one_url, two_url = f"s3://{bucket}/one", f"s3://{bucket}/two"
    with Ledger(work / "one.db") as one, Ledger(work / "two.db") as two:
        hold_home(one, BarStore(one_url), adjusted=True)
        hold_home(two, BarStore(two_url), adjusted=True)
        settle_one_done(one, BarStore(one_url), "ALFA", 1.0)
        settle_one_done(one, BarStore(one_url), "BRAVO", 1.0)
        settle_one_done(two, BarStore(two_url), "ALFA", 2.0)
        _, theirs = settle_one_done(two, BarStore(two_url), "BRAVO", 2.0)
    refused = run_cli("repair", "--ledger", "one.db", "--data", two_url)
    assert refused.code == 2 and "another ledger" in refused.err, refused  # the premise
    _fail_s3_once(monkeypatch, "_info", f"two/{MARKER}", _server_error())

    result = run_cli("repair", "--ledger", "one.db", "--data", two_url)

    assert BarStore(two_url).exists(theirs.path), (
        f"repair of ledger one moved ledger two's files out of its prefix: {result.out.strip()!r}"
    )


def test_s3_a_second_quarantine_in_the_same_second_never_replaces_the_first(
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """Two quarantines of one unit's path under one stamp (`repair` computes its stamp once
    and uses it for its whole run; a run's withdraw in that second; repair twice): the
    second finds `.quarantine/<stamp>/<path>` taken and goes to `<stamp>-2`, but only if
    `exists` answers. On S3 a failed HEAD of the target reads as "free", and the copy
    replaces the first quarantined file: bars once downloaded, gone.
    (polyledger/storage/base.py:200 `while self.exists(target)` + objectstore.py:247,286
    `fs.copy` over whatever is there)"""
    store = BarStore(f"s3://{bucket}/data")
    first = store.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 1.0), adjusted=True)
    store.put_unit(first)
    target = store.quarantine(first.file.path, STAMP)
    assert target == f"{QUARANTINE}/{STAMP}/{first.file.path}"
    second = store.encode_unit("minute", "ALFA", FEB, one_bar("ALFA", 2.0), adjusted=True)
    store.put_unit(second)
    _fail_s3_once(monkeypatch, "_info", target, _server_error())

    try:
        store.quarantine(second.file.path, STAMP)
    except StorageError:
        pass  # refusing is fine; replacing the first copy is not
    assert store.rows_and_checksum(target)[1] == first.file.checksum, (
        f"{target}, the first quarantined file, was replaced by the second"
    )


def test_prune_keeps_a_staged_day_it_cannot_delete_when_the_store_cannot_say_either(
    work,
    bucket,  # noqa: F811 - the fixture
    monkeypatch,
):
    """flatfiles/prune.py: a staged day that "could not be deleted: left, and still
    recorded" (`Pruned.kept`, a warning) is the documented outcome of a failed delete. Since
    `ObjectStore.exists` raises StorageError (a FatalRunError) when the store cannot say,
    a throttled DELETE followed by a throttled HEAD (`store.remove(...) or not
    store.exists(...)`) stops the whole flat-file route between years instead."""
    from types import SimpleNamespace

    from polyledger.flatfiles.prune import prune_staged
    from polyledger.storage import BarStore

    store = BarStore(f"s3://{bucket}/data")
    staged = "flat_days/minute/2024-02-01.csv.gz"
    store._filesystem().pipe(store._key(staged), b"staged")
    forgotten: list = []
    ledger = SimpleNamespace(
        unneeded_staged=lambda target, route: [SimpleNamespace(id=7, file_path=staged)],
        forget_staged=lambda ids: forgotten.extend(ids) or len(ids),
    )
    fs = store._filesystem()
    assert store._filesystem() is fs  # one filesystem per store: its methods can be made to fail

    def throttled(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _server_error()  # a DELETE, then a HEAD, answered 503 SlowDown / 500 once retries ran out

    monkeypatch.setattr(fs, "rm_file", throttled)
    monkeypatch.setattr(fs, "info", throttled)
    pruned = prune_staged(ledger, store, ["minute"])  # raised StorageError (found by a review)
    assert (pruned.deleted, pruned.kept, forgotten) == (0, 1, [])
