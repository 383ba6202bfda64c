"""Files are never half-written under their final name.

A writer is crashed in the middle of a file by the operating system itself: a child
process gets a file-size limit (RLIMIT_FSIZE) below the file's size, so the kernel stops
it at exactly that many bytes, whatever code does the writing (Python file objects,
pathlib, a Parquet library). With SIGXFSZ at its default the child is killed there, as a
kill -9 would; with it ignored (Python's default) the write fails like a full disk.
Either way the final name must hold the old complete file, or nothing, and a reader
globbing `**/*.parquet` must never see a part. A spy on os.fsync / os.replace checks the
order: the whole temporary is fsynced, in the final folder, before the rename.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import python_env

from polyledger.storage import TEMP_MARK, BarStore, unit_relative_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file-size limits and fsync of folders are POSIX")

UNIT = ("minute", "TINY", dt.date(2023, 1, 1))
FINAL = unit_relative_path(*UNIT)
LIMIT = 4096  # bytes the crashed writer gets out: far less than a file of NEW_ROWS bars
OLD_ROWS, NEW_ROWS = 500, 20_000


def bars(rows: int, price: float) -> pl.DataFrame:
    """`rows` minute bars of TINY in the stored schema (values vary, so they compress little)."""
    start = dt.datetime(2023, 1, 3, 14, 30, tzinfo=dt.timezone.utc)
    index = pl.int_range(0, rows, eager=True)
    wiggle = (index * 7919 % 1000).cast(pl.Float64) / 100
    return pl.DataFrame(
        {
            "ticker": ["TINY"] * rows,
            "timestamp": pl.datetime_range(
                start,
                start + dt.timedelta(minutes=rows - 1),
                "1m",
                time_unit="ms",
                time_zone="UTC",
                eager=True,
            ),
            "open": price + wiggle,
            "high": price + wiggle + 1,
            "low": price + wiggle - 1,
            "close": price + wiggle + 0.5,
            "volume": (index * 31 % 977).cast(pl.Float64),
            "vwap": price + wiggle + 0.25,
            "transactions": index * 13 % 101,
            "otc": [False] * rows,
        }
    )


# The child: makes its bars first (imports and memory only), then lowers its file-size
# limit and writes the unit. Nothing else writes a file after the limit is set.
CHILD = """
import datetime as dt, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from test_atomic_writes import NEW_ROWS, UNIT, bars
from polyledger.errors import StorageError
from polyledger.storage import BarStore

root, limit, killed = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "kill"
frame = bars(NEW_ROWS, 200.0)
if killed:
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # the kernel kills us at the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    BarStore(root).write_unit(*UNIT, frame)
except StorageError as exc:
    print("StorageError", exc)
    sys.exit(3)
print("written")
"""


def write_in_child(root: Path, how: str) -> subprocess.CompletedProcess[str]:
    """Write the unit's NEW_ROWS bars in a child limited to LIMIT bytes per file;
    `how` is "kill" (SIGXFSZ kills it mid-file) or "fail" (the write fails with EFBIG)."""
    tests = str(Path(__file__).parent)
    return subprocess.run(
        [sys.executable, "-c", CHILD, tests, str(root), str(LIMIT), how],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def glob_read(root: Path) -> pl.DataFrame | None:
    """What a reader of the whole folder sees (None: no file at all)."""
    if not list(root.glob("**/*.parquet")):
        return None
    return pl.read_parquet(str(root / "**" / "*.parquet"), hive_partitioning=False)


def full_size(tmp_path: Path) -> int:
    """The size of the complete new file (written elsewhere, undisturbed)."""
    return BarStore(tmp_path / "undisturbed").write_unit(*UNIT, bars(NEW_ROWS, 200.0)).bytes


@pytest.mark.parametrize("old_file", [True, False], ids=["over-an-old-file", "first-write"])
def test_a_writer_killed_mid_file_leaves_the_old_file_or_nothing(tmp_path, old_file):
    root = tmp_path / "data"
    store = BarStore(root)
    final = store.path_of(FINAL)
    old = bars(OLD_ROWS, 100.0)
    before = store.write_unit(*UNIT, old) if old_file else None
    old_bytes = final.read_bytes() if old_file else None

    child = write_in_child(root, "kill")

    assert child.returncode == -signal.SIGXFSZ, (child.returncode, child.stderr)  # killed while writing
    if old_file:
        assert final.read_bytes() == old_bytes  # the old file, whole and untouched
        assert "sha256:" + hashlib.sha256(final.read_bytes()).hexdigest() == before.checksum
        assert_frame_equal(glob_read(root), old)
    else:
        assert not final.exists()
        assert glob_read(root) is None  # a reader sees no file, never a part of one
    # the part that was written is a temporary beside the final name, named so that no
    # `*.parquet` reader picks it up
    (partial,) = [path for path in final.parent.iterdir() if path != final]
    assert partial.name.startswith(TEMP_MARK) and not partial.name.endswith(".parquet")
    assert 0 < partial.stat().st_size <= LIMIT < full_size(tmp_path)  # it did die mid-file
    assert store.temporaries() == [partial]


@pytest.mark.parametrize("old_file", [True, False], ids=["over-an-old-file", "first-write"])
def test_a_write_failing_mid_file_keeps_the_old_file_and_leaves_no_temporary(tmp_path, old_file):
    root = tmp_path / "data"
    store = BarStore(root)
    final = store.path_of(FINAL)
    old = bars(OLD_ROWS, 100.0)
    if old_file:
        store.write_unit(*UNIT, old)
    old_bytes = final.read_bytes() if old_file else None

    child = write_in_child(root, "fail")

    assert child.returncode == 3 and "StorageError" in child.stdout, (child.stdout, child.stderr)
    assert LIMIT < full_size(tmp_path)
    if old_file:
        assert final.read_bytes() == old_bytes
        assert_frame_equal(glob_read(root), old)
    else:
        assert not final.exists() and glob_read(root) is None
    assert store.temporaries() == []  # a failed write cleans up after itself


class Spy:
    """Records os.fsync and os.replace calls (with what the descriptor was at the time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple] = []
        real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

        def fsync(fd: int) -> None:
            info = os.fstat(fd)
            self.events.append(("fsync", info.st_ino, info.st_size, stat.S_ISDIR(info.st_mode)))
            real_fsync(fd)

        def replace(src, dst, **kwargs) -> None:  # type: ignore[no-untyped-def]
            self.events.append(("replace", Path(src), Path(dst)))
            real_replace(src, dst, **kwargs)

        def rename(src, dst, **kwargs) -> None:  # type: ignore[no-untyped-def]
            self.events.append(("rename", Path(src), Path(dst)))
            real_rename(src, dst, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "rename", rename)


def test_the_whole_temporary_is_fsynced_in_the_final_folder_before_the_rename(tmp_path, monkeypatch):
    store = BarStore(tmp_path / "data")
    final = store.path_of(FINAL)
    store.write_unit(*UNIT, bars(OLD_ROWS, 100.0))
    spy = Spy(monkeypatch)

    stored = store.write_unit(*UNIT, bars(NEW_ROWS, 200.0))

    renames = [event for event in spy.events if event[0] in ("replace", "rename")]
    assert len(renames) == 1, spy.events  # one rename onto the final name, nothing else moved
    _, source, target = renames[0]
    assert target == final
    assert source.parent == final.parent  # same folder: the rename cannot cross file systems
    assert source.name.startswith(TEMP_MARK) and not source.name.endswith(".parquet")
    at = spy.events.index(renames[0])
    inode = final.stat().st_ino  # the renamed temporary keeps its inode
    fsyncs_before = [event for event in spy.events[:at] if event[0] == "fsync" and event[1] == inode]
    assert fsyncs_before, spy.events  # the data reached the disk before the name did
    assert fsyncs_before[-1][2] == stored.bytes  # all of it: flushed before the fsync
    folder = final.parent.stat().st_ino
    assert any(event[0] == "fsync" and event[3] and event[1] == folder for event in spy.events[at:]), (
        "the folder is fsynced after the rename, so the rename itself survives a power loss"
    )
    assert "sha256:" + hashlib.sha256(final.read_bytes()).hexdigest() == stored.checksum
    assert store.temporaries() == []
