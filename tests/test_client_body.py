"""How the client reads a body (`polygon/client.py`): whole, then decompressed in one call.
Every member of a gzip stream is kept, a compressed body cut short is a transient
`truncated` error (never a shorter page), a plain body passes as it is, and reading this
way still leaves the connection open for the next request."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import API_KEY

try:
    from isal import isal_zlib
except ImportError:
    isal_zlib = None

from polyledger.errors import TransientError
from polyledger.polygon import client as client_module
from polyledger.polygon import cores
from polyledger.polygon.client import PolygonClient, RetryPolicy
from polyledger.polygon.cores import CoreSlots
from polyledger.polygon.ratelimit import RateLimiter
from polyledger.testing import Listing, StandInServer, SyntheticMarket

TEXT = b'{"status":"OK","results":[' + b",".join(b'{"t":%d}' % i for i in range(2000)) + b"]}"
GZIPPED = gzip.compress(TEXT)
BODIES = {  # path -> (Content-Encoding, body)
    "/plain": ("", TEXT),
    "/gzip": ("gzip", GZIPPED),
    "/two-members": ("gzip", gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:])),
    "/cut": ("gzip", GZIPPED[: len(GZIPPED) // 2]),  # a whole HTTP body, half a gzip stream
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        encoding, body = BODIES[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def client_of(url: str) -> PolygonClient:
    return PolygonClient(API_KEY, base_url=url, limiter=RateLimiter(1000.0), retry=RetryPolicy(max_retries=0))


@pytest.mark.parametrize("path", ["/plain", "/gzip", "/two-members"])
def test_a_body_is_the_whole_decompressed_text(base_url, path):
    client = client_of(base_url)
    try:
        assert client.get(f"{base_url}{path}").body == TEXT
    finally:
        client.close()


def test_a_gzip_body_cut_short_is_a_transient_truncated_error(base_url):
    client = client_of(base_url)
    try:
        with pytest.raises(TransientError) as caught:
            client.get(f"{base_url}/cut")
        assert caught.value.error_class == "truncated"
    finally:
        client.close()


def test_reading_whole_bodies_keeps_the_connection_for_the_next_request():
    market = SyntheticMarket([Listing("AAA", bars_per_day=400)], seed=1)
    with StandInServer(market, api_keys=(API_KEY,)) as server:
        client = client_of(server.url)
        try:
            url = f"{server.url}/v2/aggs/ticker/AAA/range/1/minute/2024-03-01/2024-03-08"
            for _ in range(5):
                response = client.get(url, {"limit": "50000"})
                assert response.body.startswith(b"{")  # gzip-compressed on the wire, text here
        finally:
            client.close()
        assert server.stats.snapshot()["connections"] == 1


INFLATERS = {"stdlib": zlib}
if isal_zlib is not None:
    INFLATERS["isal"] = isal_zlib


@pytest.mark.parametrize("name", list(INFLATERS))
def test_either_inflater_reads_every_encoding_and_fails_as_zlib_error(monkeypatch, name):
    """ISA-L inflates when installed, the standard library otherwise: the same text from
    either, every gzip member kept, and a stream cut short or garbled is zlib.error (what
    the client maps to `truncated`) whichever library read it."""
    module = INFLATERS[name]
    monkeypatch.setattr(client_module, "_zlib", module)
    monkeypatch.setattr(client_module, "_INFLATE_ERRORS", (zlib.error, module.error))
    raw_deflate = zlib.compressobj(wbits=-15)
    deflated = raw_deflate.compress(TEXT) + raw_deflate.flush()
    assert client_module._inflate(BODIES["/two-members"][1], wbits=31) == TEXT
    assert client_module._inflate(zlib.compress(TEXT), wbits=15) == TEXT
    assert client_module._inflate(deflated, wbits=-15) == TEXT
    garbled = GZIPPED[:10] + b"\xff" * 50  # a whole gzip header, then no valid deflate block
    for broken in (GZIPPED[: len(GZIPPED) // 2], garbled):
        with pytest.raises(zlib.error):
            client_module._inflate(broken, wbits=31)


def test_isa_l_inflates_when_installed():
    """The project depends on isal (pyproject): where its wheel installed, it is the one used."""
    assert isal_zlib is not None and client_module._zlib is isal_zlib


def _taken(gate: threading.BoundedSemaphore) -> bool:
    free = gate.acquire(blocking=False)
    if free:
        gate.release()
    return not free


def test_a_page_stays_compressed_until_the_gate_and_is_inflated_and_decoded_inside_it(base_url, monkeypatch):
    """With `decode`, a 200's body is inflated and decoded in a `cores.PAGE_WORK` slot (one per core):
    a worker waiting for a core holds its page compressed. The gate is given back after,
    also when the body was cut short (then a transient `truncated`, counted once)."""
    slots = CoreSlots(1)
    gate = slots._slots
    monkeypatch.setattr(cores, "PAGE_WORK", slots)
    seen: list[tuple] = []
    inflate = client_module._inflate_body

    def watched_inflate(data: bytes, encoding: str) -> bytes:
        seen.append(("inflate", encoding, _taken(gate)))
        return inflate(data, encoding)

    def decode(body: bytes) -> int:
        seen.append(("decode", body == TEXT, _taken(gate)))
        return len(body)

    monkeypatch.setattr(client_module, "_inflate_body", watched_inflate)
    client = client_of(base_url)
    try:
        response = client.get(f"{base_url}/gzip", decode=decode)
        assert (response.decoded, response.body) == (len(TEXT), TEXT)
        assert seen == [("inflate", "gzip", True), ("decode", True, True)]  # still gzip at the gate
        assert not _taken(gate)
        seen.clear()
        with pytest.raises(TransientError) as caught:
            client.get(f"{base_url}/cut", decode=decode)
        assert caught.value.error_class == "truncated"
        assert seen == [("inflate", "gzip", True)] and not _taken(gate)
        assert client.errors_by_class == {"truncated": 1} and client.requests_sent == 2
    finally:
        client.close()
