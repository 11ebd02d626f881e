"""Add a site: a local site of real pages served on 127.0.0.1, crawled within its host, rules and limits."""

from __future__ import annotations

import gzip
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.collection import Collection, SourceResult
from rag.crawl import CrawlStats, crawl, normalise
from rag.errors import RagError
from rag.interrupt import stop_when
from tests.conftest import shared_data


class _Quiet(SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self):
        type(self).requested.append(self.path)
        if self.path == "/away.html":  # a page of the site that sends the reader to another host
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/p2.html")
            self.end_headers()
            return
        if self.path == "/broken.html":  # a page of the site whose server fails
            self.send_error(500)
            return
        super().do_GET()


@pytest.fixture
def site(tmp_path):
    """45 real pages (the extraction set), an index linking them all, a private folder robots.txt forbids,
    a copy of one page under another name, a link to no page (404) and one the server fails on (500), and a
    sitemap naming a page nothing links to."""
    sources = sorted(shared_data("extraction", "html").glob("*.html.gz"))[:46]
    root = tmp_path / "site"
    (root / "private").mkdir(parents=True)
    for i, source in enumerate(sources):
        html = gzip.decompress(source.read_bytes()).decode("utf-8", "replace")
        back = '<p><a href="/index.html">home</a> <a href="https://example.com/elsewhere">away</a></p>'
        (root / f"p{i}.html").write_text(html.replace("</body>", back + "</body>"), encoding="utf-8")
    (root / "copy.html").write_bytes((root / "p1.html").read_bytes())
    (root / "private" / "secret.html").write_text("<html><body><p>Not for crawlers.</p></body></html>")
    hrefs = ["p0.html", "missing.html", "broken.html", "p1.html", "copy.html", "private/secret.html",
             "p0.html#part-two", "logo.png", "away.html"]
    hrefs += [f"p{i}.html" for i in range(2, 44)]
    links = "".join(f'<li><a href="{href}">{href}</a></li>' for href in hrefs)
    (root / "index.html").write_text(f"<html><head><title>Index</title></head><body><h1>A site of pages</h1>"
                                     f"<p>Every page of this small site, listed for its readers.</p>"
                                     f"<ul>{links}</ul></body></html>")
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (root / "sitemap.xml").write_text('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                                      'sitemap/0.9"><url><loc>/p45.html</loc></url></urlset>'.replace(
                                          "/p45", "{base}/p45"))
    _Quiet.requested = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_port}"
    (root / "sitemap.xml").write_text((root / "sitemap.xml").read_text().replace("{base}", base))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()


def test_a_site_is_crawled_within_its_host_rules_and_limits(site, settings):
    stats = CrawlStats()
    seen_progress = []
    found = list(crawl(site + "/index.html", settings, max_pages=40, depth=1, delay=0, stats=stats,
                       progress=lambda done, total, url: seen_progress.append((done, total, url))))
    assert not any(isinstance(d, SourceResult) for d in found)  # a page that fails is counted, not handed on
    docs = found
    urls = [d.source for d in docs]
    # 40 pages added: the broken link, the failing one, the copy and the forbidden ones did not use up the 40
    assert len(found) == 40 and seen_progress[0] == (0, 40, site + "/index.html")
    # Told of each address before reading it, the dead and the repeated ones too: never of one robots.txt forbids.
    told = [url for _, _, url in seen_progress]
    assert told == sorted(set(told), key=told.index) and {site + "/missing.html", site + "/copy.html"} <= set(told)
    # (and + 1: the page that redirects to another host is read before it is known to leave)
    assert len(told) == 40 + stats.failed + stats.duplicates + 1 and seen_progress[-1][:2] == (39, 40)
    assert stats.failed == 2 and [url for url, _ in stats.failures] == [site + "/missing.html", site + "/broken.html"]
    assert "404" in stats.failures[0][1] and not stats.gave_up
    assert urls[0] == site + "/index.html" and urls[1] == site + "/p45.html"  # the sitemap's page next
    assert all(url.startswith(site + "/") for url in urls)
    assert not any("private" in url or "example.com" in url or url.endswith(".png") for url in urls)
    assert "/private/secret.html" not in _Quiet.requested and "/away.html" in _Quiet.requested
    assert stats.disallowed == 2  # robots.txt's folder, and the page that redirects to another host
    assert len({d.content_hash for d in docs}) == len(docs)
    assert urls.count(site + "/p0.html") == 1 and site + "/copy.html" not in urls  # copy.html holds p1's text
    assert stats.duplicates >= 1


def test_depth_zero_reads_only_the_start_page_and_the_sitemap(site, settings):
    urls = [d.source for d in crawl(site + "/", settings, max_pages=50, depth=0, delay=0)]
    assert urls == [site + "/", site + "/p45.html"]


def test_stop_ends_a_crawl(site, settings):
    class Stopped(Exception):
        pass

    got = []

    def check():
        if len(got) >= 3:
            raise Stopped

    with stop_when(check), pytest.raises(Stopped):
        for doc in crawl(site + "/index.html", settings, max_pages=50, depth=1, delay=0):
            got.append(doc)
    assert len(got) == 3


def test_the_same_address_rules_as_single_urls(site, settings):
    with pytest.raises(RagError, match="127.0.0.1"):
        list(crawl(site + "/index.html", settings.replace(allow_private_urls=False), max_pages=5, delay=0))
    with pytest.raises(RagError, match="not an http"):
        list(crawl("file:///etc/passwd", settings))


def test_normalise_drops_fragments_and_default_ports():
    assert normalise("HTTP://Example.COM:80/a#b") == "http://example.com/a"
    assert normalise("https://example.com") == "https://example.com/"
    assert normalise("mailto:someone@example.com") is None


def test_crawled_pages_become_documents_of_their_own(site, settings):
    report = Collection.open(settings).add_documents(crawl(site + "/index.html", settings, max_pages=4,
                                                           depth=1, delay=0))
    assert [r.status for r in report.results] == ["added"] * 4
    assert {r.source for r in report.results} == {site + "/index.html", site + "/p45.html", site + "/p0.html",
                                                 site + "/p1.html"}


def test_a_crawl_of_many_failing_addresses_gives_up(site, settings, monkeypatch):
    from rag import crawl as crawl_module

    monkeypatch.setattr(crawl_module, "MAX_FAILED", 2)
    stats = CrawlStats()
    urls = [d.source for d in crawl(site + "/index.html", settings, max_pages=40, depth=1, delay=0, stats=stats)]
    assert urls == [site + "/index.html", site + "/p45.html", site + "/p0.html"] and stats.gave_up


def test_every_address_is_told_before_it_is_read_and_stop_ends_a_crawl_between_two(site, settings):
    """A run of dead links shows as it happens, and Stop need not wait for the next page that reads."""
    stop, told = threading.Event(), []

    def progress(done, total, url):
        told.append(url)
        if url.endswith("/missing.html"):
            stop.set()

    stats = CrawlStats()
    pages = list(crawl(site + "/index.html", settings, max_pages=40, depth=1, delay=0, stats=stats,
                       progress=progress, stop=stop))
    assert stats.stopped and told[-1] == site + "/missing.html"  # it was told, read, and nothing after it
    assert stats.failed == 1 and len(pages) == len(told) - 1 < 40


def test_the_notebook_adds_a_site_and_stop_ends_it(site, settings):
    import time
    from types import SimpleNamespace

    from ui.library import Library
    from ui.runtime import Runtime
    from ui.state import Session

    library, session = Library(Runtime(settings)), Session()
    request = SimpleNamespace(session_hash="browser-1", username=None)
    summary, results, note, table = library.add_site(site + "/index.html", 3, 1, session, request=request)
    assert "**3** documents" in note and len(table) == 3, summary
    assert "Reached the limit of 3 pages; " in summary and "more addresses were found and not read" in summary

    _Quiet.requested = []
    done = {}
    worker = threading.Thread(target=lambda: done.update(out=library.add_site(
        site + "/index.html", 40, 1, Session(collection="second"), request=request)))
    worker.start()
    while len([p for p in _Quiet.requested if p.endswith(".html")]) < 4 and worker.is_alive():
        time.sleep(0.05)
    library.stop_site(request)
    worker.join()
    summary, _, note, table = done["out"]
    assert f"Stopped: the {len(table)} pages read before Stop are in the collection." in summary
    assert 3 <= len(table) < 40, summary


def test_the_notebook_says_what_a_crawl_skipped(site, settings):
    from types import SimpleNamespace

    from ui.library import Library
    from ui.runtime import Runtime
    from ui.state import Session

    request = SimpleNamespace(session_hash="browser-2", username=None)
    summary, *_ = Library(Runtime(settings)).add_site(site + "/index.html", 40, 1, Session(), request=request)
    # copy.html repeats p1's text; private/ is forbidden by robots.txt and away.html redirects off the site
    assert "Skipped: 1 page repeats the text of a page already read" in summary, summary
    assert "kept out by robots.txt or lead off the site" in summary and ". Skipped" in summary
    assert "2 addresses could not be read (a 404, another error or no text: /missing.html, /broken.html)" in summary
    assert summary.startswith("**40** added · ") and "**0** failed" in summary, summary
