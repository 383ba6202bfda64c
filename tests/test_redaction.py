"""The API key never appears in output, logs, the ledger or the files (read decompressed).

Every test here makes the key actually reach a path where redaction matters: a server
that echoes the key in its error bodies, a `next_url` carrying `apiKey=`, a `next_url`
with the key as its user name, a refused key, a log record and a traceback holding it.
Then everything the run left behind is searched for the key: every text value of every
ledger table, every text file, the console, and every Parquet file's metadata and string
values as pyarrow decodes them (grepping zstd-compressed bytes proves nothing).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import CliResult, run_cli, write_universe

from polyledger import secrets
from polyledger.fetch.runner import Run, RunOptions
from polyledger.ledger import Ledger
from polyledger.polygon.client import RetryPolicy
from polyledger.storage import BarStore

# distinctive, and mixed-case: none of its 8-character pieces can occur in hex ids or bars
KEY = "pk_Zq7LEAKxCANARY_v4Rb9Tw2M"
FRAGMENT = 8  # a piece of the key this long in any output counts as a leak

ET_OFFSET_MS = 5 * 3600 * 1000  # January: US/Eastern is UTC-5
JAN_3_10AM = int(dt.datetime(2023, 1, 3, 10, 0, tzinfo=dt.timezone.utc).timestamp() * 1000) + ET_OFFSET_MS
MINUTE = 60_000
JAN_4 = JAN_3_10AM + 86_400_000


# --- where the key could be --------------------------------------------------------


def key_pieces(text: str) -> list[str]:
    """The pieces of KEY (FRAGMENT characters or more) found in `text`, whitespace ignored
    (a console may wrap a long line in the middle of the key)."""
    flat = "".join(text.split())
    return [piece for piece in KEY_PIECES if piece in flat]


KEY_PIECES = [KEY[i : i + FRAGMENT] for i in range(len(KEY) - FRAGMENT + 1)]


def ledger_texts(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every text value in every table of a SQLite ledger."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            columns = [column[0] for column in cursor.description]
            for number, row in enumerate(cursor):
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", errors="replace")
                    if isinstance(value, str):
                        yield f"ledger {table}.{column} row {number}", value


def parquet_texts(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for a Parquet file's metadata and every string it holds, decoded by
    pyarrow (pages decompressed, dictionaries resolved)."""
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata
    yield f"{path} created_by", metadata.created_by or ""
    for name, value in (metadata.metadata or {}).items():  # key-value metadata (ARROW:schema...)
        yield f"{path} metadata {name!r}", name.decode("utf-8", "replace") + value.decode("utf-8", "replace")
    yield f"{path} schema", str(parquet.schema_arrow)
    table = parquet.read()
    for name in table.column_names:
        for value in _strings(table.column(name).to_pylist()):
            yield f"{path} column {name}", value


def _strings(values: object) -> Iterator[str]:
    """Every string inside a column's values, however nested."""
    if isinstance(values, str):
        yield values
    elif isinstance(values, bytes):
        yield values.decode("utf-8", errors="replace")
    elif isinstance(values, dict):
        for item in values.values():
            yield from _strings(item)
    elif isinstance(values, list | tuple):
        for item in values:
            yield from _strings(item)


def everything_left(work: Path, *outputs: CliResult) -> Iterator[tuple[str, str]]:
    """(where, text) for all a run left behind: ledger, text files, Parquet, console."""
    yield from ledger_texts(work / "ledger.db")
    for path in sorted(work.rglob("*")):
        if not path.is_file() or path.name.startswith("ledger.db"):
            continue
        if path.suffix == ".parquet":
            yield from parquet_texts(path)
        else:
            yield str(path), path.read_bytes().decode("utf-8", errors="replace")
    for number, output in enumerate(outputs):
        yield f"command {number} stdout", output.out
        yield f"command {number} stderr", output.err


def leaks(places: Iterator[tuple[str, str]]) -> list[str]:
    return [f"{where}: {pieces}" for where, text in places if (pieces := key_pieces(text))]


def texts_of(places: Iterator[tuple[str, str]]) -> str:
    return "\n".join(text for _where, text in places)


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def keyed(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`work` with KEY as the API key, and a registry of secrets of this test's own (the
    registry is process-wide: nothing this test registers may outlive it)."""
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    monkeypatch.setattr(secrets, "_secrets", set())
    return work


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`run` configures the root logger (force=True): put the handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


# --- a tiny API that echoes the key -----------------------------------------------


def bar(t: int, price: float) -> dict[str, object]:
    return {"t": t, "o": price, "h": price + 1, "l": price - 1, "c": price, "v": 100, "vw": price, "n": 3}


AGGS = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/1/(minute|day)/([^/]+)/([^/?]+)")


class EchoingApi(BaseHTTPRequestHandler):
    """An aggregates endpoint whose answers carry the key the client sent, one way per ticker:

    GOOD    one page of bars, no key anywhere
    NEXT    page 1 points at page 2 with `apiKey=KEY` in next_url; page 2 is bars
    NEXTBAD the same, but page 2 is a 400 quoting the request target (with apiKey=KEY)
    ECHO    403 whose message quotes the key
    CUT     403 whose message holds the key across the 160th character (where error
            texts are cut short: a key cut in two must still not show)
    AWAY    next_url on another host, with the key as its user name
    any     401 quoting the key, once `refuse` is set on the server
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps({"request_id": "r1", **payload}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.server.refuse:  # type: ignore[attr-defined]
            return self._reply(401, {"status": "ERROR", "error": f"Unknown API Key {key}"})
        match = AGGS.match(self.path)
        if not match:
            return self._reply(404, {"status": "NOT_FOUND", "message": "Not found."})
        ticker, _span, start, end = match.groups()
        first_page = not start.isdigit()
        if first_page and start > "2023-01-03":  # every ticker's bars are on 2023-01-03
            return self._reply(200, {"status": "OK", "adjusted": True, "results": [], "resultsCount": 0})
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        bars = [bar(JAN_3_10AM + i * MINUTE, 10.0 + i) for i in range(3)]
        if ticker == "GOOD" or (ticker in ("NEXT", "NEXTBAD") and first_page):
            page: dict[str, object] = {"status": "OK", "adjusted": True, "results": bars, "resultsCount": 3}
            if ticker != "GOOD":
                after = JAN_3_10AM + 60 * MINUTE
                page["next_url"] = f"{base}/v2/aggs/ticker/{ticker}/range/1/minute/{after}/{end}?apiKey={key}"
            return self._reply(200, page)
        if ticker == "NEXT":
            later = [bar(JAN_3_10AM + (90 + i) * MINUTE, 20.0 + i) for i in range(2)]
            return self._reply(200, {"status": "OK", "adjusted": True, "results": later, "resultsCount": 2})
        if ticker == "NEXTBAD":
            return self._reply(400, {"status": "ERROR", "error": f"unknown cursor in {self.path}"})
        if ticker == "ECHO":
            return self._reply(403, {"status": "NOT_AUTHORIZED", "message": f"key {key} is not entitled"})
        if ticker == "CUT":
            preamble = "Your plan does not include this data; upgrade it at the dashboard. "
            shown = 2 * len(key) // 3  # the cut falls two thirds into the key
            message = (preamble * 3)[: 160 - shown - 1] + f" {key} more"
            return self._reply(403, {"status": "NOT_AUTHORIZED", "message": message})
        if ticker == "AWAY":
            page = {
                "status": "OK",
                "adjusted": True,
                "results": bars,
                "resultsCount": 3,
                "next_url": f"http://{key}@elsewhere.invalid/v2/aggs/ticker/AWAY/range/1/minute/{JAN_4}/{end}",
            }
            return self._reply(200, page)
        if ticker == "DOWN":
            return self._reply(503, {"status": "ERROR", "error": f"overloaded, try later ({key})"})
        return self._reply(200, {"status": "OK", "adjusted": True, "results": [], "resultsCount": 0})


@pytest.fixture
def echoing_api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingApi)
    server.refuse = False  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


# --- the tests -----------------------------------------------------------------------


def test_the_search_sees_through_compression(tmp_path):
    """The Parquet search reads values and metadata as pyarrow decodes them: a key in a
    zstd-compressed, dictionary-encoded column or in the metadata is found."""
    column = pa.table({"ticker": ["AAPL"] * 5_000 + [f"x{KEY}y"] * 5_000})
    pq.write_table(column, tmp_path / "values.parquet", compression="zstd")
    tagged = pa.table({"v": [1]}).replace_schema_metadata({"source": f"https://h/?apiKey={KEY}"})
    pq.write_table(tagged, tmp_path / "meta.parquet", compression="zstd")
    assert leaks(parquet_texts(tmp_path / "values.parquet"))
    assert leaks(parquet_texts(tmp_path / "meta.parquet"))
    pq.write_table(pa.table({"ticker": ["AAPL"] * 5_000}), tmp_path / "clean.parquet", compression="zstd")
    assert not leaks(parquet_texts(tmp_path / "clean.parquet"))
    assert key_pieces(f"a\n{KEY[:12]}\n{KEY[12:]}") and not key_pieces("pk_ and nothing else")


def test_a_key_echoed_by_the_api_is_nowhere_in_what_the_run_leaves(keyed, echoing_api, restore_logging):
    tickers = ["GOOD", "NEXT", "NEXTBAD", "ECHO", "CUT", "AWAY"]
    write_universe(keyed / "u.csv", tickers)
    assert run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-02-28").code == 0
    url = url_of(echoing_api)
    first = run_cli("run", "--base-url", url, "--workers", "2", "--log-file", "run.log")
    audit = run_cli("audit")

    # the key did reach every path this test means to cover
    with sqlite3.connect(keyed / "ledger.db") as connection:
        january = connection.execute(
            "SELECT ticker, state, error_class, last_error FROM units WHERE period = '2023-01'"
        ).fetchall()
    outcome = {ticker: (state, error_class) for ticker, state, error_class, _ in january}
    errors = {ticker: error for ticker, _, _, error in january}
    assert outcome == {
        "GOOD": ("done", None),
        "NEXT": ("done", None),
        "NEXTBAD": ("failed", "bad_request"),
        "ECHO": ("failed", "not_entitled"),
        "CUT": ("failed", "not_entitled"),
        "AWAY": ("failed", "protocol"),
    }, outcome
    assert "apiKey=***" in errors["NEXTBAD"] and "key *** is not entitled" in errors["ECHO"]
    assert "http://***@elsewhere.invalid" in errors["AWAY"]
    assert "ECHO 2023-01: HTTP 403: key *** is not entitled" in "".join(audit.out.split("\n"))

    # then a refused key stops the run, quoting the key in its message
    write_universe(keyed / "later.csv", ["LATER"])
    run_cli("plan", "--universe", "later.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    echoing_api.refuse = True  # type: ignore[attr-defined]
    refused = run_cli("run", "--base-url", url, "--log-file", "run2.log")
    assert refused.code == 1 and "the API key was refused (401: Unknown API Key ***)" in refused.out

    found = leaks(everything_left(keyed, first, audit, refused))
    assert found == [], found
    assert list(keyed.rglob("*.parquet")), "no Parquet file to search"


def test_a_key_echoed_by_a_failing_server_is_redacted_from_requeued_units(keyed, echoing_api):
    """A 5xx quoting the key, retried then put back in the queue: the attempt's error and
    the unit's last error say what happened, without the key."""
    write_universe(keyed / "u.csv", ["DOWN"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    secrets.register_secret(KEY)  # as `run` does when it reads the key from the environment
    options = RunOptions(workers=1, max_attempts=2, retry=RetryPolicy(max_retries=0, base_delay=0.001))
    with Ledger(keyed / "ledger.db") as ledger:
        report = Run(
            ledger, BarStore(keyed / "data"), api_key=KEY, base_url=url_of(echoing_api), options=options
        ).execute()
    assert report.stats.outcomes["requeued"] == 1 and report.stats.outcomes["failed"] == 1
    errors = texts_of(ledger_texts(keyed / "ledger.db"))
    assert "server error 503: overloaded, try later (***)" in errors
    found = leaks(ledger_texts(keyed / "ledger.db"))
    assert found == [], found


def test_a_key_in_a_log_record_or_a_traceback_stays_out_of_log_file_and_console(
    keyed, echoing_api, monkeypatch, restore_logging
):
    """The ledger failing with the key in its message: the worker logs the traceback
    (to the console and the --log-file) and the run stops, saying why."""
    write_universe(keyed / "u.csv", ["GOOD"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")

    def failing_claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        logging.getLogger("polyledger.run").warning("claim refused for %s", f"Bearer {KEY}")
        raise RuntimeError(f"database rejected the connection for apiKey={KEY}")

    monkeypatch.setattr(Ledger, "claim", failing_claim)
    result = run_cli("run", "--base-url", url_of(echoing_api), "--workers", "1", "--log-file", "run.log")
    log = (keyed / "run.log").read_text(encoding="utf-8")

    assert result.code == 1
    assert "claim refused for Bearer ***" in log and "claim refused for Bearer ***" in result.err
    assert "Traceback" in log and "RuntimeError: database rejected the connection for apiKey=***" in log
    assert "stopped: the ledger could not be updated: RuntimeError" in result.out
    found = leaks(everything_left(keyed, result))
    assert found == [], found


def test_stored_bars_carry_no_trace_of_a_keyed_next_url(keyed, echoing_api):
    """Bars fetched through a `next_url` holding `apiKey=` are stored as bars only: the
    URL is in no column and no metadata of the file, decompressed."""
    write_universe(keyed / "u.csv", ["NEXT"])
    run_cli("plan", "--universe", "u.csv", "--from", "2023-01-01", "--to", "2023-01-31")
    assert run_cli("run", "--base-url", url_of(echoing_api)).code == 0
    (stored,) = keyed.rglob("*.parquet")
    assert pl.read_parquet(stored).height == 5  # both pages, the keyed one included
    found = leaks(parquet_texts(stored))
    assert found == [], found
