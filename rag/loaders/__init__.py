"""Turn sources (URLs, files, directories) into `Document`s: text, Markdown, HTML, PDF and DOCX."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from rag.documents import Document
from rag.errors import RagError
from rag.extract import decode_bytes, decode_html, extract_html, header_charset, page_title
from rag.settings import Settings

KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
         ".html": "html", ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
_SUPPORTED = ", ".join(sorted(KINDS))
_TITLE_MAX = 120


def is_url(source: str) -> bool:
    """True for http and https URLs."""
    return urlsplit(source.strip()).scheme.lower() in ("http", "https")


def expand_sources(sources: list[str]) -> list[str]:
    """URLs as given; directories replaced by their files (recursively, sorted, hidden ones skipped).

    Files become absolute paths so the same file has one identity; paths that don't exist are kept
    as given for `load_source` to report.
    """
    expanded: list[str] = []
    for source in sources:
        if is_url(source):
            expanded.append(source.strip())
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            expanded.extend(str(p.absolute()) for p in _files_under(path))
        elif path.exists():
            expanded.append(str(path.absolute()))
        else:
            expanded.append(source)
    return list(dict.fromkeys(expanded))


def _files_under(folder: Path) -> list[Path]:
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not any(part.startswith(".") for part in relative.parts) and path.is_file():
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def load_source(source: str, settings: Settings) -> Document:
    """Load one URL or file into a Document; raises RagError with a sentence a user can act on."""
    if is_url(source):
        return _load_url(source.strip(), settings)
    return load_file(Path(source).expanduser(), settings)


def load_file(path: Path, settings: Settings) -> Document:
    """Load a local file of a supported kind, recording its path, size, mtime and kind."""
    if not path.exists():
        raise RagError(f"{path} does not exist; check the path.")
    if path.is_dir():
        raise RagError(f"{path} is a folder; ingest it to load the files inside.")
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        what = f"a {path.suffix} file" if path.suffix else "a file with no extension"
        raise RagError(f"{path.name} is {what}, which can't be loaded; supported: {_SUPPORTED}.")
    try:
        data = path.read_bytes()
        stat = path.stat()
    except OSError as exc:
        raise RagError(f"Cannot read {path}: {exc.strerror}; check its permissions.") from None
    doc = _LOADERS[kind](data, path.name, settings)
    doc.source = str(path.absolute())
    doc.title = doc.title or path.stem
    modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
    doc.metadata.update({"kind": kind, "path": str(path.absolute()), "size": stat.st_size,
                         "mtime": modified})
    return doc


def _load_url(url: str, settings: Settings) -> Document:
    """Fetch a URL and load it by what the server says it is; the source stays the URL asked for."""
    from rag.fetch import fetch

    page = fetch(url, settings)
    name = urlsplit(page.final_url).path.rsplit("/", 1)[-1] or page.final_url
    if page.kind == "pdf":
        doc = load_pdf(page.body, name)
    elif page.kind == "text":
        doc = load_text(decode_bytes(page.body, header_charset(page.headers.get("content-type"))), name)
    else:
        html = decode_html(page.body, page.headers.get("content-type"))
        doc = _html_document(html, page.final_url, name, settings)
    doc.source = url
    doc.title = doc.title or name
    doc.metadata.update({"kind": page.kind, "url": page.final_url, "size": len(page.body),
                         "content_type": page.content_type})
    return doc


# -- text and Markdown ----------------------------------------------------------------------------


def load_text(text: str, name: str, markdown: bool = False) -> Document:
    """A plain-text or Markdown document; its title is the first heading or a short first line."""
    if "\x00" in text:
        raise RagError(f"{name} doesn't look like text (it holds binary data); check the file.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise RagError(f"{name} has no text; it is empty or only whitespace.")
    doc = Document(source=name, text=text, title=_text_title(text, markdown))
    if markdown and (headings := _markdown_headings(text)):
        doc.metadata["headings"] = headings
    return doc


def _markdown_headings(text: str) -> list[dict]:
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


def _text_title(text: str, markdown: bool) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if markdown:
        for line in lines[:20]:
            if line.startswith("#"):
                return line.lstrip("#").strip()[:_TITLE_MAX]
        return ""
    return _first_line_title(lines)


def _first_line_title(lines: list[str]) -> str:
    """The first of the opening lines that reads like a title: a few letters, not a paragraph."""
    for line in lines[:5]:
        if sum(c.isalpha() for c in line) >= 3 and len(line) <= _TITLE_MAX:
            return line
    return ""


def _text_file(data: bytes, name: str, settings: Settings) -> Document:
    return load_text(decode_bytes(data), name)


def _markdown_file(data: bytes, name: str, settings: Settings) -> Document:
    return load_text(decode_bytes(data), name, markdown=True)


# -- HTML -----------------------------------------------------------------------------------------


def _html_file(data: bytes, name: str, settings: Settings) -> Document:
    return _html_document(decode_html(data), None, name, settings)


def _html_document(html: str, url: str | None, name: str, settings: Settings) -> Document:
    """The article (or, when none is found, all visible text) of an HTML page."""
    doc = extract_html(html, url, settings.extractor, fallback=True)
    if not doc.text.strip():
        raise RagError(f"{name} has no visible text; check that it is the page you meant.")
    doc.title = doc.title or page_title(html)
    return doc


# -- PDF ------------------------------------------------------------------------------------------


def load_pdf(data: bytes, name: str) -> Document:
    """Text of every page, with `pages` recording where each page starts."""
    reader = _open_pdf(data, name)
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    unreadable: list[int] = []
    offset = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = (page.extract_text() or "").strip()
        except Exception:  # pypdf raises many kinds of error on damaged pages; keep the readable ones
            unreadable.append(number)
            continue
        if text:
            pages.append((number, offset))
            parts.append(text)
            offset += len(text) + 2
    if not parts:
        raise RagError(f"{name} has no text layer (it looks scanned or empty); run OCR on it first.")
    metadata = {"page_count": len(reader.pages)}
    if unreadable:
        metadata["unreadable_pages"] = unreadable
    text = "\n\n".join(parts)
    if headings := _pdf_headings(reader, text, dict(pages)):
        metadata["headings"] = headings
    return Document(source=name, text=text, title=_pdf_title(reader, parts[0]), metadata=metadata, pages=pages)


def _pdf_headings(reader, text: str, page_starts: dict[int, int]) -> list[dict]:
    """The PDF's outline (bookmarks) as headings: each where its title stands on its page, else where
    the page starts. A damaged outline gives none, never an error."""
    found: list[dict] = []

    def walk(items, level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            index = reader.get_destination_page_number(item)
            page = index + 1 if isinstance(index, int) else None
            title = " ".join(str(item.title or "").split())
            if title and page in page_starts:
                at = text.find(title, page_starts[page])
                start = at if 0 <= at < page_starts.get(page + 1, len(text)) else page_starts[page]
                found.append({"text": title, "level": level, "start": start})

    try:
        walk(reader.outline, 1)
    except Exception:  # pypdf raises many kinds of error on broken outlines; the text matters more
        return []
    return sorted(found, key=lambda h: h["start"])


def _open_pdf(data: bytes, name: str):
    """A pypdf reader, decrypted when it only has an empty user password."""
    import pypdf
    from pypdf.errors import DependencyError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise RagError(f"{name} is password-protected; remove the password and load it again.")
        len(reader.pages)  # walks the page tree, where broken files usually fail
    except RagError:
        raise
    except DependencyError:
        raise RagError(f"{name} is encrypted and needs the cryptography package to read; "
                       "pip install cryptography.") from None
    except Exception as exc:  # pypdf signals broken files with many exception types
        raise RagError(f"{name} could not be read as a PDF ({type(exc).__name__}); "
                       "check that the file is complete.") from None
    return reader


def _pdf_title(reader, first_page: str) -> str:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary shouldn't cost the text
        title = None
    if isinstance(title, str) and title.strip():
        return title.strip()[:_TITLE_MAX]
    return _first_line_title([line.strip() for line in first_page.splitlines() if line.strip()])


def _pdf_file(data: bytes, name: str, settings: Settings) -> Document:
    return load_pdf(data, name)


# -- DOCX -----------------------------------------------------------------------------------------


def load_docx(data: bytes, name: str) -> Document:
    """Paragraphs and tables in document order; table rows become `cell | cell` lines."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks, headings, offset = [], [], 0
        for item in document.iter_inner_content():
            text = _table_text(item) if isinstance(item, Table) else item.text.strip()
            if not text:
                continue
            if level := (None if isinstance(item, Table) else _heading_level(item)):
                headings.append({"text": " ".join(text.split()), "level": level, "start": offset})
            blocks.append(text)
            offset += len(text) + 2
        title = (document.core_properties.title or "").strip() or _docx_heading(document) if blocks else ""
    except Exception as exc:  # zip, XML and package errors, on opening or on reading a part whose
        # elements are missing (a document.xml without its body), all mean the same thing to a user
        raise RagError(f"{name} could not be read as a Word document ({type(exc).__name__}); "
                       "check that it is a complete .docx file.") from None
    if not blocks:
        raise RagError(f"{name} has no text; it holds no paragraphs or tables with words.")
    return Document(source=name, text="\n\n".join(blocks), title=title[:_TITLE_MAX],
                    metadata={"headings": headings} if headings else {})


def _heading_level(paragraph) -> int | None:
    """N for a paragraph in Word's "Heading N" style, None for any other."""
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    number = style.removeprefix("Heading").strip()
    return int(number) if style.startswith("Heading") and number.isdigit() else None


def _table_text(table) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell repeats once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _docx_heading(document) -> str:
    for paragraph in document.paragraphs[:50]:
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if paragraph.text.strip() and (style == "Title" or style.startswith("Heading")):
            return paragraph.text.strip()
    return ""


def _docx_file(data: bytes, name: str, settings: Settings) -> Document:
    return load_docx(data, name)


_LOADERS: dict[str, Callable[[bytes, str, Settings], Document]] = {
    "text": _text_file, "markdown": _markdown_file, "html": _html_file, "pdf": _pdf_file, "docx": _docx_file,
}
