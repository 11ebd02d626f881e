"""Plain text, Markdown, Org, reStructuredText and HTML files: their text, title and headings."""

from __future__ import annotations

import re

from rag.documents import Document
from rag.errors import RagError
from rag.extract import decode_bytes, decode_html, extract_html, page_title
from rag.loaders.common import TITLE_MAX, first_line_title
from rag.settings import Settings


def load_text(text: str, name: str, markdown: bool = False, headings_of=None) -> Document:
    """A plain-text or Markdown document; its title is the first heading or a short first line."""
    if "\x00" in text:
        raise RagError(f"{name} doesn't look like text (it holds binary data); check the file.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise RagError(f"{name} has no text; it is empty or only whitespace.")
    headings_of = headings_of or (markdown_headings if markdown else None)
    headings = headings_of(text) if headings_of else []
    title = headings[0]["text"][:TITLE_MAX] if headings and headings[0]["start"] < 2000 else ""
    if not title and not markdown:
        title = first_line_title([line.strip() for line in text.splitlines() if line.strip()])
    doc = Document(source=name, text=text, title=title)
    if headings:
        doc.metadata["headings"] = headings
    return doc


def markdown_headings(text: str) -> list[dict]:
    """ATX headings (`## Title`) outside fenced code, with their level and where their line starts."""
    found, offset, fenced = [], 0, False
    for line in text.split("\n"):
        stripped = line.strip()
        fenced ^= stripped.startswith(("```", "~~~"))
        hashes = len(stripped) - len(stripped.lstrip("#"))
        if not fenced and 1 <= hashes <= 6 and stripped[hashes:hashes + 1] == " ":
            found.append({"text": stripped.strip("#").strip(), "level": hashes, "start": offset})
        offset += len(line) + 1
    return [h for h in found if h["text"]]


def org_headings(text: str) -> list[dict]:
    """Org-mode outline lines (`** Title`), a `#+TITLE:` line first."""
    found, offset = [], 0
    for line in text.split("\n"):
        if match := re.match(r"(\*+)\s+(.+)", line):
            found.append({"text": match.group(2).strip(), "level": len(match.group(1)), "start": offset})
        elif match := re.match(r"#\+title:\s*(.+)", line, re.IGNORECASE):
            found.append({"text": match.group(1).strip(), "level": 1, "start": offset})
        offset += len(line) + 1
    return found


_RST_ADORNMENT = re.compile(r"([=\-`:'\"~^_*+#<>])\1{2,}\s*$")


def rst_headings(text: str) -> list[dict]:
    """reStructuredText section titles: a line underlined (and maybe overlined) by a run of one
    punctuation character at least as long; levels in the order the adornments first appear."""
    lines = text.split("\n")
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    found, styles = [], []
    for i in range(1, len(lines)):
        title, under = lines[i - 1].strip(), lines[i].rstrip()
        if not title or _RST_ADORNMENT.fullmatch(title) or not _RST_ADORNMENT.match(under):
            continue
        if len(under) < len(title) or lines[i - 1].startswith((" ", "\t", "..")):
            continue
        over = i >= 2 and lines[i - 2].rstrip() == under
        style = (under[0], over)
        if style not in styles:
            styles.append(style)
        found.append({"text": title, "level": styles.index(style) + 1, "start": starts[i - 2 if over else i - 1]})
    return found


def text_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return load_text(decode_bytes(data), name)


def markdown_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return load_text(decode_bytes(data), name, markdown=True)


def org_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return load_text(decode_bytes(data), name, headings_of=org_headings)


def rst_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return load_text(decode_bytes(data), name, headings_of=rst_headings)


def html_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return html_document(decode_html(data), None, name, settings)


def html_document(html: str, url: str | None, name: str, settings: Settings) -> Document:
    """The article (or, when none is found, all visible text) of an HTML page."""
    doc = extract_html(html, url, settings.extractor, fallback=True)
    if not doc.text.strip():
        raise RagError(f"{name} has no visible text; check that it is the page you meant.")
    doc.title = doc.title or page_title(html)
    return doc


def html_text(html: str | bytes) -> str:
    """All visible text of an HTML fragment (an e-book chapter, an e-mail body), blocks on their own lines."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        root = lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return ""
    for bad in root.xpath("//script|//style|//head"):
        bad.drop_tree()
    for block in root.xpath("//p|//div|//br|//li|//tr|//h1|//h2|//h3|//h4|//h5|//h6|//blockquote|//pre"):
        block.tail = "\n" + (block.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
