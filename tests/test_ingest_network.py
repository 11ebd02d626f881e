"""URL sources that fail or must be refused, through `Collection.ingest`: the index is left unchanged.

Faults come from a real HTTP server on 127.0.0.1 (slow, reset, redirect loop, 50 MB). The
private-address cases run with every socket connect and every name lookup guarded, so a bug fails the
test instead of sending a packet anywhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag import fetch as fetch_module
from rag.collection import Collection
from rag.documents import Document
from rag.fetch import is_public_address

MB = 1024 * 1024
ARTICLE = ("<html><head><title>Tides</title></head><body><article><p>The moon pulls the sea into two bulges, "
           "and the earth turns beneath them, so most coasts see two high tides a day.</p></article></body></html>")


class FaultyHandler(BaseHTTPRequestHandler):
    """Answers by path: /ok, /slow, /reset, /reset-mid-body, /loop-a <-> /loop-b, /huge-declared, /huge-stream."""

    released: threading.Event  # set by the fixture when the test ends

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path
        if path == "/ok":
            self._send(200, ARTICLE.encode(), {"Content-Type": "text/html; charset=utf-8"})
        elif path == "/slow":
            self.released.wait(10)  # longer than the fetch timeout; cut short when the test ends
            self._send(200, ARTICLE.encode(), {"Content-Type": "text/html"})
        elif path == "/reset":
            self._reset()
        elif path == "/reset-mid-body":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(ARTICLE.encode())
            self.wfile.flush()
            self._reset()
        elif path in ("/loop-a", "/loop-b"):
            self._send(302, b"", {"Location": "/loop-b" if path == "/loop-a" else "/loop-a"})
        elif path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(50 * MB))
            self.end_headers()
            self._stream(50 * MB)
        elif path == "/huge-stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self._stream(50 * MB)
            self.close_connection = True
        elif path == "/to-metadata":
            self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, size: int) -> None:
        """Up to `size` bytes of words, stopping when the client hangs up."""
        piece, sent = b"tide " * 13107, 0
        try:
            while sent < size and not self.released.is_set():
                self.wfile.write(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _reset(self) -> None:
        """Close with SO_LINGER 0, so the client gets a TCP reset rather than an orderly end."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def base_url():
    released = threading.Event()
    handler = type("Handler", (FaultyHandler,), {"released": released})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    released.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def coll(settings):
    """A collection holding one document, fetching with short limits (20 MB cap, as by default)."""
    c = Collection.open(settings.replace(fetch_timeout=1.0, allow_private_urls=True))
    c.add_documents([Document("mem://cats", "Cats purr when they are content.", "Cats")])
    yield c
    c.store.close()


def state(coll: Collection) -> tuple:
    return ([(d.source, d.content_hash, d.chunks) for d in coll.documents()], coll.store.generation(),
            coll.store.integrity_problems())


def only_failure(report, url: str) -> str:
    """The one error sentence for `url`, after checking that nothing else happened."""
    assert (report.documents_added, report.documents_replaced, report.chunks_added) == (0, 0, 0)
    assert [r.source for r in report.results] == [url] and report.results[0].status == "failed"
    error = report.errors[0]["error"]
    assert "\n" not in error
    return error


# -- a server that misbehaves -----------------------------------------------------------------------


@pytest.mark.parametrize("path, message", [
    ("/slow", r"^Timed out fetching .*; try again later or raise the fetch timeout\.$"),
    ("/reset", r"^Connection to .* failed \((ConnectionResetError|RemoteDisconnected|BadStatusLine)\)"),
    ("/reset-mid-body", r"^Connection to .* failed \((ConnectionResetError|IncompleteRead)\)"),
    ("/loop-a", r"redirects in a loop \(back to .*/loop-a\); use the final address directly\.$"),
    ("/huge-declared", r"is 52,428,800 bytes, over the 20,971,520-byte limit"),
    ("/huge-stream", r"is over the 20,971,520-byte limit; download it and load the file, or raise the limit\.$"),
])
def test_server_faults_fail_the_source_and_leave_the_index_unchanged(coll, base_url, path, message):
    before = state(coll)
    url = base_url + path
    error = only_failure(coll.ingest([url]), url)
    assert url in error and re.search(message, error), error
    assert state(coll) == before


def test_a_failing_url_does_not_stop_the_others(coll, base_url):
    report = coll.ingest([base_url + "/reset", base_url + "/ok", base_url + "/loop-a"])
    assert {r.source.rsplit("/", 1)[1]: r.status for r in report.results} == {
        "reset": "failed", "ok": "added", "loop-a": "failed"}
    assert coll.search("why are there two high tides?", k=1)[0].source == base_url + "/ok"
    assert coll.store.integrity_problems() == []


# -- private addresses, with connect and name lookup guarded ----------------------------------------------


class NetworkGuard:
    """Stands in for socket.connect and getaddrinfo: allowed loopback connects pass, anything else fails."""

    def __init__(self) -> None:
        self.connects: list[object] = []
        self.lookups: list[str] = []
        self.allowed_connects: set[str] = set()
        # Names this test may look up, and what they "resolve" to; numeric hosts are parsed, never looked up.
        self.names = {"localhost": ["127.0.0.1", "::1"], "intranet.example": ["127.0.0.1"]}


@pytest.fixture
def guard(monkeypatch):
    net = NetworkGuard()
    real_connect = socket.socket.connect

    def connect(sock, address):
        net.connects.append(address)
        if not (isinstance(address, tuple) and address[0] in net.allowed_connects):
            pytest.fail(f"a connection to {address!r} was attempted")
        return real_connect(sock, address)

    def connect_ex(sock, address):
        pytest.fail(f"connect_ex to {address!r} was attempted")

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        net.lookups.append(host)
        try:
            ips = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            if host not in net.names:
                pytest.fail(f"a name lookup of {host!r} was attempted")
            ips = net.names[host]
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port, 0, 0) if ":" in ip else (ip, port)) for ip in ips]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return net


@pytest.fixture
def guarded(settings):
    """A collection with one document that refuses private URLs (nothing fetched to build it)."""
    c = Collection.open(settings.replace(allow_private_urls=False, fetch_timeout=1.0))
    c.add_documents([Document("mem://cats", "Cats purr when they are content.", "Cats")])
    yield c
    c.store.close()


@pytest.mark.parametrize("url, address", [
    ("http://127.0.0.1/", "127.0.0.1"),
    ("http://localhost:8080/admin", "127.0.0.1"),
    ("http://10.0.0.1/", "10.0.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://[::1]/", "::1"),
    ("https://intranet.example/wiki", "127.0.0.1"),  # a name that resolves to loopback
])
def test_private_urls_are_refused_before_any_connection(guarded, guard, url, address):
    before = state(guarded)
    error = only_failure(guarded.ingest([url]), url)
    assert error.startswith(f"Refusing to fetch {url}:") and f"private or local address ({address})" in error
    assert guard.connects == []
    assert state(guarded) == before


def test_redirect_from_an_allowed_url_to_a_private_one_is_refused(guarded, guard, base_url, monkeypatch):
    # The local server stands in for a public site: loopback counts as public, nothing else changes.
    loopback = ipaddress.ip_address("127.0.0.1")
    monkeypatch.setitem(fetch_module.fetch.__kwdefaults__, "is_allowed",
                        lambda ip: ip == loopback or is_public_address(ip))
    guard.allowed_connects.add("127.0.0.1")
    before = state(guarded)
    url = base_url + "/to-metadata"
    error = only_failure(guarded.ingest([url]), url)
    assert error.startswith("Refusing to fetch http://169.254.169.254/latest/meta-data/")
    assert guard.connects == [("127.0.0.1", int(base_url.rsplit(":", 1)[1]))]
    assert state(guarded) == before
