"""A 403 on one day's object is not always the keys: S3 answers 403, not 404, for a missing
object to keys without the right to list, and a plan may not include every year of files.
A LIST of that key tells which (absent: `missing_file`; listed: `not_entitled`), and only a
LIST denied too stops the run as wrong keys. Real HTTP: a front that answers 403 for the
chosen objects and passes everything else to moto."""

# ruff: noqa: F811 - moto_endpoint, the fixture imported from test_s3, is each test's argument
from __future__ import annotations

import http.client
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from flat_support import SECRET, D, plan, publish_market, use_bucket
from support import API_KEY
from test_flatfiles import _flat, _units
from test_s3 import moto_endpoint  # noqa: F401 - the session's local S3

from polyledger.testing.flatfiles import FlatDefects

DENIED = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


class _Front(BaseHTTPRequestHandler):
    """Passes requests to moto, but answers 403 to a GET of an object whose key ends with
    one of `denied_objects`, and to every LIST when `deny_lists`."""

    upstream = ""
    denied_objects: tuple[str, ...] = ()
    deny_lists = False

    def _handle(self) -> None:
        path = self.path.split("?")[0]
        is_list = "list-type=" in self.path or path.rstrip("/").count("/") == 1
        if (self.command == "GET" and path.endswith(type(self).denied_objects or ("\0",))) or (
            is_list and type(self).deny_lists
        ):
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(DENIED)))
            self.end_headers()
            self.wfile.write(DENIED)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        target = urlsplit(type(self).upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        connection.request(self.command, self.path, body=body, headers=dict(self.headers))
        answer = connection.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        connection.close()

    do_GET = do_HEAD = do_PUT = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def front(moto_endpoint: str, work, monkeypatch: pytest.MonkeyPatch, request) -> Iterator[type[_Front]]:
    handler = type("Front", (_Front,), {"upstream": moto_endpoint})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    bucket = f"flat-{request.node.name.replace('_', '-')[:40].lower()}"
    use_bucket(monkeypatch, f"http://127.0.0.1:{httpd.server_address[1]}", bucket)
    handler.bucket = bucket  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _day(ledger: str, day: D) -> sqlite3.Row:
    return next(row for row in _units(ledger, "minute_files") if row["period_start"] == day.isoformat())


def test_a_403_for_a_day_not_in_the_bucket_is_a_missing_file_and_the_run_goes_on(
    work, market, moto_endpoint, front
):
    missing = D(2023, 5, 10)
    publish_market(moto_endpoint, front.bucket, market, FlatDefects(missing=(missing,)))
    front.denied_objects = (f"/{missing.isoformat()}.csv.gz",)  # as S3 answers keys that cannot list
    ledger, data = plan(work, "flat", ("minute",))
    result = _flat(ledger, data)
    assert result.code == 1 and "access denied" not in result.out + result.err, result.out + result.err
    assert (_day(ledger, missing)["state"], _day(ledger, missing)["error_class"]) == (
        "failed",
        "missing_file",
    )
    months = {(row["period"], row["state"], row["error_class"]) for row in _units(ledger, "minute")}
    assert {(state, cls) for period, state, cls in months if period == "2023-05"} == {
        ("failed", "missing_file")
    }
    assert {state for period, state, _ in months if period != "2023-05"} <= {"done", "empty_confirmed"}


def test_a_403_for_a_day_the_bucket_lists_is_not_entitled_and_the_run_goes_on(
    work, market, moto_endpoint, front
):
    """A plan whose files start later than the ledger's range: those days' units fail
    `not_entitled` (retry --class not_entitled after an upgrade), the others are read."""
    denied = D(2023, 4, 3)
    publish_market(moto_endpoint, front.bucket, market)
    front.denied_objects = (f"/{denied.isoformat()}.csv.gz",)
    ledger, data = plan(work, "flat", ("minute",))
    result = _flat(ledger, data)
    assert result.code == 1 and "access denied" not in result.out + result.err, result.out + result.err
    day = _day(ledger, denied)
    assert (day["state"], day["error_class"]) == ("failed", "not_entitled")
    assert "403" in day["last_error"] and SECRET not in day["last_error"]
    months = {(row["period"], row["state"], row["error_class"]) for row in _units(ledger, "minute")}
    assert {(state, cls) for period, state, cls in months if period == "2023-04"} == {
        ("failed", "not_entitled")
    }
    assert {state for period, state, _ in months if period != "2023-04"} <= {"done", "empty_confirmed"}


def test_a_403_for_a_day_when_listing_is_denied_too_stops_the_run_as_wrong_keys(
    work, market, moto_endpoint, front
):
    denied = D(2023, 5, 10)
    publish_market(moto_endpoint, front.bucket, market)
    ledger, data = plan(work, "flat", ("minute",))
    front.denied_objects = (f"/{denied.isoformat()}.csv.gz",)

    original = _Front._handle
    lists_seen = []

    def deny_lists_after_the_first(self: _Front) -> None:  # the run's probe LISTs, then keys lose rights
        if "list-type=" in self.path:
            lists_seen.append(self.path)
            type(self).deny_lists = len(lists_seen) > 1 and "2023-05-10" in self.path
        original(self)

    front._handle = deny_lists_after_the_first  # type: ignore[method-assign]
    front.do_GET = deny_lists_after_the_first  # type: ignore[method-assign]
    result = _flat(ledger, data)
    said = [line for line in (result.out + result.err).splitlines() if "access denied (403)" in line]
    assert result.code == 1 and len(said) == 1 and "wrong keys" in said[0], result.out + result.err
    assert SECRET not in result.err + result.out and API_KEY not in result.err + result.out
    assert _day(ledger, denied)["state"] in ("pending", "running")  # never failed for good: the keys
