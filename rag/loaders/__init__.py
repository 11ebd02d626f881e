"""Turn sources (URLs, files, directories) into `Document`s, one module per family of formats.

`KINDS` maps a file's extension to its kind, `_LOADERS` a kind to the function that reads it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from rag.documents import Document
from rag.errors import RagError
from rag.extract import decode_bytes, decode_html, header_charset
from rag.loaders import ebook, images, mail, markup, office, tables
from rag.loaders.common import Loader, PageProgress, no_progress
from rag.loaders.markup import html_document, load_text
from rag.loaders.office import load_docx, load_pptx
from rag.loaders.pdf import load_pdf
from rag.settings import Settings

KINDS = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".org": "org", ".rst": "rst",
    ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf",
    ".docx": "docx", ".doc": "doc", ".odt": "odt", ".rtf": "rtf", ".pptx": "pptx", ".ppt": "ppt",
    ".xlsx": "spreadsheet", ".xlsm": "spreadsheet", ".xls": "spreadsheet", ".ods": "spreadsheet",
    ".csv": "csv", ".tsv": "tsv", ".epub": "epub", ".eml": "email", ".msg": "email",
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image", ".bmp": "image",
    ".gif": "image", ".webp": "image",
}
_SUPPORTED = ", ".join(sorted(KINDS))

__all__ = ["KINDS", "is_url", "expand_sources", "load_source", "load_file", "page_document", "load_text",
           "load_pdf", "load_docx", "load_pptx"]


def is_url(source: str) -> bool:
    """True for http and https URLs."""
    return urlsplit(source.strip()).scheme.lower() in ("http", "https")


def expand_sources(sources: list[str]) -> list[str]:
    """URLs as given; directories replaced by their files (recursively, sorted, hidden ones skipped); an
    e-mail followed by its attachments (`message::attachment`).

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
            files = [str(p.absolute()) for p in _files_under(path)]
        elif path.exists():
            files = [str(path.absolute())]
        else:
            files = [source]
        for file in files:
            expanded.append(file)
            expanded.extend(f"{file}{mail.SEPARATOR}{tail}" for tail in _attachments_of(Path(file)))
    return list(dict.fromkeys(expanded))


def _attachments_of(path: Path) -> list[str]:
    if KINDS.get(path.suffix.lower()) != "email" or not path.is_file():
        return []
    try:
        return mail.attachment_names(path.read_bytes(), path.name)
    except OSError:  # reported when the message itself is loaded
        return []


def _files_under(folder: Path) -> list[Path]:
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not any(part.startswith(".") for part in relative.parts) and path.is_file():
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def load_source(source: str, settings: Settings, progress: PageProgress = no_progress,
                early: Callable[[Document], None] | None = None) -> Document:
    """Load one URL, file or e-mail attachment into a Document; raises RagError with a sentence a user can
    act on. `progress(done, total)` follows the pages of a long read (OCR); a long scanned PDF hands `early`
    the document of the pages read so far, now and then, to be searchable before the last page is read."""
    if is_url(source):
        return _load_url(source.strip(), settings)
    path = Path(source).expanduser()
    if mail.SEPARATOR in source and not path.exists():
        return _load_attachment(source, settings, progress)
    return load_file(path, settings, progress, early)


def load_file(path: Path, settings: Settings, progress: PageProgress = no_progress,
              early: Callable[[Document], None] | None = None) -> Document:
    """Load a local file of a supported kind, recording its path, size, mtime and kind."""
    if not path.exists():
        raise RagError(f"{path} does not exist; check the path.")
    if path.is_dir():
        raise RagError(f"{path} is a folder; ingest it to load the files inside.")
    kind = _kind(path.name)
    try:
        data = path.read_bytes()
        stat = path.stat()
    except OSError as exc:
        raise RagError(f"Cannot read {path}: {exc.strerror}; check its permissions.") from None
    modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc).isoformat(timespec="seconds")

    def finish(doc: Document) -> Document:
        doc.source = str(path.absolute())
        doc.title = doc.title or path.stem
        doc.metadata.update({"kind": kind, "path": str(path.absolute()), "size": stat.st_size,
                             "mtime": modified})
        return doc

    if early is not None and kind == "pdf":  # only a scanned PDF is long enough to be read in parts
        return finish(_guarded(lambda: load_pdf(data, path.name, settings, progress,
                                                lambda part: early(finish(part))), path.name, kind))
    return finish(load_bytes(data, path.name, kind, settings, progress))


def _kind(name: str) -> str:
    suffix = Path(name).suffix
    kind = KINDS.get(suffix.lower())
    if kind is None:
        what = f"a {suffix} file" if suffix else "a file with no extension"
        raise RagError(f"{name} is {what}, which can't be loaded; supported: {_SUPPORTED}.")
    return kind


def load_bytes(data: bytes, name: str, kind: str, settings: Settings,
               progress: PageProgress = no_progress) -> Document:
    """A file's bytes read by the loader of its kind; any error a loader lets slip is one sentence too."""
    return _guarded(lambda: _LOADERS[kind](data, name, settings, progress), name, kind)


def _guarded(read: Callable[[], Document], name: str, kind: str) -> Document:
    try:
        return read()
    except RagError:
        raise
    except MemoryError:
        raise RagError(f"{name} needed more memory than there is to read; split it.") from None
    except RecursionError:
        raise RagError(f"{name} is nested too deeply to read; check the file.") from None
    except Exception as exc:  # a library's own error on input nobody foresaw: one sentence, the batch goes on
        raise RagError(f"{name} could not be read as {kind} ({type(exc).__name__}); "
                       "check that the file is complete.") from None


def _load_attachment(source: str, settings: Settings, progress: PageProgress) -> Document:
    """An e-mail's attachment, by `message::name[::name…]`, named after the message."""
    message_path, *names = source.split(mail.SEPARATOR)
    path = Path(message_path).expanduser()
    if not path.is_file():
        raise RagError(f"{path} does not exist; check the path.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RagError(f"Cannot read {path}: {exc.strerror}; check its permissions.") from None
    file_name, content, subject = mail.attachment(data, path.name, names)
    label = f"{file_name} (attached to {path.name})"
    doc = load_bytes(content, label, _kind(file_name), settings, progress)
    doc.source = str(path.absolute()) + mail.SEPARATOR + mail.SEPARATOR.join(names)
    doc.title = f"{doc.title or Path(file_name).stem} — attachment of {subject or path.name}"
    doc.metadata.update({"kind": _kind(file_name), "path": str(path.absolute()), "attachment": file_name,
                         "size": len(content)})
    return doc


def _load_url(url: str, settings: Settings) -> Document:
    """Fetch a URL and load it by what the server says it is; the source stays the URL asked for."""
    from rag.fetch import fetch

    return page_document(fetch(url, settings), url, settings)


def page_document(page, url: str, settings: Settings) -> Document:
    """A fetched page (`rag.fetch.FetchResult`) as a document whose source is `url`, the address asked for."""
    name = urlsplit(page.final_url).path.rsplit("/", 1)[-1] or page.final_url
    if page.kind == "pdf":
        doc = load_pdf(page.body, name, settings)
    elif page.kind == "text":
        doc = load_text(decode_bytes(page.body, header_charset(page.headers.get("content-type"))), name)
    else:
        html = decode_html(page.body, page.headers.get("content-type"))
        doc = html_document(html, page.final_url, name, settings)
    doc.source = url
    doc.title = doc.title or name
    doc.metadata.update({"kind": page.kind, "url": page.final_url, "size": len(page.body),
                         "content_type": page.content_type})
    return doc


def _pdf_file(data: bytes, name: str, settings: Settings, progress: PageProgress) -> Document:
    return load_pdf(data, name, settings, progress)


def _email_file(data: bytes, name: str, settings: Settings, progress: PageProgress) -> Document:
    return mail.message_document(data, name)


_LOADERS: dict[str, Loader] = {
    "text": markup.text_file, "markdown": markup.markdown_file, "org": markup.org_file, "rst": markup.rst_file,
    "html": markup.html_file, "pdf": _pdf_file, "docx": office.docx_file, "doc": office.doc_file,
    "odt": office.odt_file, "rtf": office.rtf_file, "pptx": office.pptx_file, "ppt": office.ppt_file,
    "spreadsheet": tables.spreadsheet_file, "csv": tables.delimited_file, "tsv": tables.tsv_file,
    "epub": ebook.epub_file, "email": _email_file, "image": images.image_file,
}
