"""A stand-in for the Polygon / Massive REST API on 127.0.0.1, serving a SyntheticMarket.

It is faithful to /work/shared/docs/polygon-api.md and the recorded samples: ET calendar
dates, `limit` caps the base bars read, `next_url` = same path with `from` advanced plus
an opaque `cursor` that carries limit and sort only (never the key, never `adjusted`),
empty windows without a `results` key, and the observed error bodies. On top it can
misbehave on purpose (FaultPlan, rate limits, plan entitlement, broken next_url) so the
downloader's retry, pacing and pagination guards can be tested against real sockets,
and it can serve flawed minute bars on purpose (Defects) for the data quality checks.
ResponseStyle varies, seeded, what the real API may vary in an aggregates body (spacing,
key order, pretty printing, bars without `vw`/`n`, a few bars outside the asked dates);
`cursor_keeps_adjusted` and `withhold_results` cover two other uncertain answers.
Future dates (after its `today`: the machine's US/Eastern date unless set) are a 403
NOT_AUTHORIZED, as the API answers them, on /range and grouped daily alike. Its `Date`
header is its clock (noon US/Eastern of `today` when set).

Grouped daily bars (/v2/aggs/grouped/locale/us/market/stocks/{date}): every listing's
/range day bar of that date, `T` = its ticker, `t` = 16:00 ET; on a weekend or an NYSE
holiday (the `holidays` package's calendar) a 200 with resultsCount 0 and no `results`
(the synthetic market trades on NYSE sessions only, as /range shows). Defects.grouped_changed and
grouped_left_out make it disagree with /range on purpose.

Reference data (same keys, rate limit and stats; faults apply to aggregates only):
/v3/reference/tickers (list), /v3/reference/tickers/{T}, the experimental
/vX/reference/tickers/{id}/events (ticker changes of a FIGI's company, or of the company
holding a symbol now), /stocks/v1/splits,
/stocks/v1/dividends and the deprecated /v3/reference/splits and /v3/reference/dividends,
shaped like the recorded samples and paginated by a `next_url` whose cursor carries the
whole query plus a page marker (as the real one does).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import orjson
import polars as pl

from polyledger.testing.market import (
    DAY_MS,
    ET,
    MINUTE_MS,
    SyntheticMarket,
    et_midnight_ms,
    nyse_open,
)

AGGS_PATH = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/([^/]+)/([^/]+)/([^/]+)/([^/]+)$")
TICKER_PATH = re.compile(r"^/v3/reference/tickers/([^/]+)$")
EVENTS_PATH = re.compile(r"^/vX/reference/tickers/([^/]+)/events$")
GROUPED_PATH = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/([^/]+)$")
GROUPED_CLOSE_HOUR = 16  # grouped bars are stamped 16:00 ET of their date, unlike /range
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_LIMIT, MAX_LIMIT = 5_000, 50_000
RESULT_KEYS = ["v", "vw", "o", "c", "h", "l", "t", "n", "otc"]  # the order the API uses
RATE_LIMITED = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue. https://polygon.io/pricing"
)
NOT_ENTITLED = (
    "Your plan doesn't include this data timeframe. Please upgrade your plan at https://polygon.io/pricing"
)
ALL_FAULTS = ("429", "500", "502", "503", "reset", "truncated", "invalid_json", "bad_shape", "slow")
# compact: orjson, no whitespace (what the API sends); spaced: ", " and ": "; pretty: indented,
# one key per line; lines: compact, but one bar per line inside the results array
LAYOUTS = ("compact", "spaced", "pretty", "lines")
WITHHELD_AS = ("absent", "null", "empty")  # how a withheld results array is (not) sent
# how a range that straddles history_start (or reaches past today) is answered: 403, or clip
# (200 with only the entitled bars: from history_start on, up to today; the others silently
# absent); the API may do either
STRADDLE_MODES = ("403", "clip")
_STRAY_WINDOW_DAYS = 40  # how far beyond the asked dates stray bars are looked for
_ROWS_HERE = b"@rows@"  # placeholder for the results array (no ticker or URL holds "@")


@dataclass
class FaultPlan:
    rate: float = 0.0  # probability that an aggregates request gets a fault
    kinds: tuple[str, ...] = ALL_FAULTS
    seed: int = 0
    slow_seconds: float = 5.0  # "slow": sleep this long, then answer normally
    retry_after: bool = True  # 429 faults carry Retry-After: 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {ALL_FAULTS}")


BarKey = tuple[str, int]  # (ticker, bar start in epoch ms)


@dataclass(frozen=True)
class Defects:
    """Deterministic defects in the minute bars served (off by default), for data quality
    tests: the download sees them, while day bars and the market's truth (minute_bars,
    day_bars) stay complete and correct.

    drop: minute bars never served.  repeat: minute bars served twice, one after the other
    (same timestamp, same page).  bad_low: minute bars served with low above
    min(open, close).  short_months: (ticker, last date) -- that month's minute bars after
    the date are not served, silently (200 OK, no error, pagination intact).
    grouped_changed: (ticker, date) -- the grouped daily bar's close is 5% higher than the
    /range day bar's.  grouped_left_out: (ticker, date) -- the grouped daily answer leaves
    the symbol out.
    """

    drop: frozenset[BarKey] = frozenset()
    repeat: frozenset[BarKey] = frozenset()
    bad_low: frozenset[BarKey] = frozenset()
    short_months: frozenset[tuple[str, dt.date]] = frozenset()
    grouped_changed: frozenset[tuple[str, dt.date]] = frozenset()
    grouped_left_out: frozenset[tuple[str, dt.date]] = frozenset()

    def __post_init__(self) -> None:
        names = ("drop", "repeat", "bad_low", "short_months", "grouped_changed", "grouped_left_out")
        for name in names:  # accept any iterable
            object.__setattr__(self, name, frozenset(getattr(self, name)))

    def hide(self, ticker: str, timespan: str, bars: pl.DataFrame) -> pl.DataFrame:
        """`bars` less the ones this plan does not serve (drop, short_months)."""
        dropped = [t for name, t in self.drop if name == ticker]
        cutoffs = [day for name, day in self.short_months if name == ticker]
        if timespan != "minute" or not bars.height or not (dropped or cutoffs):
            return bars
        keep = ~pl.col("t").is_in(dropped)
        session = pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").dt.convert_time_zone(str(ET))
        for day in cutoffs:
            month_end = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
            keep &= ~session.dt.date().is_between(day + dt.timedelta(days=1), month_end)
        return bars.filter(keep)

    def garble(self, ticker: str, timespan: str, page: pl.DataFrame) -> pl.DataFrame:
        """A page as served: bad_low bars altered, repeat bars sent twice."""
        bad = [t for name, t in self.bad_low if name == ticker]
        repeated = [t for name, t in self.repeat if name == ticker]
        if timespan != "minute" or not page.height or not (bad or repeated):
            return page
        low = (pl.min_horizontal("o", "c") + 0.01).round(4)
        page = page.with_columns(l=pl.when(pl.col("t").is_in(bad)).then(low).otherwise(pl.col("l")))
        indexed = page.with_row_index("_row")
        twice = pl.concat([indexed, indexed.filter(pl.col("t").is_in(repeated))])
        return twice.sort("_row", maintain_order=True).drop("_row")


@dataclass(frozen=True)
class ResponseStyle:
    """How aggregates bodies are written (off by default: compact, the API's key order, every
    field the market has, only the asked dates). Every choice is a pure function of the seed
    and the request (or the bar), never of the order requests arrive in, so a run with many
    workers sees the same bodies each time.

    layout: one of LAYOUTS, or "mixed" (one of them per response).  shuffle_keys: the
    envelope's keys and each bar's keys in a random order.  missing_fields: the share of bars
    sent without `vw` and, independently, without `n` (`lacks` says which).  stray_before /
    stray_after: the first page (the one whose `from` is a date) starts with this many of the
    market's bars from just before the asked dates; the last page ends with this many from
    just after them (fewer when the market has fewer within 40 days).  delayed: every
    aggregates answer says `"status": "DELAYED"`, as the API's answers on a delayed plan do
    (polygon-api.md: OK or DELAYED, both success).
    """

    layout: str = "compact"
    shuffle_keys: bool = False
    missing_fields: float = 0.0
    stray_before: int = 0
    stray_after: int = 0
    delayed: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in (*LAYOUTS, "mixed"):
            raise ValueError(f"unknown layout {self.layout!r}; known: {(*LAYOUTS, 'mixed')}")
        if not 0.0 <= self.missing_fields <= 1.0:
            raise ValueError("missing_fields is a share between 0 and 1")
        if self.stray_before < 0 or self.stray_after < 0:
            raise ValueError("stray bar counts cannot be negative")

    @property
    def plain(self) -> bool:
        """True when bodies are rendered exactly as without a style."""
        return self.layout == "compact" and not self.shuffle_keys

    def lacks(self, ticker: str, field: str, t: pl.Expr) -> pl.Expr:
        """Whether the bar of `ticker` starting at `t` (epoch ms) is sent without `field`
        ("vw" or "n"): a hash of the seed, ticker, field and minute, so tests can apply
        the same rule to the market's truth."""
        salt = zlib.crc32(f"{self.seed}:{ticker}:{field}".encode())
        buckets = 10_007  # a prime: consecutive minutes spread over all buckets
        # int64 stays far from overflow: minutes since 1970 (~3e7) times a 32-bit multiplier
        bucket = ((t // MINUTE_MS) * 2_654_435_761 + salt) % buckets
        return bucket < round(self.missing_fields * buckets)

    def strip(self, ticker: str, bars: pl.DataFrame) -> pl.DataFrame:
        """`bars` (raw columns) with `vw` and `n` nulled where they are not sent."""
        if not self.missing_fields or not bars.height:
            return bars
        return bars.with_columns(
            pl.when(self.lacks(ticker, name, pl.col("t"))).then(None).otherwise(pl.col(name)).alias(name)
            for name in ("vw", "n")
        )

    def rng(self, target: str) -> random.Random:
        """The random choices of one response, from the seed and the request target."""
        return random.Random(f"{self.seed}|{target}")


class ServerStats:
    """Thread-safe counters; read them directly or take a consistent snapshot()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.bars_requests = 0
            self.connections = 0
            self.by_status: Counter[int] = Counter()
            # "aggs", "ticker", "events", "tickers", "splits", "dividends", "other"
            self.by_kind: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.requested: list[tuple[str, str, str]] = []  # (ticker, from, to) as in the path
            self.targets: list[str] = []  # every request target, apiKey removed

    @property
    def requested_counts(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            return Counter(self.requested)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "total": self.total,
                "bars_requests": self.bars_requests,
                "connections": self.connections,
                "by_status": dict(self.by_status),
                "by_kind": dict(self.by_kind),
                "faults": dict(self.faults),
                "requested": list(self.requested),
                "targets": list(self.targets),
            }

    # called by the handler threads
    def _request(self, kind: str, target: str, aggs: tuple[str, str, str] | None) -> None:
        with self._lock:
            self.total += 1
            self.by_kind[kind] += 1
            self.targets.append(target)
            if aggs is not None:
                self.bars_requests += 1
                self.requested.append(aggs)

    def _count(self, counter: Counter, key: object) -> None:
        with self._lock:
            counter[key] += 1

    def _connection(self) -> None:
        with self._lock:
            self.connections += 1


class _BadRequest(Exception):
    pass


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(raw: str) -> str:
    """Inverse of _b64; ValueError (binascii.Error, UnicodeDecodeError) if it is not one."""
    padded = (raw + "=" * (-len(raw) % 4)).encode()
    return base64.b64decode(padded, altchars=b"-_", validate=True).decode()


def _parse_bound(text: str, *, end: bool) -> int:
    """`from`/`to` path segment -> epoch ms; the window is [from, to) after this."""
    try:
        if ISO_DATE.match(text):
            day = dt.date.fromisoformat(text)
            # an ET calendar day, both ends inclusive
            return et_midnight_ms(day + dt.timedelta(days=1) if end else day)
        if text.isdigit() and len(text) <= 13:  # epoch ms up to the year 2286
            return int(text) + 1 if end else int(text)  # `to` in ms is inclusive
    except (ValueError, OverflowError):
        pass
    raise _BadRequest(f"could not parse {text!r} as a date or a timestamp")


class StandInServer:
    """Threaded HTTP/1.1 server; settable at runtime: latency, always_status, rate_limit,
    faults, page_cap, history_start, today, broken_next_url, defects, send_retry_after, style,
    cursor_keeps_adjusted, withhold_results, withheld_as, straddle, set_api_keys().

    history_start: a range wholly before it is a 403 NOT_AUTHORIZED; one that straddles it is
    a 403 too, or with straddle="clip" a 200 with only the bars from history_start on (no
    sign that earlier days were left out), as the real API may answer.

    today: the stand-in's US/Eastern date (None: the machine's, asked at each request).
    Future dates are a 403 NOT_AUTHORIZED, as the API answers them (polygon-api.md, Errors),
    although the synthetic market trades every session for ever: a range starting after
    today, and grouped daily of a later date; a range reaching past today is a 403 too, or
    with straddle="clip" a 200 with the bars up to today.

    cursor_keeps_adjusted: next_url's cursor also carries `adjusted` (by default it carries
    limit and sort only, so a continuation page without `adjusted` answers the default,
    true). withhold_results: tickers whose pages with bars say so in resultsCount but send
    no bars (`results` absent, null or [] as withheld_as says)."""

    def __init__(
        self,
        market: SyntheticMarket,
        *,
        api_keys: Iterable[str] = ("demo-key",),
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
        send_retry_after: bool = True,
        retry_after_every: int = 1,
        faults: FaultPlan | None = None,
        page_cap: int | None = None,
        history_start: dt.date | None = None,
        today: dt.date | None = None,
        straddle: str = "403",
        always_status: int | None = None,
        broken_next_url: Iterable[str] = frozenset(),
        defects: Defects | None = None,
        style: ResponseStyle | None = None,
        cursor_keeps_adjusted: bool = False,
        withhold_results: Iterable[str] = frozenset(),
        withheld_as: str = "absent",
    ) -> None:
        self.market = market
        self.host, self.port = host, port
        self.latency = latency
        self.send_retry_after = send_retry_after
        # Retry-After on every k-th 429 only (it is undocumented: clients must cope without)
        self.retry_after_every = max(1, retry_after_every)
        self.rate_burst = rate_burst  # requests a key's bucket holds; None: a second's worth
        self._refusals = 0
        self.page_cap = page_cap
        self.history_start = history_start
        self.today = today
        if straddle not in STRADDLE_MODES:
            raise ValueError(f"straddle must be one of {STRADDLE_MODES}, not {straddle!r}")
        self.straddle = straddle
        self.always_status = always_status
        self.broken_next_url = set(broken_next_url)
        self.defects = defects or Defects()
        self.style = style or ResponseStyle()
        self.cursor_keeps_adjusted = cursor_keeps_adjusted
        self.withhold_results = set(withhold_results)
        if withheld_as not in WITHHELD_AS:
            raise ValueError(f"withheld_as must be one of {WITHHELD_AS}, not {withheld_as!r}")
        self.withheld_as = withheld_as
        self.stats = ServerStats()
        self.url = ""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill time]
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_api_keys(api_keys)
        self.rate_limit = rate_limit
        self.faults = faults or FaultPlan()

    # -- runtime knobs -------------------------------------------------------------------
    def current_day(self) -> dt.date:
        """The stand-in's today (US/Eastern): `today`, else the machine's."""
        return self.today if self.today is not None else dt.datetime.now(ET).date()

    def set_api_keys(self, keys: Iterable[str]) -> None:
        self.api_keys = frozenset(keys)

    @property
    def rate_limit(self) -> float | None:
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        with self._lock:
            self._rate_limit = value
            self._buckets.clear()  # a new limit starts every key with a full burst

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        with self._lock:
            self._faults = plan
            self._fault_rng = random.Random(plan.seed)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> StandInServer:
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.standin = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency or a "slow" fault
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:  # release handler threads blocked on idle keep-alive sockets
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> StandInServer:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals used by the handler ---------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _sends_retry_after(self) -> bool:
        with self._lock:
            self._refusals += 1
            return self.send_retry_after and self._refusals % self.retry_after_every == 0

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _allow(self, key: str) -> bool:
        """Token bucket per key: `rate_limit` per second, holding `rate_burst` requests
        (default a second's worth, at least one)."""
        with self._lock:
            rate = self._rate_limit
            if rate is None:
                return True
            burst = max(1.0, rate if self.rate_burst is None else self.rate_burst)
            now = time.monotonic()
            bucket = self._buckets.setdefault(key, [burst, now])
            bucket[0] = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return True
            return False

    def _served(
        self, timespan: str, ticker: str, start: int, end: int, want: int, desc: bool, adjusted: bool
    ) -> pl.DataFrame:
        """The first `want` bars served: the market's, less those `defects` hide (asking the
        market for more until `want` survive or the window is exhausted)."""
        ask = want
        while True:
            bars = self.market.bars(
                timespan, ticker, start, end, limit=ask, descending=desc, adjusted=adjusted
            )
            served = self.defects.hide(ticker, timespan, bars)
            if served.height >= want or bars.height < ask:
                return served.head(want)
            ask *= 2

    def _draw_fault(self) -> tuple[str | None, int]:
        with self._lock:  # one seeded RNG, so a run's fault sequence is reproducible
            plan, rng = self._faults, self._fault_rng
            if plan.rate <= 0 or not plan.kinds or rng.random() >= plan.rate:
                return None, 0
            return rng.choice(plan.kinds), rng.randrange(2)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # hammering tests open many connections at once
    standin: StandInServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for seconds
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: object, client_address: object) -> None:
        # clients that time out or hang up are part of the game; anything else is a bug
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "polyledger-standin/1.0"
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # silence the per-request stderr log

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header: the stand-in's clock (noon US/Eastern of its `today` when set),
        as the API's answers carry its own clock."""
        today = self.server.standin.today
        if timestamp is None and today is not None:
            timestamp = dt.datetime.combine(today, dt.time(12), tzinfo=ET).timestamp()
        return super().date_time_string(timestamp)

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK stalls every keep-alive response by ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._track(self.connection, True)
        self.server.standin.stats._connection()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._track(self.connection, False)

    # -- responses -----------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        st = self.server.standin
        st._sleep(st.latency)
        if body and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)  # level 1: big pages stay fast
            headers = {**(headers or {}), "Content-Encoding": "gzip"}
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        st.stats._count(st.stats.by_status, status)
        if truncate:  # full Content-Length announced, half the body sent, then hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def _json(self, status: int, payload: dict, **kw: object) -> None:
        payload = {
            "status": payload.pop("status", "ERROR"),
            "request_id": uuid.uuid4().hex,
            **payload,
        }
        self._send(status, orjson.dumps(payload), **kw)  # type: ignore[arg-type]

    def _rate_limited(self, retry_after: str | None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        self._json(429, {"error": RATE_LIMITED}, headers=headers)

    # -- dispatch ------------------------------------------------------------------------
    def do_GET(self) -> None:
        st = self.server.standin
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        aggs, ticker = AGGS_PATH.match(split.path), TICKER_PATH.match(split.path)
        grouped, events = GROUPED_PATH.match(split.path), EVENTS_PATH.match(split.path)
        ref_list = LIST_ENDPOINTS.get(split.path)
        kind = (
            "aggs"
            if aggs
            else "ticker"
            if ticker
            else "events"
            if events
            else "grouped"
            if grouped
            else ref_list.kind
            if ref_list
            else "other"
        )
        target = split.path + "".join(
            ("?" if not i else "&") + part
            for i, part in enumerate(p for p in split.query.split("&") if p and not p.startswith("apiKey="))
        )
        seg = tuple(unquote(g) for g in aggs.groups()) if aggs else None
        st.stats._request(kind, target, (seg[0], seg[3], seg[4]) if seg else None)

        if st.always_status is not None:
            if st.always_status == 429:
                return self._rate_limited("1" if st.send_retry_after else None)
            return self._json(st.always_status, {"error": "stand-in always_status"})
        auth = self.headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else query.get("apiKey", [""])[0]
        if not key:
            return self._json(401, {"error": "API Key was not provided"})
        if key not in st.api_keys:
            return self._json(401, {"error": "Unknown API Key"})
        if not st._allow(key):
            return self._rate_limited("1" if st._sends_retry_after() else None)
        if seg:
            return self._aggregates(seg, query)
        if ticker:
            return self._ticker(unquote(ticker.group(1)), query)
        if grouped:
            return self._grouped(unquote(grouped.group(1)), query)
        if events:
            return self._events(unquote(events.group(1)), query)
        if ref_list:
            return self._list(split.path, ref_list, query)
        return self._json(404, {"status": "NOT_FOUND", "message": "Not found."})

    def _ticker(self, symbol: str, query: dict[str, list[str]]) -> None:
        market = self.server.standin.market
        try:
            date = _date_param(query.get("date", [""])[0] or None)
        except _BadRequest as exc:
            return self._json(400, {"error": f"Failed to parse query parameters: {exc}"})
        results = market.reference(symbol, date)
        if results is None:
            return self._json(404, {"status": "NOT_FOUND", "message": "Ticker not found."})
        self._json(200, {"status": "OK", "results": results})

    def _events(self, identifier: str, query: dict[str, list[str]]) -> None:
        results = self.server.standin.market.events(identifier)
        if results is None:
            return self._json(404, {"status": "NOT_FOUND", "message": "Ticker not found."})
        types = {t for t in query.get("types", [""])[0].split(",") if t}  # blank: every type
        if types:
            results["events"] = [e for e in results["events"] if e["type"] in types]  # type: ignore[attr-defined]
        self._json(200, {"status": "OK", "results": results})

    def _grouped(self, date_text: str, query: dict[str, list[str]]) -> None:
        st = self.server.standin
        try:
            if not ISO_DATE.match(date_text):
                raise _BadRequest(f"date must be YYYY-MM-DD, not {date_text!r}")
            day = dt.date.fromisoformat(date_text)
            adjusted = _agg_params({k: v for k, v in query.items() if k == "adjusted"})["adjusted"]
        except (_BadRequest, ValueError) as exc:
            return self._json(400, {"error": f"Failed to parse query parameters: {exc}"})
        if (st.history_start is not None and day < st.history_start) or day > st.current_day():
            return self._json(403, {"status": "NOT_AUTHORIZED", "message": NOT_ENTITLED})
        rows = _grouped_rows(st.market, st.defects, day, adjusted) if nyse_open(day) else []
        head: dict[str, object] = {
            "queryCount": len(rows),
            "resultsCount": len(rows),
            "adjusted": adjusted,
        }
        if rows:
            head["results"] = rows
        head.update({"status": "OK", "request_id": uuid.uuid4().hex, "count": len(rows)})
        self._json(200, head)

    def _list(self, path: str, endpoint: _ListEndpoint, query: dict[str, list[str]]) -> None:
        st = self.server.standin
        try:
            params = endpoint.params(query)
            page, marker = endpoint.page(st.market, params)
        except _BadRequest as exc:
            return self._json(400, {"error": f"Failed to parse query parameters: {exc}"})
        body: dict[str, object] = {"status": "OK", "results": page}
        if endpoint.counted:
            body["count"] = len(page)
        if marker is not None:  # the cursor is the whole query plus where the next page starts
            cursor = _b64(urlencode(sorted({**params, "page_marker": marker}.items())))
            body["next_url"] = f"{st.url}{path}?cursor={cursor}"
        self._json(200, body)

    def _aggregates(self, seg: tuple[str, ...], query: dict[str, list[str]]) -> None:
        st = self.server.standin
        ticker, mult, timespan, frm, to = seg
        try:
            params = _agg_params(query)
            if mult != "1" or timespan not in ("minute", "day"):
                raise _BadRequest(f"stand-in supports 1/minute and 1/day, not {mult}/{timespan}")
            start, end = _parse_bound(frm, end=False), _parse_bound(to, end=True)
        except _BadRequest as exc:
            return self._json(400, {"error": f"Failed to parse query parameters: {exc}"})
        served_from = start  # clipped to the plan's history when straddle="clip"
        if st.history_start is not None:
            entitled = et_midnight_ms(st.history_start)
            if end <= entitled or (start < entitled and st.straddle == "403"):
                return self._json(403, {"status": "NOT_AUTHORIZED", "message": NOT_ENTITLED})
            served_from = max(start, entitled)
        future = et_midnight_ms(st.current_day() + dt.timedelta(days=1))  # the first instant after today
        if start >= future or (end > future and st.straddle == "403"):
            return self._json(403, {"status": "NOT_AUTHORIZED", "message": NOT_ENTITLED})
        served_to = min(end, future)  # clipped to today when straddle="clip"

        fault, variant = st._draw_fault()
        if fault is not None:
            st.stats._count(st.stats.faults, fault)
            if fault != "slow" and fault != "truncated":
                return self._fault(fault, variant, ticker)
            if fault == "slow":
                st._sleep(st.faults.slow_seconds)

        limit, desc = params["limit"], params["sort"] == "desc"
        if st.page_cap is not None:
            limit = min(limit, st.page_cap)
        # one bar beyond the page tells whether a next_url is due
        bars = st._served(timespan, ticker, served_from, served_to, limit + 1, desc, params["adjusted"])
        page = bars.head(limit)
        next_url = (
            self._next_url(ticker, timespan, frm, to, page, limit, desc, params["adjusted"])
            if bars.height > limit
            else None
        )
        page = st.defects.garble(ticker, timespan, page)  # after next_url: a repeat stays in its page
        page = self._with_strays(
            ticker, timespan, frm, page, (start, served_to), desc, params["adjusted"], next_url
        )
        page = st.style.strip(ticker, page)
        head: dict[str, object] = {
            "ticker": ticker,
            "queryCount": page.height,
            "resultsCount": page.height,
            "adjusted": params["adjusted"],
            "status": "DELAYED" if st.style.delayed else "OK",
            "request_id": uuid.uuid4().hex,
            "count": page.height,
        }
        if next_url is not None:
            head["next_url"] = next_url
        if ticker in st.withhold_results and page.height:
            body = _withheld_body(head, st.withheld_as)
        elif st.style.plain:
            body = orjson.dumps(head)
            if page.height:
                body = body[:-1] + b',"results":' + _results_json(page) + b"}"
        else:
            body = _styled_body(head, page, st.style, st.style.rng(self.path))
        self._send(200, body, truncate=fault == "truncated")

    def _with_strays(
        self,
        ticker: str,
        timespan: str,
        frm: str,
        page: pl.DataFrame,
        window: tuple[int, int],
        desc: bool,
        adjusted: bool,
        next_url: str | None,
    ) -> pl.DataFrame:
        """The page with the style's bars from outside the window [start, end) added:
        before the first page (its `from` is a date, as only the first request's is), after
        the last (no next_url)."""
        st = self.server.standin
        style, (start, end) = st.style, window
        if desc or not (style.stray_before or style.stray_after):
            return page
        reach = _STRAY_WINDOW_DAYS * DAY_MS
        frames = [page]
        if style.stray_before and ISO_DATE.match(frm):
            before = st.market.bars(
                timespan,
                ticker,
                start - reach,
                start,
                limit=style.stray_before,
                descending=True,
                adjusted=adjusted,
            )
            frames.insert(0, before.reverse())
        future = et_midnight_ms(st.current_day() + dt.timedelta(days=1))  # no bar of a future date
        if style.stray_after and next_url is None and end < future:
            after = st.market.bars(
                timespan, ticker, end, min(end + reach, future), limit=style.stray_after, adjusted=adjusted
            )
            frames.append(after)
        return pl.concat(frames) if len(frames) > 1 else page

    def _next_url(
        self,
        ticker: str,
        timespan: str,
        frm: str,
        to: str,
        page: pl.DataFrame,
        limit: int,
        desc: bool,
        adjusted: bool,
    ) -> str:
        st = self.server.standin
        span = MINUTE_MS if timespan == "minute" else DAY_MS
        last_t = int(page["t"][-1])
        # as in the recorded sample: `from` moves to one bar-span after the page's last bar
        # (desc moves `to`, inclusive, to just before it); the cursor holds limit and sort only
        # (and adjusted, with cursor_keeps_adjusted)
        if desc:
            frm_out, to_out = frm, str(last_t - 1)
        else:
            frm_out, to_out = str(last_t + span), to
        if ticker in st.broken_next_url:
            frm_out, to_out = frm, to  # deliberately does not advance
        query = f"limit={limit}&sort={'desc' if desc else 'asc'}"
        if st.cursor_keeps_adjusted:
            query += f"&adjusted={'true' if adjusted else 'false'}"
        cursor = _b64(query)
        return (
            f"{st.url}/v2/aggs/ticker/{quote(ticker, safe='')}/range/1/{timespan}/"
            f"{frm_out}/{to_out}?cursor={cursor}"
        )

    def _fault(self, fault: str, variant: int, ticker: str) -> None:
        st = self.server.standin
        if fault == "429":
            return self._rate_limited("0" if st.faults.retry_after else None)
        if fault == "500":
            return self._json(500, {"error": "Internal Server Error"})
        if fault == "502":
            html = b"<html><head><title>502 Bad Gateway</title></head><body>502</body></html>"
            return self._send(502, html, ctype="text/html")
        if fault == "503":
            return self._send(503, b"Service Unavailable", ctype="text/plain")
        if fault == "invalid_json":
            return self._send(200, b"<html>gateway</html>", ctype="text/html")
        if fault == "bad_shape":
            shape = (
                {"status": "OK", "resultsCount": 3, "results": "oops"}
                if variant == 0
                else {
                    "ticker": ticker,
                    "status": "OK",
                    "resultsCount": 1,
                    "queryCount": 1,
                    "results": [{"o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 100.0}],
                }
            )
            return self._send(200, orjson.dumps(shape))
        # "reset" (FaultPlan rejects unknown kinds): no response at all, and a TCP RST
        # (SO_LINGER 0) rather than a polite FIN
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


# -- reference list endpoints ---------------------------------------------------------------

Row = dict[str, object]
RANGE_OPS = ("gt", "gte", "lt", "lte")


def _date_param(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        if ISO_DATE.match(text):
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise _BadRequest(f"date must be YYYY-MM-DD, not {text!r}")


def _bool_param(params: dict[str, str], name: str) -> bool | None:
    text = params.get(name, "").lower()
    if text in ("", "true", "false"):
        return None if not text else text == "true"
    raise _BadRequest(f"{name}={text!r}")


def _marker(value: str) -> str:
    # like the API's page_marker: the last row's key and a hash of it (tamper shows)
    return f"{value}|{hashlib.sha256(value.encode()).hexdigest()}"


def _unmarker(marker: str) -> str:
    value = marker.rpartition("|")[0]
    if _marker(value) != marker:
        raise _BadRequest("invalid cursor")
    return value


def _typed(kind: str, text: str) -> object:
    """A filter argument as the type its field compares in (dates compare as ISO text)."""
    if kind == "num":
        try:
            return float(text)
        except ValueError:
            raise _BadRequest(f"{text!r} is not a number") from None
    if kind == "date":
        _date_param(text)
    return text


def _compare(value: object, op: str, arg: object) -> bool:
    if value is None:
        return False
    if op == "gt":
        return value > arg  # type: ignore[operator]
    if op == "gte":
        return value >= arg  # type: ignore[operator]
    if op == "lt":
        return value < arg  # type: ignore[operator]
    return value <= arg  # type: ignore[operator]


def _filtered(rows: list[Row], params: dict[str, str], filters: dict[str, tuple[str, str]]) -> list[Row]:
    """Apply `name`, `name.gt|gte|lt|lte` and `name.any_of` filters; the rest of params are ignored."""
    for name, (field, kind) in filters.items():
        for op in ("eq", "any_of", *RANGE_OPS):
            text = params.get(name if op == "eq" else f"{name}.{op}")
            if text is None or text == "":
                continue
            if op == "any_of":
                wanted = {_typed(kind, part) for part in text.split(",")}
                rows = [r for r in rows if r.get(field) in wanted]
            elif op == "eq":
                arg = _typed(kind, text)
                rows = [r for r in rows if r.get(field) == arg]
            else:
                arg = _typed(kind, text)
                rows = [r for r in rows if _compare(r.get(field), op, arg)]
    return rows


@dataclass(frozen=True)
class _ListEndpoint:
    """How one reference list endpoint reads, filters, sorts and pages (per the OpenAPI spec)."""

    kind: str  # ServerStats.by_kind
    source: Callable[[SyntheticMarket, dict[str, str]], list[Row]]
    default_limit: int
    max_limit: int
    default_sort: str  # v3 style: a field, with `order`; v1 style: "field.asc,field2.desc"
    default_order: str | None  # None: v1 style (direction inside `sort`)
    sortable: frozenset[str]
    tiebreak: tuple[tuple[str, bool], ...]  # (field, descending): makes the order total
    marker: str  # unique field that names a page's last row
    filters: dict[str, tuple[str, str]]  # query name -> (result field, "str" | "date" | "num")
    counted: bool = False  # the body carries `count` (only /v3/reference/tickers does)
    defaults: tuple[tuple[str, str], ...] = ()  # other parameters the cursor always spells out

    def params(self, query: dict[str, list[str]]) -> dict[str, str]:
        """The effective query: the cursor's (it is the whole query) or the given one, with
        defaults filled in and checked."""
        if "cursor" in query:
            try:
                params = {k: v[0] for k, v in parse_qs(_unb64(query["cursor"][0])).items()}
            except ValueError:
                raise _BadRequest("invalid cursor") from None
            if "page_marker" not in params:
                raise _BadRequest("invalid cursor")
        else:
            params = {k: v[0] for k, v in query.items() if k != "apiKey"}
        params.setdefault("limit", str(self.default_limit))
        params.setdefault("sort", self.default_sort)
        if self.default_order is not None:
            params.setdefault("order", self.default_order)
        for name, value in self.defaults:
            params.setdefault(name, value)
        try:
            limit = int(params["limit"])
        except ValueError:
            raise _BadRequest("limit must be an integer") from None
        if not 1 <= limit <= self.max_limit:
            raise _BadRequest(f"limit must be between 1 and {self.max_limit}")
        self.sort_keys(params)  # reject a bad sort before doing any work
        return params

    def sort_keys(self, params: dict[str, str]) -> list[tuple[str, bool]]:
        if self.default_order is not None:
            order = params["order"].lower()
            if order not in ("asc", "desc"):
                raise _BadRequest(f"order={order!r}")
            keys = [(params["sort"], order == "desc")]
        else:
            default_desc = self.default_sort.endswith(".desc")
            keys = []
            for item in params["sort"].split(","):
                field, _, direction = item.partition(".")
                if direction not in ("", "asc", "desc"):
                    raise _BadRequest(f"sort={item!r}")
                keys.append((field, direction == "desc" if direction else default_desc))
        for field, _ in keys:
            if field not in self.sortable:
                raise _BadRequest(f"cannot sort by {field!r}")
        return keys + list(self.tiebreak)

    def page(self, market: SyntheticMarket, params: dict[str, str]) -> tuple[list[Row], str | None]:
        """This page's rows and, when more remain, the page marker of the next one."""
        rows = _filtered(self.source(market, params), params, self.filters)
        for field, desc in reversed(self.sort_keys(params)):  # stable sorts, least significant first
            rows.sort(key=lambda r, f=field: (r.get(f) is None, r.get(f)), reverse=desc)  # type: ignore[misc]
        start = 0
        keys = _unique([str(r[self.marker]) for r in rows])
        if "page_marker" in params:
            after = _unmarker(params["page_marker"])
            if after not in keys:
                raise _BadRequest("invalid cursor")
            start = keys.index(after) + 1
        limit = int(params["limit"])
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return page, _marker(keys[start + limit - 1]) if more else None


def _unique(keys: list[str]) -> list[str]:
    """Page-marker keys made unique: a reused symbol can be listed twice (two delisted
    companies), so a repeat is told apart by its occurrence ("X", then "X~1")."""
    seen: Counter[str] = Counter()
    out = []
    for key in keys:
        out.append(f"{key}~{seen[key]}" if seen[key] else key)
        seen[key] += 1
    return out


def _tickers_source(market: SyntheticMarket, params: dict[str, str]) -> list[Row]:
    active = _bool_param(params, "active")
    date = _date_param(params.get("date") or None)
    rows = market.ticker_list(active=active is not False, date=date)
    search = params.get("search", "").lower()
    if search:  # "terms within the ticker and/or company name"
        rows = [r for r in rows if search in str(r["ticker"]).lower() or search in str(r["name"]).lower()]
    return rows


def _splits_source(market: SyntheticMarket, params: dict[str, str]) -> list[Row]:
    return market.split_records(params.get("ticker") or None)


def _dividends_source(market: SyntheticMarket, params: dict[str, str]) -> list[Row]:
    return market.dividend_records(params.get("ticker") or None)


V3_SPLIT_KEYS = ("execution_date", "id", "split_from", "split_to", "ticker")
V3_DIVIDEND_KEYS = (
    "cash_amount",
    "declaration_date",
    "dividend_type",
    "ex_dividend_date",
    "frequency",
    "id",
    "pay_date",
    "record_date",
    "ticker",
)


def _v3_splits_source(market: SyntheticMarket, params: dict[str, str]) -> list[Row]:
    rows = [{k: r[k] for k in V3_SPLIT_KEYS} for r in _splits_source(market, params)]
    reverse = _bool_param(params, "reverse_split")
    if reverse is not None:  # "split_from greater than split_to represents a reverse split"
        rows = [r for r in rows if (r["split_from"] > r["split_to"]) == reverse]  # type: ignore[operator]
    return rows


def _v3_dividends_source(market: SyntheticMarket, params: dict[str, str]) -> list[Row]:
    rows = []
    for r in _dividends_source(market, params):
        # CD: a regular cash dividend; SC: a special one (frequency 0)
        v3 = {**r, "dividend_type": "CD" if r["frequency"] else "SC"}
        rows.append({k: v3[k] for k in V3_DIVIDEND_KEYS})
    return rows


_TICKER_FILTER = {"ticker": ("ticker", "str")}
_TIEBREAK_EVENTS = (("ticker", False), ("id", False))
LIST_ENDPOINTS: dict[str, _ListEndpoint] = {
    "/v3/reference/tickers": _ListEndpoint(
        kind="tickers",
        source=_tickers_source,
        default_limit=100,
        max_limit=1000,
        default_sort="ticker",
        default_order="asc",
        sortable=frozenset(
            ("ticker", "name", "market", "locale", "primary_exchange", "type", "currency_name", "cik")
            + ("composite_figi", "share_class_figi", "last_updated_utc", "delisted_utc")
        ),
        tiebreak=(("ticker", False),),
        marker="ticker",
        filters={
            **_TICKER_FILTER,
            "type": ("type", "str"),
            "market": ("market", "str"),
            "exchange": ("primary_exchange", "str"),
            "cik": ("cik", "str"),
        },
        counted=True,
        defaults=(("active", "true"),),
    ),
    "/stocks/v1/splits": _ListEndpoint(
        kind="splits",
        source=_splits_source,
        default_limit=100,
        max_limit=5000,
        default_sort="execution_date.desc",
        default_order=None,
        sortable=frozenset(
            ("adjustment_type", "execution_date", "historical_adjustment_factor", "id")
            + ("split_from", "split_to", "ticker")
        ),
        tiebreak=(("execution_date", True), *_TIEBREAK_EVENTS),
        marker="id",
        filters={
            **_TICKER_FILTER,
            "execution_date": ("execution_date", "date"),
            "adjustment_type": ("adjustment_type", "str"),
        },
    ),
    "/stocks/v1/dividends": _ListEndpoint(
        kind="dividends",
        source=_dividends_source,
        default_limit=100,
        max_limit=5000,
        default_sort="ticker.asc",
        default_order=None,
        sortable=frozenset(
            ("cash_amount", "currency", "declaration_date", "distribution_type", "ex_dividend_date")
            + ("frequency", "historical_adjustment_factor", "id", "pay_date", "record_date")
            + ("split_adjusted_cash_amount", "ticker")
        ),
        tiebreak=(("ticker", False), ("ex_dividend_date", True), ("id", False)),
        marker="id",
        filters={
            **_TICKER_FILTER,
            "ex_dividend_date": ("ex_dividend_date", "date"),
            "frequency": ("frequency", "num"),
            "distribution_type": ("distribution_type", "str"),
        },
    ),
    "/v3/reference/splits": _ListEndpoint(
        kind="splits",
        source=_v3_splits_source,
        default_limit=10,
        max_limit=1000,
        default_sort="execution_date",
        default_order="desc",
        sortable=frozenset(("execution_date", "ticker")),
        tiebreak=(("execution_date", True), *_TIEBREAK_EVENTS),
        marker="id",
        filters={**_TICKER_FILTER, "execution_date": ("execution_date", "date")},
    ),
    "/v3/reference/dividends": _ListEndpoint(
        kind="dividends",
        source=_v3_dividends_source,
        default_limit=10,
        max_limit=1000,
        default_sort="ex_dividend_date",
        default_order="desc",
        sortable=frozenset(
            ("ex_dividend_date", "pay_date", "declaration_date", "record_date", "cash_amount", "ticker")
        ),
        tiebreak=(("ticker", False), ("ex_dividend_date", True), ("id", False)),
        marker="id",
        filters={
            **_TICKER_FILTER,
            **{name: (name, "date") for name in ("ex_dividend_date", "record_date", "declaration_date")},
            "pay_date": ("pay_date", "date"),
            "frequency": ("frequency", "num"),
            "cash_amount": ("cash_amount", "num"),
            "dividend_type": ("dividend_type", "str"),
        },
    ),
}


def _agg_params(query: dict[str, list[str]]) -> dict:
    """adjusted/sort/limit from the query, falling back to the decoded cursor, then defaults."""
    merged: dict[str, str] = {}
    if "cursor" in query:
        try:
            decoded = _unb64(query["cursor"][0])
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise _BadRequest("invalid cursor") from None
        from_cursor = {k: v[0] for k, v in parse_qs(decoded).items()}
        if not from_cursor:
            raise _BadRequest("invalid cursor")
        merged.update(from_cursor)
    merged.update({k: v[0] for k, v in query.items() if k in ("adjusted", "sort", "limit")})
    adjusted = merged.get("adjusted", "true").lower()
    sort = merged.get("sort", "asc").lower()
    if adjusted not in ("true", "false"):
        raise _BadRequest(f"adjusted={adjusted!r}")
    if sort not in ("asc", "desc"):
        raise _BadRequest(f"sort={sort!r}")
    try:
        limit = int(merged.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise _BadRequest("limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return {"adjusted": adjusted == "true", "sort": sort, "limit": limit}


def _grouped_rows(market: SyntheticMarket, defects: Defects, day: dt.date, adjusted: bool) -> list[dict]:
    """Every listing's day bar of `day` as grouped daily sends it (defects applied)."""
    start, end = et_midnight_ms(day), et_midnight_ms(day + dt.timedelta(days=1))  # 23 or 25 h at DST
    stamp = int(dt.datetime.combine(day, dt.time(GROUPED_CLOSE_HOUR), tzinfo=ET).timestamp() * 1000)
    rows = []
    for symbol in market.tickers:
        if (symbol, day) in defects.grouped_left_out:
            continue
        bars = market.day_bars(symbol, start, end, adjusted=adjusted)
        for bar in bars.iter_rows(named=True):
            row = {"T": symbol, **{k: bar[k] for k in RESULT_KEYS if bar[k] is not None}, "t": stamp}
            if (symbol, day) in defects.grouped_changed:
                row["c"] = round(row["c"] * 1.05, 4)
                row["h"] = max(row["h"], row["c"])
            rows.append(row)
    return rows


def _results_json(page: pl.DataFrame) -> bytes:
    """The results array, rendered by polars string ops (no per-bar Python objects).

    Like the API, a key whose value is null is left out (otc appears only when true);
    a 50,000-bar page renders in about 20 ms.
    """
    pieces: list[pl.Expr] = []
    for i, key in enumerate(RESULT_KEYS):
        col, label = pl.col(key), pl.lit(("{" if i == 0 else ",") + f'"{key}":')
        if key == "otc":
            pieces.append(pl.when(col).then(pl.lit(',"otc":true')).otherwise(pl.lit("")))
        elif page[key].null_count():  # only vw and n may be missing
            piece = pl.concat_str(label, col)
            pieces.append(pl.when(col.is_not_null()).then(piece).otherwise(pl.lit("")))
        else:
            pieces.append(pl.concat_str(label, col))
    rows = page.select(pl.concat_str(*pieces, pl.lit("}")).str.join(",")).item()
    return b"[" + rows.encode() + b"]"


def _withheld_body(head: dict[str, object], withheld_as: str) -> bytes:
    """An envelope whose resultsCount promises bars that are not there."""
    if withheld_as == "absent":
        return orjson.dumps(head)
    return orjson.dumps({**head, "results": None if withheld_as == "null" else []})


def _styled_body(
    head: dict[str, object], page: pl.DataFrame, style: ResponseStyle, rng: random.Random
) -> bytes:
    """An aggregates body in the style's layout and key order (per-bar Python objects:
    slower than _results_json, which is why the default never comes here)."""
    bars = [
        {key: bar[key] for key in _key_order(RESULT_KEYS, style, rng) if bar[key] is not None}
        for bar in page.select(RESULT_KEYS).iter_rows(named=True)
    ]
    envelope = {**head, "results": bars} if bars else dict(head)
    envelope = {key: envelope[key] for key in _key_order(list(envelope), style, rng)}
    layout = rng.choice(LAYOUTS) if style.layout == "mixed" else style.layout
    if layout == "spaced":
        return json.dumps(envelope, separators=(", ", ": ")).encode()
    if layout == "pretty":
        return orjson.dumps(envelope, option=orjson.OPT_INDENT_2)
    if layout == "lines" and bars:
        # compact, then the array swapped for one bar per line (results keeps its place)
        compact = orjson.dumps({**envelope, "results": _ROWS_HERE.decode()})
        rows = b"[\n" + b",\n".join(orjson.dumps(bar) for bar in bars) + b"\n]"
        return compact.replace(b'"' + _ROWS_HERE + b'"', rows, 1)
    return orjson.dumps(envelope)


def _key_order(keys: list[str], style: ResponseStyle, rng: random.Random) -> list[str]:
    if not style.shuffle_keys:
        return keys
    shuffled = list(keys)
    rng.shuffle(shuffled)
    return shuffled
