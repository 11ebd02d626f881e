"""Untrusted text made inert for the page: every renderer in `ui/` builds its HTML and Markdown with these.

Text that came from the web, a file or a model is untrusted. `escape_html` makes it safe inside HTML,
`escape_markdown` shows it literally through a Markdown renderer, `inert_html` is escaped HTML that a
later Markdown pass cannot turn into a link or an image either, and only http(s) URLs ever become
links. So a document can never put live markup, a script, a remote image or a link of its choosing
into the page.
"""

from __future__ import annotations

import html
import re
from typing import Sequence
from urllib.parse import urlparse

from rag.locations import OCR_MARK, OCR_NOTE
from rag.text import QUERY_STOPWORDS

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|>~$])")
# Line starts that Markdown would turn into a list item or a heading rule ("1." "-" "+" "=").
_MD_LINE_START = re.compile(r"^(\s*)(\d+)([.)])|^(\s*)([-+=])", re.MULTILINE)
_URL = re.compile(r"https?://[^\s<>\"'`\[\]]+")
_WORD = re.compile(r"\w{2,}", re.UNICODE)
_UPLOAD = re.compile(r"^.*[/\\]_uploads[/\\][^/\\]+[/\\]")
UPLOAD_PREFIX = "upload: "


def escape_html(text: object) -> str:
    """Text made safe to place inside HTML (element content or a quoted attribute)."""
    return html.escape("" if text is None else str(text), quote=True)


def escape_markdown(text: object) -> str:
    """Text shown literally by a Markdown renderer: no HTML, images, emphasis, headings or maths.

    http(s) URLs are left as they are (only HTML-escaped), so the renderer shows them as plain links.
    """
    text = "" if text is None else str(text)
    out, cursor = [], 0
    for match in _URL.finditer(text):
        out.append(_escape_md_span(text[cursor : match.start()]))
        out.append(html.escape(match.group(0), quote=False))
        cursor = match.end()
    out.append(_escape_md_span(text[cursor:]))
    return "".join(out)


def _escape_md_span(text: str) -> str:
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _MD_LINE_START.sub(lambda m: f"{m[1]}{m[2]}\\{m[3]}" if m[2] else f"{m[4]}\\{m[5]}", escaped)


def inert_html(text: object) -> str:
    """Escaped HTML that no Markdown pass can turn into a link or an image either."""
    return escape_html(text).replace("[", "&#91;").replace("]", "&#93;").replace("!", "&#33;")


def safe_href(url: str) -> str | None:
    """The URL if it is an http(s) link, else None (no javascript:, data: or file: links)."""
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def one_line(text: object, limit: int | None = None) -> str:
    """Text on one line: newlines and runs of spaces become one space (titles from PDFs keep newlines)."""
    line = " ".join(("" if text is None else str(text)).split())
    return line[: limit - 1] + "…" if limit and len(line) > limit else line


def first_words(text: object, words: int = 12) -> str:
    """The opening words of a passage, to tell apart sources that share a title."""
    parts = ("" if text is None else str(text)).split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def display_source(source: str) -> str:
    """A source as people read it: uploads by their file name, not the server folder they sit in."""
    source = source or ""
    return source if "://" in source else _UPLOAD.sub(UPLOAD_PREFIX, source)


def source_html(source: str, where: str = "", ocr: bool = False) -> str:
    """A source as escaped HTML: a link that opens in a new tab when it is an http(s) URL, else code; then its
    place in the document (rag.locations) and, for words read by OCR, a short mark saying so."""
    href = safe_href(source)
    label = escape_html(display_source(source))
    link = (
        f'<a href="{escape_html(href)}" target="_blank" rel="noopener noreferrer nofollow">{label}</a>'
        if href
        else f"<code>{label}</code>"
    )
    mark = f' <span class="ocr-mark" title="{escape_html(OCR_NOTE)}">{OCR_MARK}</span>' if ocr else ""
    return link + (f" · {escape_html(where)}" if where else "") + mark


def query_terms(query: str) -> list[str]:
    """Words of a query worth marking in a hit: two letters or more, not the words keyword search drops."""
    terms = {w.lower() for w in _WORD.findall(query or "") if w.lower() not in QUERY_STOPWORDS}
    return sorted(terms, key=len, reverse=True)


def highlight(text: str, terms: Sequence[str]) -> str:
    """Escaped `text` with whole-word, case-insensitive matches of `terms` wrapped in <mark>."""
    if not terms:
        return escape_html(text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\b", re.IGNORECASE)
    out, cursor = [], 0
    for match in pattern.finditer(text):
        out.append(escape_html(text[cursor : match.start()]))
        out.append(f"<mark>{escape_html(match.group(0))}</mark>")
        cursor = match.end()
    out.append(escape_html(text[cursor:]))
    return "".join(out)
