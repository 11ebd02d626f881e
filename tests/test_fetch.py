"""Fetching over real HTTP from a server on 127.0.0.1: limits, redirects, types and the address guard."""

from __future__ import annotations

import gzip
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.errors import RagError
from rag.fetch import fetch, is_public_address

_ENDLESS_LIMIT = 64 * 1024 * 1024  # an "endless" body still stops here, so no test can run away
LOOPBACK = ipaddress.ip_address("127.0.0.1")


@dataclass
class Route:
    """What the server answers on one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})
    delay: float = 0.0  # seconds to wait before answering (cut short when the test ends)
    send_length: bool = True
    endless: bool = False  # keep sending until the client hangs up


class LocalServer:
    """A threaded http.server on 127.0.0.1 serving `routes`, recording each request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.released = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self.httpd.server_address[1]
        # A short poll interval keeps shutdown (and so each test's teardown) quick.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes | str = b"", **options) -> str:
        """Serve `body` on `path` (options as in Route) and return the URL."""
        content = body.encode("utf-8") if isinstance(body, str) else body
        if "content_type" in options:
            options["headers"] = {"Content-Type": options.pop("content_type"), **options.get("headers", {})}
        self.routes[path] = Route(body=content, **options)
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.add(path, status=status, headers={"Location": location})


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            server.requests.append((self.path, dict(self.headers)))
            route = server.routes.get(self.path, Route(b"not found", status=404))
            if route.delay:
                server.released.wait(route.delay)
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.send_length and not route.endless:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self._send_body(route)

        def _send_body(self, route: Route) -> None:
            try:
                if not route.endless:
                    self.wfile.write(route.body)
                    return
                piece, sent = b"x" * 65536, 0
                while sent < _ENDLESS_LIMIT and not server.released.is_set():
                    self.wfile.write(piece)
                    sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, which is what the size cap should do

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    """A started LocalServer, shut down (and any waiting handler released) after the test."""
    local = LocalServer()
    local.thread.start()
    yield local
    local.released.set()
    local.httpd.shutdown()
    local.httpd.server_close()
    local.thread.join(timeout=5)


class ConnectGuard:
    """Records every socket connect; fails the test on any address outside `allowed`."""

    def __init__(self) -> None:
        self.allowed: set[str] = set()
        self.attempts: list[object] = []

    def check(self, address: object) -> None:
        self.attempts.append(address)
        host = address[0] if isinstance(address, tuple) else address
        if host not in self.allowed:
            pytest.fail(f"a connection to {address!r} was attempted")


@pytest.fixture
def connect_guard(monkeypatch):
    """Patch socket.socket.connect so that connecting anywhere not allowed fails the test."""
    guard = ConnectGuard()
    original = socket.socket.connect

    def connect(sock, address):
        guard.check(address)
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return guard


@pytest.fixture
def fetch_settings(settings):
    """Short limits; private addresses allowed so the local server can be reached."""
    return settings.replace(fetch_timeout=1.0, max_fetch_bytes=100_000, max_redirects=5,
                            allow_private_urls=True)


def loopback_counts_as_public(ip) -> bool:
    """An address policy for tests: the local server's 127.0.0.1 passes, everything else as in production."""
    return ip == LOOPBACK or is_public_address(ip)


ARTICLE = "<html><head><title>Hello</title></head><body><p>Hello from the test server.</p></body></html>"


# -- the happy path --------------------------------------------------------------------------------


def test_fetch_returns_body_type_and_headers(server, fetch_settings):
    url = server.add("/page", ARTICLE, headers={"Content-Type": "text/html; charset=utf-8", "X-Test": "yes"})
    page = fetch(url, fetch_settings)
    assert page.final_url == url
    assert page.status == 200
    assert page.content_type == "text/html"
    assert page.kind == "html"
    assert page.body == ARTICLE.encode()
    assert page.headers["x-test"] == "yes"
    assert server.requests[0][1]["Host"] == f"127.0.0.1:{server.port}"


def test_pdf_and_plain_text_are_accepted(server, fetch_settings):
    pdf = fetch(server.add("/doc", b"%PDF-1.4 ...", content_type="application/pdf"), fetch_settings)
    text = fetch(server.add("/notes", "plain words", content_type="text/plain; charset=utf-8"), fetch_settings)
    assert (pdf.kind, text.kind) == ("pdf", "text")


def test_pdf_served_as_octet_stream_is_recognised_by_its_magic_bytes(server, fetch_settings):
    url = server.add("/file", b"%PDF-1.7\n...", content_type="application/octet-stream")
    assert fetch(url, fetch_settings).kind == "pdf"


def test_gzip_body_sent_despite_identity_is_decompressed(server, fetch_settings):
    url = server.add("/zipped", gzip.compress(ARTICLE.encode()),
                     headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    assert fetch(url, fetch_settings).body == ARTICLE.encode()


def test_compressed_body_is_capped_after_decompression(server, fetch_settings):
    url = server.add("/bomb", gzip.compress(b"x" * 1_000_000),
                     headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})
    with pytest.raises(RagError, match="limit once decompressed"):
        fetch(url, fetch_settings)


# -- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_name_the_url_and_status(server, fetch_settings, status):
    url = server.add("/broken", "nope", status=status)
    with pytest.raises(RagError, match=f"HTTP {status}") as caught:
        fetch(url, fetch_settings)
    assert url in str(caught.value)


def test_slow_server_times_out(server, fetch_settings):
    url = server.add("/slow", ARTICLE, delay=10)
    with pytest.raises(RagError, match="Timed out") as caught:
        fetch(url, fetch_settings.replace(fetch_timeout=0.5))
    assert url in str(caught.value)


def test_declared_length_over_the_cap_is_refused(server, fetch_settings):
    url = server.add("/big", b"x" * 200_000)
    with pytest.raises(RagError, match="100,000-byte limit"):
        fetch(url, fetch_settings)


def test_endless_body_without_length_stops_at_the_cap(server, fetch_settings):
    url = server.add("/stream", endless=True)
    with pytest.raises(RagError, match="over the 100,000-byte limit"):
        fetch(url, fetch_settings)


def test_redirect_chain_is_followed(server, fetch_settings):
    server.redirect("/r1", "/r2", status=301)
    server.redirect("/r2", server.url("/r3"), status=307)
    server.redirect("/r3", "final")
    final = server.add("/final", ARTICLE)
    page = fetch(server.url("/r1"), fetch_settings)
    assert page.final_url == final
    assert page.body == ARTICLE.encode()


def test_redirect_loop_is_reported(server, fetch_settings):
    server.redirect("/a", "/b")
    server.redirect("/b", "/a")
    with pytest.raises(RagError, match="loop"):
        fetch(server.url("/a"), fetch_settings)


def test_too_many_redirects_are_refused(server, fetch_settings):
    for i in range(10):
        server.redirect(f"/hop{i}", f"/hop{i + 1}")
    with pytest.raises(RagError, match="more than 3 times"):
        fetch(server.url("/hop0"), fetch_settings.replace(max_redirects=3))
    assert len(server.requests) == 4  # the first request and three redirects followed


def test_redirect_without_location_is_an_error(server, fetch_settings):
    url = server.add("/nowhere", status=302, headers={})
    with pytest.raises(RagError, match="HTTP 302"):
        fetch(url, fetch_settings)


def test_unsupported_content_type_is_refused(server, fetch_settings):
    url = server.add("/image", b"\x89PNG\r\n", content_type="image/png")
    with pytest.raises(RagError, match="image/png, which can't be loaded; supported: HTML, plain text and PDF"):
        fetch(url, fetch_settings)


def test_connection_refused_is_reported(fetch_settings):
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RagError, match="Could not connect"):
        fetch(f"http://127.0.0.1:{port}/", fetch_settings)


def test_unresolvable_host_is_reported(fetch_settings, connect_guard):
    def no_such_host(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(RagError, match="Could not resolve the host of http://no-such-host.example/"):
        fetch("http://no-such-host.example/", fetch_settings, resolver=no_such_host)
    assert connect_guard.attempts == []


@pytest.mark.parametrize("url", ["ftp://example.com/file", "file:///etc/passwd", "javascript:alert(1)",
                                 "http://", "http://example.com:99999/", "example.com/page"])
def test_bad_urls_are_refused_before_any_connection(url, fetch_settings, connect_guard):
    with pytest.raises(RagError):
        fetch(url, fetch_settings)
    assert connect_guard.attempts == []


# -- the private-address guard --------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost/", "http://10.0.0.1/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
    "http://[fd00::1]/", "http://[fe80::1]/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",  # 127.0.0.1 written as one number
])
def test_private_addresses_are_refused_without_connecting(url, fetch_settings, connect_guard):
    with pytest.raises(RagError, match="Refusing to fetch .*private or local address"):
        fetch(url, fetch_settings.replace(allow_private_urls=False))
    assert connect_guard.attempts == []


def test_hostname_resolving_to_loopback_is_refused(monkeypatch, fetch_settings, connect_guard):
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host == "intranet.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(RagError, match=r"intranet\.example is a private or local address \(127\.0\.0\.1\)"):
        fetch("http://intranet.example/", fetch_settings.replace(allow_private_urls=False))
    assert connect_guard.attempts == []


def test_host_with_any_private_address_is_refused(fetch_settings, connect_guard):
    def mixed(host, port):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    with pytest.raises(RagError, match="10.1.2.3"):
        fetch("http://mixed.example/", fetch_settings.replace(allow_private_urls=False), resolver=mixed)
    assert connect_guard.attempts == []


def test_redirect_from_an_allowed_url_to_a_private_one_is_refused(server, fetch_settings, connect_guard):
    connect_guard.allowed.add("127.0.0.1")  # the test server stands in for a public site
    start = server.redirect("/go", "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(RagError, match=r"Refusing to fetch http://169\.254\.169\.254/latest/meta-data/"):
        fetch(start, fetch_settings.replace(allow_private_urls=False), is_allowed=loopback_counts_as_public)
    assert connect_guard.attempts == [("127.0.0.1", server.port)]


def test_connection_goes_to_the_checked_address_even_if_dns_changes(monkeypatch, server, fetch_settings,
                                                                    connect_guard):
    """DNS rebinding: a second lookup would say 10.0.0.1, but only the first (checked) answer is used."""
    connect_guard.allowed.add("127.0.0.1")
    answers = iter(["127.0.0.1"] + ["10.0.0.1"] * 5)
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    server.add("/page", ARTICLE)
    url = f"http://rebind.example:{server.port}/page"
    page = fetch(url, fetch_settings.replace(allow_private_urls=False), is_allowed=loopback_counts_as_public)
    assert page.body == ARTICLE.encode()
    assert server.requests[0][1]["Host"] == f"rebind.example:{server.port}"
    assert connect_guard.attempts == [("127.0.0.1", server.port)]


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.0.0.1", False),
    ("172.31.255.255", False), ("192.168.0.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("255.255.255.255", False), ("::1", False), ("::", False),
    ("fc00::1", False), ("fe80::1", False), ("fec0::1", False), ("ff02::1", False),
    ("::ffff:10.0.0.1", False), ("2002:a00:1::", False),  # IPv4-mapped and 6to4 wrappers of 10.0.0.1
    # NAT64 carries the IPv4 address it reaches: judged by that address, public ones included.
    ("64:ff9b::808:808", True), ("64:ff9b::7f00:1", False), ("64:ff9b::a00:1", False),
    ("64:ff9b::a9fe:a9fe", False), ("64:ff9b::c0a8:101", False), ("64:ff9b:1::808:808", False),
    ("::ffff:8.8.8.8", True), ("2002:808:808::1", True), ("::a00:1", False), ("::808:808", False),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
])
def test_address_policy(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize("wrapped, inner", [
    ("64:ff9b::7f00:1", "127.0.0.1"), ("64:ff9b::a9fe:a9fe", "169.254.169.254"), ("64:ff9b::a00:1", "10.0.0.1"),
    ("::ffff:127.0.0.1", "127.0.0.1"), ("2002:c0a8:101::1", "192.168.1.1"), ("::7f00:1", "127.0.0.1"),
])
def test_ipv6_wrappers_of_private_addresses_are_refused_naming_what_they_carry(wrapped, inner, fetch_settings,
                                                                               connect_guard):
    def dns64(host, port):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (wrapped, port, 0, 0))]

    shown = re.escape(f"({ipaddress.ip_address(wrapped)}, which carries {inner})")
    with pytest.raises(RagError, match=rf"private or local address {shown}"):
        fetch("http://synthesised.example/", fetch_settings.replace(allow_private_urls=False), resolver=dns64)
    assert connect_guard.attempts == []


def test_nat64_literal_of_the_metadata_address_is_refused_without_connecting(fetch_settings, connect_guard):
    with pytest.raises(RagError, match="carries 169.254.169.254"):
        fetch("http://[64:ff9b::169.254.169.254]/latest/meta-data/", fetch_settings.replace(allow_private_urls=False))
    assert connect_guard.attempts == []


# -- one deadline for the whole fetch ----------------------------------------------------------------


class DripServer:
    """A raw TCP server on 127.0.0.1 that answers every connection with `response`: the first `at_once`
    bytes at once, then one byte a second; it notes how far it got and whether the client hung up."""

    def __init__(self, response: bytes, at_once: int = 0):
        self.response, self.at_once = response, at_once
        self.sent: list[int] = []  # bytes sent on each connection before it ended
        self.hung_up = threading.Event()
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.recv(65536)
                sent = self.at_once
                try:
                    conn.sendall(self.response[:sent])
                    for byte in self.response[sent:]:
                        if self.stop.wait(1.0):
                            break
                        conn.sendall(bytes([byte]))
                        sent += 1
                except OSError:  # the client closed the connection
                    self.sent.append(sent)
                    self.hung_up.set()
                else:
                    self.sent.append(sent)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def drip():
    servers: list[DripServer] = []

    def start(response: bytes, at_once: int = 0) -> DripServer:
        servers.append(DripServer(response, at_once))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


PAGE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n\r\n"
PAGE_BODY = b"The tide turns twice a day at the harbour"[:40]


def test_a_server_dripping_its_headers_a_byte_a_second_is_cut_off_at_the_deadline(drip, fetch_settings):
    """Each byte comes well within the socket timeout, so only an overall deadline can stop the fetch."""
    server = drip(PAGE_HEAD + PAGE_BODY)  # whole after about 100 s
    url = f"http://127.0.0.1:{server.port}/"
    with pytest.raises(RagError, match=r"^Timed out fetching http://127\.0\.0\.1:\d+/; try again later"):
        fetch(url, fetch_settings.replace(fetch_timeout=2.0))
    assert server.hung_up.wait(10), "the fetch let go of its connection"
    assert server.sent[0] < len(PAGE_HEAD)


def test_a_server_dripping_its_body_a_byte_a_second_is_cut_off_at_the_deadline(drip, fetch_settings):
    server = drip(PAGE_HEAD + PAGE_BODY, at_once=len(PAGE_HEAD))  # the headers at once, then the body drips
    with pytest.raises(RagError, match="Timed out fetching"):
        fetch(f"http://127.0.0.1:{server.port}/", fetch_settings.replace(fetch_timeout=2.0))
    assert server.hung_up.wait(10), "the fetch let go of its connection"
    assert len(PAGE_HEAD) <= server.sent[0] < len(PAGE_HEAD) + len(PAGE_BODY)


def test_the_deadline_spans_redirects(server, fetch_settings):
    """Three hops of 0.6 s each pass a 1.5 s deadline although every single hop is within it."""
    end = server.add("/end", ARTICLE, delay=0.6)
    middle = server.add("/middle", status=302, headers={"Location": end}, delay=0.6)
    start = server.add("/start", status=302, headers={"Location": middle}, delay=0.6)
    with pytest.raises(RagError, match="Timed out fetching"):
        fetch(start, fetch_settings.replace(fetch_timeout=1.5))


def test_dns_that_does_not_answer_is_cut_off_at_the_deadline(server, fetch_settings, connect_guard):
    connect_guard.allowed.add("127.0.0.1")
    url = server.add("/page", ARTICLE)
    answered = threading.Event()

    def slow_dns(host, port):
        server.released.wait(30)  # released when the test ends
        answered.set()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with pytest.raises(RagError, match="Timed out fetching http://slow-dns.example"):
        fetch(url.replace("127.0.0.1", "slow-dns.example"), fetch_settings.replace(fetch_timeout=1.0),
              resolver=slow_dns)
    assert not answered.is_set() and connect_guard.attempts == []


@pytest.fixture
def unanswered_port():
    """A port on 127.0.0.1 whose listen queue is full, so a new connection waits without an answer."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip("this kernel accepts connections beyond a full listen queue")
    yield port
    for sock in fillers:
        sock.close()
    listener.close()


def test_trying_several_addresses_shares_one_deadline(unanswered_port, fetch_settings, connect_guard):
    """Four addresses that never answer: the old loop waited four timeouts, one per address."""
    connect_guard.allowed.add("127.0.0.1")

    def four_addresses(host, port):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", unanswered_port))] * 4

    with pytest.raises(RagError, match="Timed out"):
        fetch("http://many.example/", fetch_settings.replace(fetch_timeout=1.0), resolver=four_addresses)
    assert 1 <= len(connect_guard.attempts) < 4
