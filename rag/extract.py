"""Article extraction from HTML into a `Document`, plus the byte decoding it needs.

Extractors only ever see HTML they are handed; none of them downloads anything.
"""

from __future__ import annotations

import codecs
import re
import warnings
from typing import Callable

from rag.documents import Document
from rag.errors import RagError

# Options chosen on half of the benchmark pages (see benchmarks/bench_extraction.py): the people who
# marked the article bodies left out comments, and favouring precision drops leftover boilerplate.
TRAFILATURA_OPTIONS = {"include_comments": False, "favor_precision": True}

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([a-zA-Z0-9_.:-]+)", re.IGNORECASE)
# Browsers read these labels as windows-1252 (WHATWG encoding standard).
_AS_CP1252 = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "ascii", "us-ascii", "cp1252"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_BLOCK_TAGS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
               "header", "footer", "blockquote", "pre", "table", "ul", "ol", "dd", "dt", "td", "th")


def bom_encoding(data: bytes) -> str | None:
    """The encoding a byte-order mark at the start of `data` announces, if any."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Decode with the BOM, then the declared charset, then UTF-8, then detection (windows-1252 last)."""
    # NUL bytes never occur in UTF-8 text but fill UTF-16 without a BOM, so leave those to detection.
    plain_utf8 = "utf-8" if b"\x00" not in data[:4096] else None
    for encoding in (bom_encoding(data), _normalise_label(declared), plain_utf8):
        if encoding:
            try:
                return data.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
    return data.decode(_detect_encoding(data), errors="replace")


def _detect_encoding(data: bytes) -> str:
    """charset-normalizer's guess, taking windows-1252 when it ties with the best (as browsers default)."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data[:200_000])
    best = matches.best()
    if best is None:
        return "cp1252"
    tied = [m for m in matches if m.chaos <= best.chaos]
    if any("cp1252" in m.could_be_from_charset for m in tied):
        return "cp1252"
    return best.encoding


def header_charset(content_type: str | None) -> str | None:
    """The charset named in a Content-Type header value, if any."""
    match = _HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def decode_html(data: bytes, content_type: str | None = None) -> str:
    """Decode an HTML page, respecting the BOM, the Content-Type charset, then <meta charset>."""
    declared = header_charset(content_type)
    if bom_encoding(data) is None and declared is None and (match := _META_CHARSET.search(data[:8192])):
        declared = match.group(1).decode("ascii", "replace")
    return decode_bytes(data, declared)


def _normalise_label(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    return "cp1252" if label in _AS_CP1252 else label


def extract_html(html: str | bytes, url: str | None, extractor: str = "trafilatura",
                 fallback: bool = True) -> Document:
    """The article in `html` as a Document; with `fallback`, the page's visible text when no article is found."""
    if isinstance(html, bytes):
        html = decode_html(html)
    run = _extractor(extractor)
    doc = run(html, url)
    if fallback and not doc.text.strip():
        doc.text = visible_text(html)
        doc.title = doc.title or page_title(html)
        doc.metadata["extractor"] = "full-text"
    return doc


def document_json(doc: Document) -> dict:
    """The CLI `extract` command's JSON shape: title, text, authors, published, url."""
    return {"title": doc.title, "text": doc.text, "authors": doc.metadata.get("authors", []),
            "published": doc.metadata.get("published"), "url": doc.metadata.get("url")}


def extractor_names() -> list[str]:
    return sorted(_EXTRACTORS)


def _extractor(name: str) -> Callable[[str, str | None], Document]:
    try:
        return _EXTRACTORS[name]
    except KeyError:
        raise RagError(f"Unknown extractor {name!r}; available: {', '.join(extractor_names())}.") from None


def with_trafilatura(html: str, url: str | None) -> Document:
    """trafilatura's article text and metadata (options tuned on half the benchmark)."""
    try:
        import trafilatura
    except ImportError:
        raise RagError("The trafilatura extractor needs the trafilatura package; pip install trafilatura.") from None
    result = trafilatura.bare_extraction(html, url=url, with_metadata=True, **TRAFILATURA_OPTIONS)
    if result is None:
        return _document(url, "", "", [], None, None, "trafilatura")
    authors = [a.strip() for a in (result.author or "").split(";") if a.strip()]
    doc = _document(url, result.text or "", result.title or "", authors, result.date,
                    result.sitename or result.hostname, "trafilatura")
    if result.body is not None:
        found = [(" ".join(" ".join(h.itertext()).split()), _level(h.get("rend")))
                 for h in result.body.iter("head")]
        if headings := locate_headings(doc.text, found):
            doc.metadata["headings"] = headings
    return doc


def _level(rend: str | None) -> int:
    """trafilatura marks a heading's level as rend="h2"; levels are relative to the article's own."""
    return int(rend[1]) if rend and len(rend) == 2 and rend[0] == "h" and rend[1].isdigit() else 1


def locate_headings(text: str, found: list[tuple[str, int]]) -> list[dict]:
    """Headings ({text, level, start}) where each of `found` ((heading, level), in document order) stands on
    a line of its own in `text`; those not found there are left out. A summary reads a document by them."""
    lines, offset = [], 0
    for line in text.split("\n"):
        lines.append((" ".join(line.split()), offset + len(line) - len(line.lstrip())))
        offset += len(line) + 1
    out, at = [], 0
    for heading, level in found:
        match = next((i for i in range(at, len(lines)) if heading and lines[i][0] == heading), None)
        if match is not None:
            out.append({"text": heading, "level": level, "start": lines[match][1]})
            at = match + 1
    return out


def with_newspaper(html: str, url: str | None) -> Document:
    """newspaper3k's article text and metadata, parsed from the given HTML without downloading."""
    try:
        from newspaper import Article, Config
        from newspaper.article import ArticleException
    except ImportError:
        raise RagError("The newspaper extractor needs newspaper3k; pip install newspaper3k lxml_html_clean.") from None
    config = Config()
    config.fetch_images = False  # parse() would otherwise download the top image
    config.memoize_articles = False
    article = Article(url or "", config=config)
    try:
        with warnings.catch_warnings():  # dateutil warns about time-zone names on many news pages
            warnings.simplefilter("ignore")
            article.download(input_html=html)
            article.parse()
    except (ArticleException, ValueError):
        return _document(url, "", "", [], None, None, "newspaper")
    published = article.publish_date.date().isoformat() if article.publish_date else None
    site = (article.meta_data.get("og") or {}).get("site_name") if isinstance(article.meta_data, dict) else None
    return _document(url, article.text or "", article.title or "", list(article.authors), published,
                     site, "newspaper")


def with_fallback(html: str, url: str | None) -> Document:
    """trafilatura, and newspaper3k's result when trafilatura finds no article."""
    doc = with_trafilatura(html, url)
    if doc.text.strip():
        return doc
    other = with_newspaper(html, url)
    return other if other.text.strip() else doc


def _document(url: str | None, text: str, title: str, authors: list[str], published: str | None,
              site: str | None, extractor: str) -> Document:
    metadata = {"kind": "html", "url": url, "authors": authors, "published": published,
                "site": site, "extractor": extractor}
    return Document(source=url or "", text=text.strip(), title=title.strip(), metadata=metadata)


_EXTRACTORS: dict[str, Callable[[str, str | None], Document]] = {
    "trafilatura": with_trafilatura,
    "newspaper": with_newspaper,
    "auto": with_fallback,
}


def visible_text(html: str) -> str:
    """All the text a reader would see on the page: no scripts, styles or head, one block per line."""
    root = _parse_html(html)
    if root is None:
        return ""
    for element in root.xpath("//script|//style|//noscript|//template|//head"):
        element.drop_tree()
    for element in root.iter(*_BLOCK_TAGS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def page_title(html: str) -> str:
    """The page's <title>, or its first <h1>, or ''."""
    root = _parse_html(html)
    if root is None:
        return ""
    for path in ("//title", "//h1"):
        for element in root.xpath(path):
            text = " ".join(element.text_content().split())
            if text:
                return text
    return ""


def _parse_html(html: str):
    import lxml.html
    from lxml.etree import ParserError

    # lxml refuses str input that still carries an XML encoding declaration.
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html)
    try:
        return lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return None
