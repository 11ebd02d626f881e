"""Article extraction from HTML, byte decoding, and extraction quality on pages never used for tuning."""

from __future__ import annotations

import codecs
import gzip
import json
import re
import socket
from collections import Counter
from pathlib import Path

import pytest

import rag.extract as extract
from rag.errors import RagError
from rag.extract import decode_bytes, decode_html, document_json, extract_html

EXTRACTION_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "extraction"

PARAGRAPHS = [
    "The river rose four metres overnight, flooding the lower town for the first time in a century.",
    "Residents were moved to the school on the hill, where volunteers served soup until dawn.",
    "Engineers said the old levee held better than expected, though its eastern end gave way at noon.",
    "The mayor promised a full review of the warning system once the water has gone down again.",
    "Insurance assessors are expected next week, and shops on the main street hope to reopen by June.",
]
ARTICLE = f"""<!doctype html>
<html><head>
<title>River floods lower town | The Valley Courier</title>
<meta property="og:title" content="River floods lower town">
<meta property="og:site_name" content="The Valley Courier">
<meta name="author" content="Ana Lopez">
<meta property="article:published_time" content="2024-03-05T08:00:00Z">
</head><body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<article><h1>River floods lower town</h1>
{''.join(f'<p>{p}</p>' for p in PARAGRAPHS)}
</article>
<footer>Copyright The Valley Courier. Subscribe to our newsletter.</footer>
<script>var tracking = "should never appear";</script>
</body></html>"""


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything opens a connection."""
    def refuse(sock, address):
        pytest.fail(f"an extractor tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", ["trafilatura", "newspaper", "auto"])
def test_each_extractor_finds_the_article_without_the_chrome(name, no_network):
    doc = extract_html(ARTICLE, "https://courier.example/floods", name)
    for paragraph in PARAGRAPHS:
        assert paragraph in doc.text
    assert "Subscribe" not in doc.text and "tracking" not in doc.text
    assert doc.title == "River floods lower town"
    assert doc.source == "https://courier.example/floods"
    assert doc.metadata["url"] == "https://courier.example/floods"


def test_trafilatura_reads_authors_date_and_site():
    doc = extract_html(ARTICLE, "https://courier.example/floods")
    assert doc.metadata["authors"] == ["Ana Lopez"]
    assert doc.metadata["published"] == "2024-03-05"
    assert doc.metadata["site"] == "The Valley Courier"
    assert doc.metadata["extractor"] == "trafilatura"


def test_document_json_has_the_cli_shape():
    data = document_json(extract_html(ARTICLE.encode("utf-8"), "https://courier.example/floods"))
    assert set(data) == {"title", "text", "authors", "published", "url"}
    assert data["url"] == "https://courier.example/floods"
    assert json.loads(json.dumps(data)) == data


def test_page_without_an_article_falls_back_to_its_visible_text():
    html = "<html><head><title>Shop</title><style>p{}</style></head><body><header>Welcome to the shop</header>" \
           "<form><label>Your name</label><input></form><script>hidden()</script></body></html>"
    doc = extract_html(html, None)
    assert doc.text == "Welcome to the shop\nYour name"
    assert doc.title == "Shop"
    assert doc.metadata["extractor"] == "full-text"
    assert extract_html(html, None, fallback=False).text == ""


def test_auto_uses_newspaper_when_trafilatura_finds_nothing(monkeypatch):
    monkeypatch.setattr(extract, "with_trafilatura", lambda html, url: extract._document(
        url, "", "", [], None, None, "trafilatura"))
    doc = extract_html(ARTICLE, "https://courier.example/floods", "auto")
    assert doc.metadata["extractor"] == "newspaper"
    assert PARAGRAPHS[0] in doc.text


def test_empty_html_gives_an_empty_document_not_an_exception():
    for html in ("", "   ", b"", "<html></html>"):
        assert extract_html(html, None).text == ""


def test_unknown_extractor_lists_the_available_ones():
    with pytest.raises(RagError, match="Unknown extractor 'readability'; available: auto, newspaper, trafilatura"):
        extract_html(ARTICLE, None, "readability")


# -- decoding --------------------------------------------------------------------------------------

WESTERN = "Café “quoted” – naïve déjà vu, 5 €, Straße"


def test_meta_charset_is_respected():
    page = f'<html><head><meta charset="windows-1252"></head><body><p>{WESTERN}</p></body></html>'
    assert WESTERN in decode_html(page.encode("cp1252"))


def test_iso_8859_1_label_is_read_as_windows_1252_like_browsers_do():
    page = f'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>{WESTERN}</p>'
    assert WESTERN in decode_html(page.encode("cp1252"))


def test_header_charset_wins_over_meta():
    page = f'<meta charset="utf-8"><p>{WESTERN}</p>'.encode("cp1252")
    assert WESTERN in decode_html(page, "text/html; charset=windows-1252")


def test_bom_wins_over_everything():
    page = codecs.BOM_UTF16_LE + f'<meta charset="iso-8859-1"><p>{WESTERN}</p>'.encode("utf-16-le")
    assert WESTERN in decode_html(page, "text/html; charset=iso-8859-1")


def test_undeclared_windows_1252_is_detected():
    text = ("Die schöne Frau sagte: “Das war köstlich!” und lächelte. Der Preis betrug 15,50 €. "
            "L’été était très chaud cette année. El niño comió paella.")
    assert decode_bytes(text.encode("cp1252")) == text


def test_wrong_declared_charset_falls_back_to_detection():
    assert decode_bytes("naïve café".encode("utf-8"), "no-such-charset") == "naïve café"


# -- quality on pages never used for tuning ----------------------------------------------------


def _token_f1(predicted: str, truth: str) -> float:
    got = Counter(re.findall(r"\w+", predicted.lower()))
    want = Counter(re.findall(r"\w+", truth.lower()))
    overlap = sum((got & want).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(got.values()), overlap / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def test_default_extractor_reaches_target_f1_on_held_out_pages():
    """The options were chosen on the even-numbered pages; the odd-numbered ones stand for unseen pages."""
    truth_file = EXTRACTION_DATA / "ground-truth.json"
    if not truth_file.exists():
        pytest.skip(f"{EXTRACTION_DATA} is absent: the shared data sits beside the checkout, not in a clone")
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    held_out = sorted(truth)[1::2]
    scores = []
    for key in held_out:
        html = gzip.decompress((EXTRACTION_DATA / "html" / f"{key}.html.gz").read_bytes())
        doc = extract_html(html, truth[key]["url"], fallback=False)
        scores.append(_token_f1(doc.text, truth[key]["articleBody"]))
    assert sum(scores) / len(scores) >= 0.95
