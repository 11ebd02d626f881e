"""Safe HTTP fetch: one deadline, size cap, checked redirects, content type, private-address guard.

Each hop resolves its host once, checks every address, then connects to a checked address, so
a second DNS answer (rebinding) can't steer the connection somewhere that wasn't checked.
The fetch timeout is one deadline for the whole fetch, from the first DNS lookup to the last
byte of the last redirect: a server that drips a byte a second cannot hold the ingest for longer.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote, urljoin, urlsplit

from rag.errors import RagError
from rag.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, type, proto, canonname, sockaddr) as socket.getaddrinfo returns them.
AddrInfo = tuple

ACCEPTED_TYPES = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "text/markdown": "text",
    "application/pdf": "pdf",
}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
USER_AGENT = "local-rag/0.1 (+document loader)"
_ACCEPT = "text/html,application/xhtml+xml,application/pdf,text/plain;q=0.9,*/*;q=0.1"
_CHUNK = 64 * 1024
# NAT64 (RFC 6052): the well-known prefix carries an IPv4 address in its last 32 bits; the
# local-use prefix (RFC 8215) translates into whatever the local network decides, so it is refused.
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


@dataclass
class FetchResult:
    """What a successful fetch returns; `kind` is html, text or pdf."""

    final_url: str
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "html"


@dataclass
class _Target:
    """One hop's parsed URL."""

    url: str
    scheme: str
    host: str
    port: int
    path: str


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped, 6to4, NAT64, Teredo, IPv4-compatible."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)  # (server, client)
    if ip in NAT64_WELL_KNOWN or (int(ip) >> 32 == 0 and int(ip) > 0xFFFF):  # NAT64 or ::a.b.c.d
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def is_public_address(ip: IPAddress) -> bool:
    """True when `ip` is a globally routable unicast address (not loopback, private, link-local…).

    An IPv6 address that carries an IPv4 address is judged by what it carries: the packets of a
    mapped or NAT64 address go to that IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE or ip.is_site_local:
            return False
        embedded = embedded_ipv4(ip)
        if any(not is_public_address(inner) for inner in embedded):
            return False
        if ip.ipv4_mapped is not None or ip.sixtofour is not None or ip in NAT64_WELL_KNOWN:
            return True  # the wrapper itself is only a route to the public IPv4 address checked above
    blocked = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
               or ip.is_reserved or ip.is_unspecified)
    return ip.is_global and not blocked


def resolve(host: str, port: int) -> list[AddrInfo]:
    """Every TCP address `host` resolves to."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _describe(ip: IPAddress) -> str:
    inner = embedded_ipv4(ip)
    return f"{ip}, which carries {', '.join(map(str, inner))}" if inner else str(ip)


def _timed_out(url: str) -> RagError:
    return RagError(f"Timed out fetching {url}; try again later or raise the fetch timeout.")


def _left(deadline: float, url: str) -> float:
    """Seconds before `deadline`, or the timeout error when none are left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(url)
    return left


def fetch(url: str, settings: Settings, *,
          is_allowed: Callable[[IPAddress], bool] = is_public_address,
          resolver: Callable[[str, int], list[AddrInfo]] = resolve,
          types: dict[str, str] = ACCEPTED_TYPES) -> FetchResult:
    """GET `url` within the settings' limits, following redirects by hand so every hop is checked.

    `types` maps the content types accepted to a kind (the crawler also reads robots.txt and sitemaps).
    `settings.fetch_timeout` bounds the whole fetch: DNS, connecting, every redirect and the body.
    Unless `settings.allow_private_urls`, every address a host resolves to must pass `is_allowed`;
    `resolver` maps a host and port to getaddrinfo-style entries.
    """
    max_bytes, max_redirects = settings.max_fetch_bytes, settings.max_redirects
    allow_private = settings.allow_private_urls
    deadline = time.monotonic() + settings.fetch_timeout
    seen: list[str] = []
    current = url
    while True:
        _left(deadline, url)
        target = _parse(current)
        if target.url in seen:
            raise RagError(f"{url} redirects in a loop (back to {target.url}); use the final address directly.")
        seen.append(target.url)
        addresses = _checked_addresses(target, allow_private, is_allowed, resolver, deadline)
        status, headers, body = _request(target, addresses, deadline, max_bytes)
        if status in REDIRECT_STATUSES:
            if len(seen) > max_redirects:
                raise RagError(f"{url} redirected more than {max_redirects} times; "
                               "use the final address directly.")
            current = urljoin(target.url, headers["location"])
            continue
        return _result(target.url, status, headers, body, types)


def _parse(url: str) -> _Target:
    """Split `url` into what a request needs, refusing anything but http(s) with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise RagError(f"{url!r} is not a valid URL; check it for typos.") from None
    if parts.scheme not in ("http", "https"):
        raise RagError(f"{url!r} is not an http or https URL; only web pages can be fetched.")
    if not host:
        raise RagError(f"{url!r} has no host name; write it as https://host/path.")
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    port = port or (443 if parts.scheme == "https" else 80)
    return _Target(url=parts._replace(fragment="").geturl(), scheme=parts.scheme,
                   host=host, port=port, path=path)


def _checked_addresses(target: _Target, allow_private: bool,
                       is_allowed: Callable[[IPAddress], bool],
                       resolver: Callable[[str, int], list[AddrInfo]], deadline: float) -> list[AddrInfo]:
    """Resolve the host once and, unless private addresses are allowed, refuse any non-public one."""
    try:
        infos = _resolve_within(resolver, target, deadline)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        raise RagError(f"Could not resolve the host of {target.url}; check the address and your network.") from None
    if not infos:
        raise RagError(f"Could not resolve the host of {target.url}; check the address and your network.")
    if not allow_private:
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if not is_allowed(ip):
                raise RagError(f"Refusing to fetch {target.url}: {target.host} is a private or local "
                               f"address ({_describe(ip)}); allow private URLs in the settings if you trust it.")
    return infos


def _resolve_within(resolver: Callable[[str, int], list[AddrInfo]], target: _Target,
                    deadline: float) -> list[AddrInfo]:
    """The resolver's answer, waiting no longer than the deadline (getaddrinfo itself has no timeout)."""
    outcome: dict[str, object] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = resolver(target.host, target.port)
        except BaseException as exc:  # noqa: BLE001 - handed back to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, name="fetch-dns", daemon=True)
    worker.start()
    worker.join(_left(deadline, target.url))
    if worker.is_alive():  # left behind: a lookup can't be cancelled, and its answer is never used
        raise _timed_out(target.url)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["infos"]


class _Watchdog:
    """Shuts a socket down when the deadline passes, so a read blocked on a dripping server returns."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.fired = False
        self.sock = sock  # replaced by the TLS socket once wrapped (wrapping detaches the plain one)
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # the descriptor itself, under any TLS layer
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _request(target: _Target, addresses: list[AddrInfo], deadline: float,
             max_bytes: int) -> tuple[int, dict[str, str], bytes]:
    """One GET to the first checked address that accepts a connection, all of it before `deadline`."""
    watchdog = _Watchdog(_connect(target, addresses, deadline), deadline)
    conn = None
    try:
        conn = _http_connection(target, watchdog, _left(deadline, target.url))
        conn.request("GET", target.path, headers={
            "Host": _host_header(target), "User-Agent": USER_AGENT, "Accept": _ACCEPT,
            "Accept-Encoding": "identity"})
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status in REDIRECT_STATUSES and headers.get("location"):
            return response.status, headers, b""
        _check_status(target.url, response)
        _check_declared_length(target.url, headers, max_bytes)
        body = _read_capped(target.url, response, deadline, max_bytes)
        if watchdog.fired:  # the shutdown can look like a normal end of the body
            raise _timed_out(target.url)
        return response.status, headers, _decompress(target.url, headers, body, max_bytes)
    except RagError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a shut-down socket raised, it was the deadline
        if watchdog.fired or time.monotonic() >= deadline:
            raise _timed_out(target.url) from None
        raise _connection_error(target, exc) from None
    finally:
        watchdog.cancel()
        if conn is not None:
            conn.close()
        watchdog.sock.close()


def _connection_error(target: _Target, exc: Exception) -> RagError:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return _timed_out(target.url)
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        reason = getattr(exc, "reason", None) or exc
        return RagError(f"Secure connection to {target.url} failed ({reason}); check the address.")
    if isinstance(exc, (ConnectionError, http.client.HTTPException, OSError)):
        return RagError(f"Connection to {target.url} failed ({type(exc).__name__}); "
                        "try again later or check the address.")
    raise exc  # not a network failure: a bug, which must not pass as one


def _connect(target: _Target, addresses: list[AddrInfo], deadline: float) -> socket.socket:
    """A socket connected to one of the checked addresses; all tries together end by the deadline."""
    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in addresses:
        left = _left(deadline, target.url)
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    if isinstance(last_error, (TimeoutError, socket.timeout)):
        raise RagError(f"Timed out connecting to {target.url}; try again later or raise the fetch timeout.")
    raise RagError(f"Could not connect to {target.url} ({type(last_error).__name__}); "
                   "check the address or try again later.")


def _http_connection(target: _Target, watchdog: _Watchdog, timeout: float) -> http.client.HTTPConnection:
    """An http.client connection over the watched, connected socket, with Host and SNI set to the host name."""
    if target.scheme == "https":
        tls = ssl.create_default_context().wrap_socket(watchdog.sock, server_hostname=target.host,
                                                       do_handshake_on_connect=False)
        watchdog.sock = tls
        if watchdog.fired:  # it fired on the plain socket, which wrapping had just detached
            raise TimeoutError
        tls.do_handshake()
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    conn.sock = watchdog.sock  # already connected (and wrapped): http.client skips its own connect
    return conn


def _host_header(target: _Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _check_status(url: str, response: http.client.HTTPResponse) -> None:
    if response.status >= 400:
        raise RagError(f"{url} answered HTTP {response.status} {response.reason}; "
                       "check the address or try again later.")
    if response.status not in (200, 203):
        raise RagError(f"{url} answered HTTP {response.status} with no usable page; try the address in a browser.")


def _check_declared_length(url: str, headers: dict[str, str], max_bytes: int) -> None:
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise RagError(f"{url} is {int(length):,} bytes, over the {max_bytes:,}-byte limit; "
                       "download it and load the file, or raise the limit.")


def _read_capped(url: str, response: http.client.HTTPResponse, deadline: float, max_bytes: int) -> bytes:
    """Read the body in pieces, stopping as soon as it passes `max_bytes` or the deadline."""
    parts: list[bytes] = []
    size = 0
    while piece := response.read1(_CHUNK):
        size += len(piece)
        if size > max_bytes:
            raise RagError(f"{url} is over the {max_bytes:,}-byte limit; "
                           "download it and load the file, or raise the limit.")
        _left(deadline, url)
        parts.append(piece)
    return b"".join(parts)


def _decompress(url: str, headers: dict[str, str], body: bytes, max_bytes: int) -> bytes:
    """Undo gzip or deflate, which some servers send despite being asked for identity."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise RagError(f"{url} sent {encoding}-compressed content, which can't be read; try another address.")
    try:
        data = zlib.decompressobj(47).decompress(body, max_bytes + 1)  # 47: gzip or zlib header
    except zlib.error:
        raise RagError(f"{url} sent a damaged compressed body; try again later.") from None
    if len(data) > max_bytes:
        raise RagError(f"{url} is over the {max_bytes:,}-byte limit once decompressed; "
                       "download it and load the file, or raise the limit.")
    return data


def _result(url: str, status: int, headers: dict[str, str], body: bytes,
            types: dict[str, str] = ACCEPTED_TYPES) -> FetchResult:
    """Check the content type (sniffing when absent or generic) and package the response."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    kind = types.get(content_type)
    if kind is None and content_type in ("", "application/octet-stream"):
        kind = _sniff(body)
    if kind is None:
        shown = content_type or "no content type"
        raise RagError(f"{url} is {shown}, which can't be loaded; supported: HTML, plain text and PDF.")
    return FetchResult(final_url=url, status=status, content_type=content_type or kind,
                       body=body, headers=headers, kind=kind)


def _sniff(body: bytes) -> str | None:
    head = body[:1024].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return None
