"""`--data s3://bucket/prefix`: the same hive layout in object storage, each object whole,
and `audit --deep` / `repair` against it. Runs against moto in server mode (a local S3)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import (
    API_KEY,
    STORED_COLUMNS,
    ledger_states,
    run_cli,
    skip_unless_required,
    truth,
    write_universe,
)

import polyledger
from polyledger.ledger import Ledger
from polyledger.testing import Listing, StandInServer, SyntheticMarket

D = dt.date
SECRET = "s3cr3t-TEST-never-printed-7c1d"  # distinctive, so a leak is easy to grep for
ACCESS_KEY = "AKIATESTPOLYLEDGER"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 in server mode, in a child process on a free port."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        skip_unless_required(f"S3 tests need s3fs, boto3 and moto[server]: {exc}")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                skip_unless_required(f"moto server did not start on port {port} (exit {process.poll()})")
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def bucket(moto_endpoint: str, work, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the AWS variables pointing at the local S3."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"pl-{uuid.uuid4().hex[:12]}"
    _client().create_bucket(Bucket=name)
    return name


def _client():  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def _keys(bucket: str, prefix: str) -> list[str]:
    pages = _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _storage_options() -> dict[str, str]:
    return {
        "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
        "aws_allow_http": "true",
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET,
        "aws_region": "us-east-1",
    }


def read_s3_dataset(url: str, dataset: str) -> pl.DataFrame:
    """The whole dataset in one line, read back from S3 as a user would."""
    frame = pl.scan_parquet(
        f"{url}/{dataset}/**/*.parquet", hive_partitioning=True, storage_options=_storage_options()
    ).collect()
    return frame.select(STORED_COLUMNS).sort("ticker", "timestamp")


def expected(market, dataset, tickers, start, end) -> pl.DataFrame:
    return pl.concat([truth(market, dataset, t, start, end) for t in tickers]).sort("ticker", "timestamp")


def test_full_run_to_s3_equals_the_truth_and_audits_clean(work, market, bucket):
    url = f"s3://{bucket}/bars/v1"
    tickers = ["AAPL", "SIRI", "TINY", "NEWCO", "GONE", "NOSUCH"]
    start, end = D(2023, 1, 1), D(2023, 6, 30)
    write_universe(work / "u.csv", tickers)
    assert run_cli("plan", "--universe", "u.csv", "--from", start, "--to", end).code == 0
    assert run_cli("plan", "--universe", "u.csv", "--dataset", "day", "--from", start, "--to", end).code == 0
    with StandInServer(market, api_keys=(API_KEY,), page_cap=5_000) as server:
        result = run_cli("run", "--base-url", server.url, "--workers", "8", "--rate", "2000", "--data", url)
    assert result.code == 0, result.err + result.out
    assert not (work / "data").exists()  # nothing went to a local folder

    keys = _keys(bucket, "bars/v1/")
    keys.remove("bars/v1/polyledger-data.json")  # the folder's adjusted choice, written once
    assert keys and all(key.endswith("/part.parquet") for key in keys)  # no temporary left behind
    marker = _client().get_object(Bucket=bucket, Key="bars/v1/polyledger-data.json")["Body"].read()
    with Ledger("ledger.db") as ledger:  # the folder's adjusted choice, its ledger and its id, written once
        recorded = json.loads(ledger.setting("data_folder"))  # the ledger's record of its folder
        assert json.loads(marker) == {"adjusted": True, "ledger": ledger.identity(), "id": recorded["id"]}
        assert recorded["location"] == url
    assert "bars/v1/minute/ticker=AAPL/year=2023/month=03/part.parquet" in keys
    assert "bars/v1/day/ticker=SIRI/year=2023/part.parquet" in keys

    # the objects, read back from S3 in one line, equal the truth bar for bar
    real = [t for t in tickers if t != "NOSUCH"]
    assert_frame_equal(read_s3_dataset(url, "minute"), expected(market, "minute", real, start, end))
    assert_frame_equal(read_s3_dataset(url, "day"), expected(market, "day", real, start, end))

    audit = run_cli("audit", "--deep", "--quality", "--json", "--data", url)
    report = json.loads(audit.out)
    assert report["deep"] == {"consistent": True, "findings": []}
    assert report["quality"]["files"] > 0
    assert report["quality"]["counts"]["unreadable_file"] == 0 and report["quality"]["clean"], report[
        "quality"
    ]
    assert audit.code == 0, audit.err

    # the notebook API reads from S3 too
    with polyledger.open(work / "ledger.db", url) as dl:
        assert url in repr(dl) and SECRET not in repr(dl)
        bars = dl.bars("minute", tickers=["AAPL"], start="2023-02-01", end="2023-03-31").collect()
        assert_frame_equal(
            bars.select(STORED_COLUMNS).sort("timestamp"),
            truth(market, "minute", "AAPL", D(2023, 2, 1), D(2023, 3, 31)),
        )
        assert dl.bars("day", tickers=["NOSUCH"]).collect().height == 0
    for text in (result.out, result.err, audit.out, audit.err):
        assert SECRET not in text and API_KEY not in text


def test_audit_deep_and_repair_against_s3(work, market, bucket):
    url = f"s3://{bucket}/data"
    tickers = ["SIRI", "PLUG", "TINY"]
    write_universe(work / "u.csv", tickers)
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-03-31")
    client = _client()
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url, "--data", url).code == 0
        assert run_cli("audit", "--deep", "--data", url).code == 0

        client.delete_object(Bucket=bucket, Key="data/minute/ticker=SIRI/year=2023/month=01/part.parquet")
        damaged_key = "data/minute/ticker=PLUG/year=2023/month=02/part.parquet"
        content = bytearray(client.get_object(Bucket=bucket, Key=damaged_key)["Body"].read())
        content[len(content) // 3] ^= 0xFF  # one flipped byte inside the data: metadata still reads
        client.put_object(Bucket=bucket, Key=damaged_key, Body=bytes(content))
        cut_key = "data/minute/ticker=TINY/year=2023/month=03/part.parquet"
        whole = client.get_object(Bucket=bucket, Key=cut_key)["Body"].read()
        client.put_object(Bucket=bucket, Key=cut_key, Body=whole[:-100])  # truncated: unreadable
        extra_key = "data/minute/ticker=NOBODY/year=2023/month=03/part.parquet"
        client.put_object(Bucket=bucket, Key=extra_key, Body=whole)
        copy_key = "data/minute/ticker=SIRI/year=2023/month=02/part (1).parquet"  # any name: read too
        siri_february = "data/minute/ticker=SIRI/year=2023/month=02/part.parquet"
        client.copy_object(Bucket=bucket, Key=copy_key, CopySource={"Bucket": bucket, "Key": siri_february})

        result = run_cli("audit", "--deep", "--json", "--data", url)
        assert result.code == 1
        found = {(f["kind"], f["path"]) for f in json.loads(result.out)["deep"]["findings"]}
        assert found == {
            ("missing_file", "minute/ticker=SIRI/year=2023/month=01/part.parquet"),
            ("checksum_mismatch", "minute/ticker=PLUG/year=2023/month=02/part.parquet"),
            ("unreadable_file", "minute/ticker=TINY/year=2023/month=03/part.parquet"),
            ("extra_file", "minute/ticker=NOBODY/year=2023/month=03/part.parquet"),
            ("extra_file", "minute/ticker=SIRI/year=2023/month=02/part (1).parquet"),
        }

        fixed = run_cli("repair", "--data", url)
        assert fixed.code == 0, fixed.err
        assert "3 units queued again, 2 files quarantined, 0 stray temporaries removed" in fixed.out
        quarantined = _keys(bucket, "data/.quarantine/")
        assert len(quarantined) == 2
        kept = next(k for k in quarantined if k.endswith("ticker=PLUG/year=2023/month=02/part.parquet"))
        assert client.get_object(Bucket=bucket, Key=kept)["Body"].read() == bytes(content)  # never lost

        assert run_cli("run", "--base-url", server.url, "--data", url).code == 0
    deep = json.loads(run_cli("audit", "--deep", "--json", "--data", url).out)["deep"]["findings"]
    assert [f["kind"] for f in deep] == ["extra_file"] * 2  # reported, never moved or deleted
    assert {extra_key, copy_key} <= set(_keys(bucket, "data/"))
    # a typo in --data does not make every object look missing (repair would queue them all)
    for command in ("audit", "repair"):
        wrong = run_cli(command, *(["--deep"] if command == "audit" else []), "--data", f"s3://{bucket}/dat")
        assert wrong.code == 2 and "does not exist, yet the ledger lists" in wrong.err, wrong.err
    assert_frame_equal(
        read_s3_dataset(url, "minute").filter(pl.col("ticker") != "NOBODY").unique(maintain_order=True),
        expected(market, "minute", tickers, D(2023, 1, 1), D(2023, 3, 31)),
    )


def test_a_month_fetched_again_with_no_bars_now_is_kept_aside_under_the_prefix(work, market, bucket):
    """The object store's withdrawal (found by a review: the object was deleted): the month's
    object is copied to `.quarantine/` under the prefix, checked, then deleted from the
    dataset's prefix; the run says where; a read of the prefix agrees with the ledger."""
    url = f"s3://{bucket}/data"
    write_universe(work / "u.csv", ["TINY"])
    assert run_cli("plan", "--universe", "u.csv", "--from", "2024-01-01", "--to", "2024-01-31").code == 0
    client = _client()
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url, "--data", url).code == 0
        key = "data/minute/ticker=TINY/year=2024/month=01/part.parquet"
        before = client.get_object(Bucket=bucket, Key=key)["Body"].read()

        # no January bars for TINY any more; the universe now names the company: queued again
        server.market = SyntheticMarket([Listing("TINY", list_date=D(2024, 6, 3), bars_per_day=5)], seed=11)
        (work / "u2.csv").write_text("ticker,composite_figi\nTINY,BBG000TINY01\n", encoding="utf-8")
        replanned = run_cli("plan", "--universe", "u2.csv", "--from", "2024-01-01", "--to", "2024-01-31")
        assert replanned.code == 0 and "queued again" in replanned.out, replanned.out
        again = run_cli("run", "--base-url", server.url, "--data", url)
    assert again.code == 0, again.err
    assert ledger_states(work / "ledger.db") == {"empty_confirmed": 1}  # fetched again, no bars now
    (kept,) = _keys(bucket, "data/.quarantine/")
    assert kept.endswith("/minute/ticker=TINY/year=2024/month=01/part.parquet")
    assert client.get_object(Bucket=bucket, Key=kept)["Body"].read() == before  # never lost
    assert f"s3://{bucket}/{kept}" in again.err, again.err
    assert _keys(bucket, "data/minute/") == []
    assert run_cli("audit", "--deep", "--data", url).code == 0


def test_a_copied_prefix_is_refused_and_a_root_object_is_reported(work, market, bucket):
    """Under a prefix as in a folder: an object at the prefix's root (`data/old.parquet`) is
    an `extra_file` of `audit --deep`, and a copy of the prefix, marker and all, is refused
    while the recorded prefix is still there (a run on it would split the download)."""
    url = f"s3://{bucket}/data"
    write_universe(work / "u.csv", ["TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    client = _client()
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        assert run_cli("run", "--base-url", server.url, "--data", url).code == 0
        for key in _keys(bucket, "data/"):
            client.copy_object(
                Bucket=bucket, Key="backup/" + key[len("data/") :], CopySource={"Bucket": bucket, "Key": key}
            )
        refused = run_cli("run", "--base-url", server.url, "--data", f"s3://{bucket}/backup")
        assert refused.code == 2 and f"is a copy of this ledger's folder {url}" in refused.err, refused.err
        (month,) = [key for key in _keys(bucket, "data/minute/") if key.endswith(".parquet")]
        client.copy_object(Bucket=bucket, Key="data/old.parquet", CopySource={"Bucket": bucket, "Key": month})
        deep = run_cli("audit", "--deep", "--json", "--data", url)
        assert deep.code == 1
        findings = {(f["kind"], f["path"]) for f in json.loads(deep.out)["deep"]["findings"]}
        assert findings == {("extra_file", "old.parquet")}, findings


def test_a_missing_bucket_is_a_one_line_error(work, bucket):
    write_universe(work / "u.csv", ["TINY"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    result = run_cli("run", "--base-url", "http://127.0.0.1:9", "--data", "s3://no-such-bucket-here/x")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "s3://no-such-bucket-here/x is not writable" in result.err
    assert SECRET not in result.err + result.out


def test_file_urls_are_local_folders(tmp_path):
    from polyledger.storage import BarStore

    store = BarStore((tmp_path / "d").as_uri())
    assert not store.remote and store.root == tmp_path / "d"
    store.ensure_writable()
    stored = store.write_unit("day", "TINY", D(2023, 1, 1), pl.DataFrame({"ticker": ["TINY"]}))
    assert store.exists(stored.path) and list(store.walk()) == [stored.path]


def test_universe_writes_its_details_to_s3(work, bucket):
    market = SyntheticMarket(
        [
            Listing("ALFA", bars_per_day=5),
            Listing("BRAVO", bars_per_day=5, primary_exchange="XNYS", delist_date=D(2023, 4, 20)),
            Listing("CHAR", bars_per_day=5, list_date=D(2023, 6, 14)),
        ],
        seed=21,
    )
    url = f"s3://{bucket}/u"
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        args = ["universe", "--out", "universe.csv", "--base-url", server.url, "--date", "2024-01-02"]
        result = run_cli(*args, "--data", url)
    assert result.code == 0, result.err + result.out
    table = pl.read_csv(work / "universe.csv")
    assert sorted(table.get_column("ticker")) == ["ALFA", "BRAVO", "CHAR"]
    assert table.get_column("list_date").null_count() == 0
    assert "u/details/as_of=2024-01-02/ticker=ALFA/part.parquet" in _keys(bucket, "u/")
    assert run_cli("audit", "--deep", "--data", url).code == 0
