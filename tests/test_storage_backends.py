"""The data location as a backend: `BarStore(location)` picks it from the location, and
the storage package stays below the API client and universe files."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest
from support import python_env

from polyledger.errors import InputError, LeaseLost
from polyledger.storage import ADJUSTED_KEY, MARKER, BarStore, LocalStore, ObjectStore, open_store

PACKAGE = Path(__file__).resolve().parent.parent / "polyledger"


@pytest.mark.parametrize(
    ("location", "backend"),
    [
        ("data", LocalStore),
        (Path("data"), LocalStore),
        ("file:///tmp/data", LocalStore),
        ("s3://bucket/prefix", ObjectStore),
        ("memory://somewhere", ObjectStore),
    ],
)
def test_the_location_picks_the_backend(location, backend):
    assert type(BarStore(location)) is backend
    assert type(open_store(location)) is backend


def test_storage_imports_neither_the_api_client_nor_universe_files():
    code = (
        "import sys, polyledger.storage, polyledger.bars; "
        "print(sorted(m for m in sys.modules if m.startswith(('polyledger.polygon', 'polyledger.universe'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=python_env(), capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_no_module_outside_storage_asks_which_backend_it_has():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "storage" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(word in line for word in (".remote", "LocalStore", "ObjectStore"))
    ]
    assert offenders == []


@pytest.fixture(params=["local", "object"])
def store(request, tmp_path) -> BarStore:
    """Each backend: a local folder, and an object store (fsspec's in-memory one: the same
    code path as S3 bar the transport)."""
    if request.param == "local":
        return BarStore(tmp_path / "data")
    return BarStore(f"memory://polyledger-test-{uuid.uuid4().hex}/data")


def bars(close: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ticker": ["AAPL"],
            "timestamp": [dt.datetime(2024, 1, 2, 15, tzinfo=dt.timezone.utc)],
            "close": [close],
        },
        schema={"ticker": pl.String, "timestamp": pl.Datetime("ms", "UTC"), "close": pl.Float64},
    )


def metadata(store: BarStore, relative: str) -> dict[str, str]:
    with store.open(relative) as handle:
        return pl.read_parquet_metadata(io.BytesIO(handle.read()))


def test_a_bar_file_says_whether_its_bars_are_adjusted(store):
    for adjusted, month in ((True, 1), (False, 2)):
        stored = store.write_unit("minute", "AAPL", dt.date(2024, month, 1), bars(1.0), adjusted=adjusted)
        assert metadata(store, stored.path)[ADJUSTED_KEY] == ("true" if adjusted else "false")
    reference = store.write_unit("splits", "AAPL", dt.date(1900, 1, 1), bars(1.0))  # not bars: no claim
    assert ADJUSTED_KEY not in metadata(store, reference.path)


def test_a_write_whose_lease_ran_out_leaves_the_file_in_place(store):
    first = store.write_unit("minute", "AAPL", dt.date(2024, 1, 1), bars(1.0), still_ours=lambda: True)
    with pytest.raises(LeaseLost, match="^minute/ticker=AAPL/year=2024/month=01/part.parquet not written"):
        store.write_unit("minute", "AAPL", dt.date(2024, 1, 1), bars(9.0), still_ours=lambda: False)
    assert store.read_parquet(first.path).get_column("close").to_list() == [1.0]
    assert store.temporaries() == []
    with pytest.raises(LeaseLost):
        store.write_unit("minute", "AAPL", dt.date(2024, 2, 1), bars(9.0), still_ours=lambda: False)
    assert not store.exists("minute/ticker=AAPL/year=2024/month=02/part.parquet")


def test_a_datasets_files_from_before_a_column_was_added_read_with_it_null(store):
    """ticker_events gained its trading columns: a file written before reads beside a new
    one, the new columns null (as `dl.reference` and `universe` read them), on each backend."""
    from polyledger.datasets.ticker_events import SCHEMA

    day = dt.date(2022, 6, 11)
    new = pl.DataFrame(
        [{"ticker": "BBGX", "date": day, "symbol": "NEW", "previous_symbol": "OLD", "trading_unread": "x"}],
        schema=SCHEMA,
    )
    old = new.select("ticker", "date", "symbol").with_columns(ticker=pl.lit("BBGY"))
    paths = [
        store.write_unit("ticker_events", "BBGX", day, new).path,
        store.write_unit("ticker_events", "BBGY", day, old).path,
    ]
    for order in (paths, paths[::-1]):
        read = store.scan_parquet(
            order, hive_partitioning=False, schema=SCHEMA, missing_columns="insert", extra_columns="ignore"
        ).collect()
        assert read.schema == pl.Schema(SCHEMA)
        rows = {row["ticker"]: row for row in read.iter_rows(named=True)}
        assert (rows["BBGX"]["previous_symbol"], rows["BBGY"]["previous_symbol"]) == ("OLD", None)


def test_the_marker_is_written_once_and_the_first_stays(store):
    assert store.marker() is None
    assert store.mark({"adjusted": False}) == {"adjusted": False}
    assert store.mark({"adjusted": True}) == {"adjusted": False}  # never replaced
    with store.open(MARKER) as handle:
        assert json.loads(handle.read()) == {"adjusted": False}
    assert store.temporaries() == [] and list(store.walk()) == []  # not a unit's file


def test_a_marker_that_is_not_a_json_object_is_an_input_error(tmp_path):
    store = BarStore(tmp_path)
    (tmp_path / MARKER).write_text("[true]", encoding="utf-8")
    with pytest.raises(InputError, match=f"{MARKER} is not a polyledger marker"):
        store.mark({"adjusted": True})


def test_a_run_starting_with_another_of_its_ledger_never_takes_that_ones_files_for_an_earlier_versions(
    tmp_path, monkeypatch
):
    """Found by the full suite (three processes on one new S3 folder): a process read no
    marker, the other process of the same ledger then named the folder and wrote its first
    files, and the first, finding files and no stored file of its own yet, refused the
    folder as an earlier version's. A process names a folder before writing a file, so
    the marker is read again before refusing."""
    from polyledger.storage import BarStore

    store = BarStore(tmp_path / "data")
    store.ensure_writable()
    store.hold("ledger-1", adjusted=True)  # the other process: named first ...
    store._put("minute/ticker=A/year=2024/month=01/part.parquet", b"its first file")  # ... then wrote
    reads = iter([None])  # this process's first look, before the other's marker was there
    real = type(store).marker

    def late_marker(self):  # type: ignore[no-untyped-def]
        return next(reads, "now") and real(self)

    monkeypatch.setattr(type(store), "marker", late_marker)
    store.hold("ledger-1", adjusted=True)  # the same ledger: never refused
    with pytest.raises(InputError, match="another ledger"):
        store.hold("ledger-2", adjusted=True)


def test_an_object_store_walk_names_only_objects_under_its_prefix(monkeypatch):
    """Found by test_multihost (three processes of one first run on one new S3 prefix): a
    listing named the prefix itself while another process's write probe came and went, the
    walk took it for a file in the folder, and the process refused its own new folder as
    an earlier version's download."""
    store = BarStore(f"memory://polyledger-test-{uuid.uuid4().hex}/data")
    fs = store._filesystem()
    inside = f"{store.base}/minute/ticker=A/year=2024/month=01/part.parquet"
    monkeypatch.setattr(fs, "find", lambda path: [store.base, inside, f"{store.base}-other/minute/x.parquet"])
    assert list(store.walk()) == ["minute/ticker=A/year=2024/month=01/part.parquet"]
