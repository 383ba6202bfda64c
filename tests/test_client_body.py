"""How the client reads a body (`polygon/client.py`): whole, then decompressed in one call.
Every member of a gzip stream is kept, a compressed body cut short is a transient
`truncated` error (never a shorter page), a plain body passes as it is, and reading this
way still leaves the connection open for the next request."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import API_KEY

from polyledger.errors import TransientError
from polyledger.polygon.client import PolygonClient, RetryPolicy
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
