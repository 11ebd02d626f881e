"""Add a site: the pages of one host, from a start address, as documents of their own.

Breadth first from the start page (depth 0), following links to the same host up to `depth` links away, the
host's sitemap.xml pages first when it has one; robots.txt is obeyed (and its Crawl-delay, up to 10 s);
requests wait `delay` seconds between them; a page seen before (by address or by text), an address robots.txt
forbids or that leads off the site, and one that fails (a 404, an error, no text) is skipped: only pages added
count towards `max_pages`, and the skipped ones are counted in `CrawlStats` for the summary. Every
request goes through `rag.fetch.fetch`, so the same SSRF rules, size cap and deadline hold as for one URL.
`rag.interrupt.checkpoint()` runs before each request and through each wait, so Stop ends a crawl.
"""

from __future__ import annotations

import threading
import time
import urllib.robotparser
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

from rag.documents import Document
from rag.errors import RagError
from rag.interrupt import checkpoint
from rag.settings import Settings

DEFAULT_PAGES = 50
DEFAULT_DEPTH = 2
DEFAULT_DELAY = 1.0
MAX_PAGES = 1000
MAX_DELAY = 10.0
MAX_SITEMAP_URLS = 5000
# Addresses that fail before a crawl gives up: they do not count towards the pages asked for, so a site of
# broken links would otherwise be walked to its end, a wait and a request each.
MAX_FAILED = 100
_SKIPPED_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js", ".zip", ".gz",
                     ".mp3", ".mp4", ".wav", ".avi", ".mov", ".woff", ".woff2", ".ttf", ".xml", ".json")
_TEXT = {"text/plain": "text"}
_XML = {"application/xml": "xml", "text/xml": "xml", "text/plain": "xml"}


@dataclass
class CrawlStats:
    fetched: int = 0
    duplicates: int = 0
    disallowed: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (address, why), the first 20
    gave_up: bool = False  # MAX_FAILED addresses failed, and the crawl stopped there
    seen: set[str] = field(default_factory=set)
    left: int = 0  # addresses found but not read when the page limit was reached
    stopped: bool = False  # `stop` was set, and the crawl ended there


def crawl(start: str, settings: Settings, max_pages: int = DEFAULT_PAGES, depth: int = DEFAULT_DEPTH,
          delay: float = DEFAULT_DELAY, progress: Callable[[int, int, str], None] | None = None,
          stats: CrawlStats | None = None, stop: threading.Event | None = None) -> Iterator[Document]:
    """Documents of up to `max_pages` pages of `start`'s host, ready for `Collection.add_documents`; a page that
    fails is counted in `stats` and the crawl goes on (a start page that fails with nothing else to read is
    raised). `progress(pages made, max_pages, address)` is told of every address before it is read, so a run
    of dead links shows as it happens; `stop`, once set, ends the crawl before the next address."""
    from rag.fetch import fetch
    from rag.loaders import page_document

    if not 1 <= max_pages <= MAX_PAGES:
        raise RagError(f"A site crawl reads 1 to {MAX_PAGES} pages; got {max_pages}.")
    if not 0 <= depth <= 10:
        raise RagError(f"A site crawl follows links 0 to 10 deep; got {depth}.")
    root = normalise(start)
    if root is None:
        raise RagError(f"{start!r} is not an http(s) address; give the site's start page.")
    stats = stats if stats is not None else CrawlStats()
    pacer = _Pacer(delay)
    robots = _robots(root, settings, pacer)
    pacer.delay = min(max(delay, robots.crawl_delay("*") or 0), MAX_DELAY)
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    queue.extend((url, 1) for url in _sitemap_urls(root, robots, settings, pacer) if url != root)
    hashes: set[str] = set()
    produced = 0
    while queue and produced < max_pages and not stats.gave_up:
        if stop is not None and stop.is_set():
            stats.stopped = True
            return
        url, level = queue.popleft()
        if url in stats.seen:
            continue
        stats.seen.add(url)
        if not robots.can_fetch("*", url):
            stats.disallowed += 1
            continue
        if progress:
            progress(produced, max_pages, url)
        pacer.wait()
        try:
            page = fetch(url, settings)
            stats.fetched += 1
            final = normalise(page.final_url)
            if final and not _same_site(final, root):  # redirected off the site: not one of its pages
                stats.disallowed += 1
                continue
            if final and final != url and final in stats.seen:
                stats.duplicates += 1
                continue
            stats.seen.add(final or url)
            doc = page_document(page, url, settings)
        except RagError as exc:
            if url == root and produced == 0 and not queue:
                raise
            stats.failed += 1
            if len(stats.failures) < 20:
                stats.failures.append((url, str(exc)))
            stats.gave_up = stats.failed >= MAX_FAILED
            continue
        if level < depth and page.kind == "html":
            queue.extend((link, level + 1) for link in _links(page, root) if link not in stats.seen)
        if doc.content_hash in hashes:
            stats.duplicates += 1
            continue
        hashes.add(doc.content_hash)
        doc.metadata.update({"site": root, "depth": level})
        produced += 1
        if produced == max_pages:
            stats.left = len({u for u, _ in queue} - stats.seen)
        yield doc


def normalise(url: str) -> str | None:
    """The address without its fragment, with the scheme and host lower-cased and a default port dropped."""
    url, _ = urldefrag(url.strip())
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    default = {"http": 80, "https": 443}[parts.scheme.lower()]
    try:
        port = parts.port
    except ValueError:
        return None
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def _same_site(url: str, root: str) -> bool:
    return urlsplit(url).netloc == urlsplit(root).netloc


def _links(page, root: str) -> list[str]:
    """The page's <a href> links to the same host, in order, once each, skipping files that are not pages."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        tree = lxml.html.fromstring(page.body)
    except (ParserError, ValueError):
        return []
    found = []
    for href in tree.xpath("//a/@href"):
        url = normalise(urljoin(page.final_url, str(href)))
        if url and _same_site(url, root) and not urlsplit(url).path.lower().endswith(_SKIPPED_SUFFIXES):
            found.append(url)
    return list(dict.fromkeys(found))


class _Pacer:
    """Waits `delay` seconds between requests, in slices that let Stop end the wait."""

    def __init__(self, delay: float):
        self.delay, self.last = delay, None

    def wait(self) -> None:
        checkpoint()
        if self.last is not None:
            until = self.last + self.delay
            while (left := until - time.monotonic()) > 0:
                time.sleep(min(left, 0.1))
                checkpoint()
        self.last = time.monotonic()


def _robots(root: str, settings: Settings, pacer: _Pacer) -> urllib.robotparser.RobotFileParser:
    """The host's robots.txt rules; none (all allowed) when it has none or it cannot be read."""
    from rag.fetch import fetch

    parser = urllib.robotparser.RobotFileParser()
    pacer.wait()
    try:
        page = fetch(urljoin(root, "/robots.txt"), settings, types=_TEXT)
        parser.parse(page.body.decode("utf-8", "replace").splitlines())
    except RagError:
        parser.parse([])
    return parser


def _sitemap_urls(root: str, robots, settings: Settings, pacer: _Pacer) -> list[str]:
    """Same-host page addresses from the sitemaps robots.txt names, else /sitemap.xml (an index opened once)."""
    from rag.fetch import fetch

    maps = robots.site_maps() or [urljoin(root, "/sitemap.xml")]
    urls: list[str] = []
    for depth in range(2):  # a sitemap index, then the sitemaps it lists
        nested = []
        for sitemap in maps[:20]:
            if not _same_site(normalise(sitemap) or "", root):
                continue
            pacer.wait()
            try:
                body = fetch(sitemap, settings, types=_XML).body
            except RagError:
                continue
            pages, children = _parse_sitemap(body)
            urls.extend(u for u in pages if _same_site(u, root))
            nested.extend(children)
        if not nested or depth:
            break
        maps = nested
    return list(dict.fromkeys(urls))[:MAX_SITEMAP_URLS]


def _parse_sitemap(body: bytes) -> tuple[list[str], list[str]]:
    """(<url><loc> addresses, <sitemap><loc> addresses) of a sitemap, never resolving entities."""
    from lxml import etree

    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))
    except etree.XMLSyntaxError:
        return [], []
    pages, children = [], []
    for loc in root.iter("{*}loc"):
        parent = etree.QName(loc.getparent()).localname if loc.getparent() is not None else ""
        url = normalise(loc.text or "")
        if url:
            (children if parent == "sitemap" else pages).append(url)
    return pages, children
