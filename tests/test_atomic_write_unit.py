"""`BarStore.write_unit` and its atomic write, step by step: a temporary in the same
folder, written whole and fsynced, renamed over the final name, the folder fsynced; on any
failure the temporary is gone and the final name untouched. And the sweep of leftovers."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import uuid
from pathlib import Path

import polars as pl
import pytest

import polyledger.storage.local as storage
from polyledger.errors import LeaseLost, StorageError
from polyledger.storage import PART_NAME, TEMP_MARK, TEMP_SUFFIX, BarStore

D = dt.date
RELATIVE = "minute/ticker=AAPL/year=2024/month=03/part.parquet"


def bars(n: int) -> pl.DataFrame:
    return pl.DataFrame({"ticker": ["AAPL"] * n, "close": [float(i) for i in range(n)]})


@pytest.fixture
def store(tmp_path) -> BarStore:
    return BarStore(tmp_path / "data")


@pytest.fixture
def events(monkeypatch) -> list[tuple]:
    """os.fsync, os.replace, os.open and os.close as the storage module calls them, in order
    (each still does its work)."""
    seen: list[tuple] = []
    real_fsync, real_replace, real_open, real_close = os.fsync, os.replace, os.open, os.close

    def fsync(fd: int) -> None:
        seen.append(("fsync", fd))
        real_fsync(fd)

    def replace(source, target) -> None:  # type: ignore[no-untyped-def]
        seen.append(("replace", Path(source), Path(target), Path(source).read_bytes()))
        real_replace(source, target)

    def open_(path, flags, *args):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, *args)
        seen.append(("open", Path(path), flags, fd))
        return fd

    def close(fd: int) -> None:
        seen.append(("close", fd))
        real_close(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    monkeypatch.setattr(storage.os, "replace", replace)
    monkeypatch.setattr(storage.os, "open", open_)
    monkeypatch.setattr(storage.os, "close", close)
    return seen


def test_write_unit_returns_what_the_ledger_records_about_the_file(store):
    stored = store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(5))
    payload = store.path_of(RELATIVE).read_bytes()
    assert stored.path == RELATIVE
    assert (stored.rows, stored.bytes) == (5, len(payload))
    assert stored.checksum == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert store.read_parquet(RELATIVE).equals(bars(5))
    assert store.temporaries() == []


def test_the_payload_is_zstd_parquet_with_statistics(store):
    import pyarrow.parquet as pq

    store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))
    column = pq.ParquetFile(store.path_of(RELATIVE)).metadata.row_group(0).column(1)
    assert column.compression == "ZSTD"
    assert column.statistics is not None and column.statistics.has_min_max


def test_the_temporary_is_beside_the_final_name_whole_and_fsynced_before_the_rename(store, events):
    store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(4))
    final = store.path_of(RELATIVE)
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 1
    _, temporary, target, content = renames[0]
    assert target == final and temporary.parent == final.parent
    assert temporary.name.startswith(TEMP_MARK) and temporary.name.endswith(f"-{PART_NAME}{TEMP_SUFFIX}")
    assert not temporary.name.endswith(".parquet")  # a `**/*.parquet` reader never sees it
    assert content == final.read_bytes()  # whole before it got the final name
    order = [e[0] for e in events]
    assert order.index("fsync") < order.index("replace")  # the file's data is durable first


def test_the_folder_is_fsynced_after_the_rename(store, events):
    store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(2))
    order = [e[0] for e in events]
    after = events[order.index("replace") + 1 :]
    opened = [e for e in after if e[0] == "open"]
    assert [(e[1], e[2]) for e in opened] == [(store.path_of(RELATIVE).parent, os.O_RDONLY)]
    descriptor = opened[0][3]
    assert ("fsync", descriptor) in after and ("close", descriptor) in after
    assert after.index(("fsync", descriptor)) < after.index(("close", descriptor))


def test_no_folder_fsync_where_folders_cannot_be_opened(tmp_path, events, monkeypatch):
    monkeypatch.setattr(storage.os, "name", "nt")
    storage._fsync_folder(tmp_path)
    assert events == []


def test_the_folder_descriptor_is_closed_even_when_its_fsync_fails(tmp_path, events, monkeypatch):
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(storage.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        storage._fsync_folder(tmp_path)
    (opened,) = [e for e in events if e[0] == "open"]
    assert ("close", opened[3]) in events


def test_a_failed_write_leaves_the_old_file_and_no_temporary(store, monkeypatch):
    old = store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))
    before = store.path_of(RELATIVE).read_bytes()

    def disk_full(handle, payload: bytes) -> None:  # type: ignore[no-untyped-def]
        handle.write(payload[: len(payload) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BarStore, "_write_bytes", lambda self, handle, payload: disk_full(handle, payload))
    with pytest.raises(StorageError, match=f"^cannot write {RELATIVE}: No space left on device$"):
        store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(300))
    assert store.path_of(RELATIVE).read_bytes() == before and old.rows == 3
    assert store.temporaries() == []


def test_an_interrupt_mid_write_removes_the_temporary_and_propagates(store, monkeypatch):
    def interrupted(self, handle, payload: bytes) -> None:  # type: ignore[no-untyped-def]
        handle.write(payload[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(BarStore, "_write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))
    assert not store.path_of(RELATIVE).exists()
    assert store.temporaries() == []


def test_a_temporary_that_cannot_be_removed_does_not_hide_the_write_error(store, monkeypatch):
    def failing(self, handle, payload: bytes) -> None:  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error")

    def cannot_unlink(self, missing_ok: bool = False) -> None:  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(BarStore, "_write_bytes", failing)
    monkeypatch.setattr(Path, "unlink", cannot_unlink)
    with pytest.raises(StorageError, match="Input/output error"):
        store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))


def test_a_temporary_name_already_taken_is_never_written_over(store, monkeypatch):
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(storage.uuid, "uuid4", lambda: fixed)
    folder = store.path_of(RELATIVE).parent
    folder.mkdir(parents=True)
    theirs = folder / f"{TEMP_MARK}{fixed.hex}-{PART_NAME}{TEMP_SUFFIX}"
    theirs.write_bytes(b"another writer's bytes")
    with pytest.raises(StorageError):
        store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))
    assert not store.path_of(RELATIVE).exists()


def test_write_bytes_writes_the_whole_payload(tmp_path):
    target = tmp_path / "f"
    with open(target, "wb") as handle:
        BarStore(tmp_path)._write_bytes(handle, b"0123456789")
    assert target.read_bytes() == b"0123456789"


def test_an_object_store_write_is_whole_and_its_failure_a_storage_error(tmp_path):
    import fsspec

    location = f"memory://polyledger-test-{tmp_path.name}"
    store = BarStore(location)
    try:
        stored = store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(2))
        assert stored.path == RELATIVE and stored.rows == 2
        with store.open(RELATIVE) as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == stored.checksum.removeprefix("sha256:")
    finally:
        fsspec.filesystem("memory").rm(f"/polyledger-test-{tmp_path.name}", recursive=True)

    class Broken:
        def pipe_file(self, key: str, payload: bytes) -> None:
            raise ConnectionError("bucket gone")

    store.fs, store.base = Broken(), "b"  # type: ignore[assignment]
    with pytest.raises(
        StorageError, match=rf"^cannot write {RELATIVE} to {location}: ConnectionError: bucket gone$"
    ):
        store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(2))


# --- leftovers of interrupted writes -------------------------------------------------


def leftover(folder: Path, name: str, mtime: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half")
    os.utime(path, (mtime, mtime))
    return path


def test_temporaries_are_found_in_the_whole_store_or_beside_given_units(store):
    march = store.path_of(RELATIVE).parent
    april = store.path_of("minute/ticker=AAPL/year=2024/month=04/part.parquet").parent
    a = leftover(march, f"{TEMP_MARK}a-part.parquet.partial", 1)
    b = leftover(april / "deeper", f"{TEMP_MARK}b", 1)
    leftover(march, "part.parquet", 1)  # a real file is never a leftover
    (march / f"{TEMP_MARK}folder").mkdir()  # nor a folder
    assert sorted(store.temporaries()) == sorted([a, b])
    assert store.temporaries([RELATIVE]) == [a]


def test_no_temporaries_when_the_store_does_not_exist_yet_local_or_object(tmp_path):
    assert BarStore(tmp_path / "absent").temporaries() == []
    assert BarStore(tmp_path / "absent").temporaries([RELATIVE]) == []
    assert BarStore(f"memory://polyledger-test-{tmp_path.name}").temporaries() == []  # none written yet


class FrozenTime:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_clean_temporaries_removes_only_those_old_enough(store, monkeypatch):
    monkeypatch.setattr(storage, "time", FrozenTime(10_000.0))
    folder = store.path_of(RELATIVE).parent
    old = leftover(folder, f"{TEMP_MARK}old", 9_000.0)
    exactly = leftover(folder, f"{TEMP_MARK}exactly", 9_900.0)  # as old as the limit: removed
    young = leftover(folder, f"{TEMP_MARK}young", 9_901.0)  # a live writer's, perhaps
    elsewhere = leftover(store.path_of("day/ticker=MSFT/year=2024/part.parquet").parent, f"{TEMP_MARK}x", 1.0)
    assert store.clean_temporaries([RELATIVE], older_than=100.0) == 2
    assert (old.exists(), exactly.exists(), young.exists()) == (False, False, True)
    assert elsewhere.exists()  # only beside the units asked about


def test_clean_temporaries_counts_only_what_it_removed(store, monkeypatch):
    monkeypatch.setattr(storage, "time", FrozenTime(10_000.0))
    folder = store.path_of(RELATIVE).parent
    stuck = leftover(folder, f"{TEMP_MARK}stuck", 1.0)
    gone = leftover(folder, f"{TEMP_MARK}gone", 1.0)
    real_unlink = Path.unlink

    def unlink(self, missing_ok: bool = False) -> None:  # type: ignore[no-untyped-def]
        if self == stuck:
            raise PermissionError(errno.EACCES, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert store.clean_temporaries([RELATIVE], older_than=100.0) == 1
    assert stuck.exists() and not gone.exists()


def test_a_withdrawn_unit_file_is_kept_aside_only_while_the_unit_is_ours(store):
    """Moved to `.quarantine/<stamp>/<its path>`, never deleted (found by a review: it was
    deleted, the bars once downloaded gone), and never over an earlier one kept there."""
    stored = store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))
    before = store.path_of(RELATIVE).read_bytes()
    with pytest.raises(LeaseLost):
        store.withdraw_unit(RELATIVE, still_ours=lambda: False)
    assert store.exists(RELATIVE)  # a new owner may have written it: left alone
    kept = store.withdraw_unit(RELATIVE, still_ours=lambda: True)
    assert kept is not None and kept.startswith(".quarantine/") and kept.endswith("/" + RELATIVE)
    assert not store.exists(RELATIVE) and store.path_of(kept).read_bytes() == before
    assert stored.rows == 3 and RELATIVE not in set(store.walk())  # no read, no audit sees it
    assert store.withdraw_unit(RELATIVE) is None  # gone already: nothing to do

    store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(2))  # again, and withdrawn again
    stamp = kept.split("/")[1]
    again = store.quarantine(RELATIVE, stamp)  # the same second: beside the first, not over it
    assert again == f".quarantine/{stamp}-2/{RELATIVE}"
    assert store.path_of(kept).read_bytes() == before
    assert pl.read_parquet(store.path_of(again)).height == 2


def test_a_withdrawn_staged_day_is_deleted(store):
    """A staged flat-file day (a copy of the provider's file, read again from the bucket
    when needed) is deleted, not kept aside: `keep=False`."""
    store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))
    assert store.withdraw_unit(RELATIVE, keep=False) is None
    assert not store.exists(RELATIVE) and not (store.root / ".quarantine").exists()


def test_a_withdrawn_unit_file_that_cannot_be_moved_aside_stops_the_run(store, monkeypatch):
    store.write_unit("minute", "AAPL", D(2024, 3, 1), bars(3))

    def refused(self, source, target, before_remove=None):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(type(store), "move", refused)
    with pytest.raises(StorageError, match="cannot move .* to .quarantine/: PermissionError"):
        store.withdraw_unit(RELATIVE)
    assert store.exists(RELATIVE)
    monkeypatch.setattr(type(store), "remove", lambda self, relative: False)
    with pytest.raises(StorageError, match="cannot remove"):
        store.withdraw_unit(RELATIVE, keep=False)
