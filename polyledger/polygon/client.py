"""HTTP to the Polygon / Massive REST API: pooled sessions, one shared rate limiter,
retries with jittered exponential backoff, and every failure mapped to an error class."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

import certifi
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from polyledger._version import version
from polyledger.errors import (
    AuthError,
    FetchError,
    NotEntitled,
    PermanentError,
    ProtocolError,
    TransientError,
    one_line,
    status_class,
)
from polyledger.polygon import cores
from polyledger.polygon.breaker import CircuitBreaker
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.secrets import redact

try:  # ISA-L's inflate: the same streams at about half stdlib zlib's CPU (both release the GIL)
    from isal import isal_zlib as _zlib

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _zlib.error)
except ImportError:  # a platform without its wheel: the standard library's
    _zlib = zlib  # type: ignore[assignment]
    _INFLATE_ERRORS = (zlib.error,)

T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.massive.com"
# next_url may point at either name of the service; the key is never sent anywhere else
KNOWN_API_HOSTS = frozenset({"api.massive.com", "api.polygon.io"})


@dataclass(frozen=True)
class RetryPolicy:
    """Per-request retries of transient failures."""

    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based); `rng` for reproducible jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        # "full jitter" between half and all of the exponential step
        step = min(self.max_delay, self.base_delay * (2**retry))
        return step * (rng or random).uniform(0.5, 1.0)


@dataclass(frozen=True)
class Response(Generic[T]):
    body: bytes
    status: int
    request_id: str | None
    decoded: T | None = None  # what `decode` made of the body, when given
    tries: int = 1  # requests sent, retries included
    encoding: str = ""  # the body's Content-Encoding while it is still compressed
    served_at: float | None = None  # the API's clock when it answered (its Date header), epoch s


class Stopped(Exception):
    """The run is stopping; the request was not sent."""


def _inflate_body(data: bytes, encoding: str) -> bytes:
    """A whole body decompressed in one call (urllib3 would gunzip it in small streaming
    chunks, a large share of a page's cost); raises zlib.error for a compressed body cut
    short or garbled."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding in ("gzip", "x-gzip"):
        return _inflate(data, wbits=31)
    if encoding == "deflate":
        try:
            return _inflate(data, wbits=15)
        except zlib.error:  # some servers send a raw deflate stream without the zlib header
            return _inflate(data, wbits=-15)
    raise zlib.error(f"unsupported Content-Encoding {one_line(encoding, 40)!r}")


def _inflate(data: bytes, wbits: int) -> bytes:
    """Every member of a compressed stream (gzip may hold several); zlib.error if the last
    one is cut short or the stream is garbled (whichever library inflated it)."""
    try:
        return _inflate_members(data, wbits)
    except _INFLATE_ERRORS as exc:
        raise zlib.error(str(exc)) from None


def _inflate_members(data: bytes, wbits: int) -> bytes:
    parts = []
    while True:
        stream = _zlib.decompressobj(wbits=wbits)
        parts.append(stream.decompress(data))
        if not stream.eof:
            raise zlib.error("compressed body cut short")
        data = stream.unused_data
        if not data or wbits != 31:
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP-date: back off on our own instead


def _served_at(response: requests.Response) -> float | None:
    """The answer's `Date` header as epoch seconds; None when absent or not a date."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        stamp = email.utils.parsedate_to_datetime(value)
        # an HTTP date is GMT: one written without a zone ("-0000") too
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _request_id(response: requests.Response) -> str | None:
    """The answer's request id: the header, or an error body's `request_id`."""
    found = response.headers.get("X-Request-Id")
    if found is None:
        try:
            found = response.json().get("request_id")
        except (ValueError, AttributeError):
            return None
    return one_line(str(found), 64) if found is not None else None


def _error_text(response: requests.Response) -> str:
    """The error message of a response, redacted before it is cut short (a key cut in two
    is no longer recognised, and its first part would show)."""
    try:
        data = response.json()
        text, limit = data.get("error") or data.get("message") or data.get("status") or "", 160
    except ValueError:
        text, limit = response.text, 80
    return one_line(str(text), limit)


class PolygonClient:
    """Thread-safe: each thread gets its own pooled session; all share one limiter."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        stop: threading.Event | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.breaker = breaker or CircuitBreaker()
        self._local = threading.local()
        self._stats_lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self.requests_sent = 0
        self.errors_by_class: dict[str, int] = {}

    def __repr__(self) -> str:  # never show the key
        return f"PolygonClient(base_url={self.base_url!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=0))
            session.mount("https://", HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=0))
            session.verify = certifi.where()
            session.headers.update(
                {
                    "Authorization": f"Bearer {self._api_key}",
                    "Accept-Encoding": "gzip",
                    "User-Agent": f"polyledger/{version()}",
                }
            )
            self._local.session = session
            with self._stats_lock:
                self._sessions.append(session)
        return session

    def check_url(self, url: str) -> None:
        """Only our API host may receive the key (a next_url elsewhere is a protocol error),
        and the real API only over https."""
        parts = urlsplit(url)
        base = urlsplit(self.base_url)
        same_origin = (parts.scheme, parts.netloc) == (base.scheme, base.netloc)
        known_api = parts.scheme == "https" and parts.netloc in KNOWN_API_HOSTS
        if not (same_origin or known_api):
            raise ProtocolError(
                f"refusing to follow a URL on another host or scheme: {parts.scheme}://{parts.netloc}"
            )

    def _count(self, error_class: str | None, sent: bool = True) -> None:
        with self._stats_lock:
            self.requests_sent += int(sent)
            if error_class:
                self.errors_by_class[error_class] = self.errors_by_class.get(error_class, 0) + 1

    def get(
        self,
        url: str,
        params: dict[str, str] | None = None,
        decode: Callable[[bytes], T] | None = None,
    ) -> Response[T]:
        """GET with retries. Returns a 200 response (with `decode(body)` when given: a body
        that fails to decode is retried like any transient error); raises FetchError
        subclasses otherwise.

        With `decode`, a 200's body is inflated and decoded in one of `cores.PAGE_WORK`'s
        slots (one per core): until then a worker holds its page compressed, some 5x
        smaller, however many workers wait for a core (16 workers held about 60 MB of
        inflated pages waiting)."""
        self.check_url(url)
        retry = 0
        while True:
            self._local.answer = (None, None)  # the HTTP status and request id of this try
            cores.PAGE_WORK.release_kept()  # never wait for the limit or the network holding a core
            try:
                response = self._get_once(url, params, keep_compressed=decode is not None)
                body, decoded = response.body, None
                if decode is not None:
                    with cores.PAGE_WORK.slot():
                        body, decoded = self._decoded(body, response.encoding, decode)
                self.breaker.record(True)
                return Response(
                    body,
                    response.status,
                    response.request_id,
                    decoded,
                    retry + 1,
                    served_at=response.served_at,
                )
            except TransientError as exc:
                if retry >= self.retry.max_retries:
                    raise
                delay = self.retry.delay(retry, exc.retry_after)
                status, request_id = self._local.answer
                log.info(
                    "request retried: class=%s status=%s request_id=%s attempt=%d delay=%.2fs",
                    exc.error_class,
                    status or "-",
                    request_id or "-",
                    retry + 1,
                    delay,
                )
                if self.stop.wait(delay):
                    raise Stopped() from None
                retry += 1

    def _decoded(self, body: bytes, encoding: str, decode: Callable[[bytes], T]) -> tuple[bytes, T]:
        """A 200's body inflated and decoded; a body cut short or undecodable is a transient
        error (counted, and a failure for the breaker)."""
        try:
            try:
                body = _inflate_body(body, encoding)
            except zlib.error as exc:
                raise TransientError(
                    f"body cut short: {type(exc).__name__}", error_class="truncated"
                ) from None
            return body, decode(body)
        except TransientError as exc:
            self._count(exc.error_class, sent=False)
            self.breaker.record(False)
            raise

    def _get_once(
        self, url: str, params: dict[str, str] | None, keep_compressed: bool = False
    ) -> Response[None]:
        """One request. A 200 is returned undecided for the breaker (the body may still be
        garbage), compressed if `keep_compressed`; every other outcome tells the breaker itself."""
        self.breaker.before_request(self.stop)
        try:
            return self._send(url, params, keep_compressed)
        except TransientError as exc:
            if exc.error_class == "http_429":
                self.breaker.abandon()
            else:
                self.breaker.record(False)
            raise
        except FetchError:
            self.breaker.record(True)  # a 4xx answer: the API is up
            raise
        except BaseException:
            self.breaker.abandon()
            raise

    def _send(self, url: str, params: dict[str, str] | None, keep_compressed: bool = False) -> Response[None]:
        if not self.limiter.acquire(self.stop):
            raise Stopped()
        try:
            response = self._session().get(url, params=params, timeout=self.timeout, stream=True)
            with response:  # the connection goes back to the pool, or is dropped on a failure
                body = response.raw.read(decode_content=False)  # whole: a transfer cut short raises
                encoding = response.headers.get("Content-Encoding", "")
                if not (keep_compressed and response.status_code == 200):
                    body, encoding = _inflate_body(body, encoding), ""  # a garbled one raises
                    response._content = body  # what .json() and .text read on the error paths
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as exc:
            self._fail("timeout", f"request timed out: {type(exc).__name__}")
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.IncompleteRead,
            urllib3.exceptions.DecodeError,
            zlib.error,
        ) as exc:
            self._fail("truncated", f"body cut short: {type(exc).__name__}")
        except urllib3.exceptions.HTTPError as exc:  # anything else the read raised (TLS, ...)
            self._fail("connection", f"connection failed: {type(exc).__name__}")
        except requests.exceptions.ConnectionError as exc:
            self._fail("connection", f"connection failed: {type(exc).__name__}")
        except requests.exceptions.RequestException as exc:
            self._fail("connection", f"request failed: {type(exc).__name__}")
        status = response.status_code
        request_id = response.headers.get("X-Request-Id")
        self._local.answer = (status, request_id if status == 200 else _request_id(response))
        if status == 200:
            self._count(None)
            self.limiter.on_success()
            return Response(
                body=body,
                status=status,
                request_id=request_id,
                encoding=encoding,
                served_at=_served_at(response),
            )
        message = redact(_error_text(response))
        if status == 429:
            retry_after = _retry_after(response)
            self.limiter.on_throttled(retry_after)
            self._fail("http_429", f"rate limited: {message}", status, retry_after)
        if status >= 500:
            self._fail(status_class(status), f"server error {status}: {message}", status)
        if status == 401 or (status == 400 and "api key" in message.lower()):
            self._count("auth")
            raise AuthError(f"the API key was refused ({status}: {message}); check POLYGON_API_KEY")
        cls = NotEntitled if status == 403 else PermanentError
        error_class = status_class(status)
        self._count(error_class)
        raise cls(f"HTTP {status}: {message}", error_class=error_class, http_status=status)

    def _fail(
        self, error_class: str, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self._count(error_class)
        raise TransientError(
            redact(message), error_class=error_class, http_status=status, retry_after=retry_after
        )

    def close(self) -> None:
        with self._stats_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


__all__ = ["DEFAULT_BASE_URL", "FetchError", "PolygonClient", "Response", "RetryPolicy", "Stopped"]
