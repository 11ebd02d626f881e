"""PDF: each page's text layer, OCR for pages that have only images, the outline as headings."""

from __future__ import annotations

import io
import math
from typing import Callable

from rag import ocr
from rag.documents import Document
from rag.errors import RagError
from rag.loaders.common import TITLE_MAX, first_line_title, no_progress
from rag.settings import Settings

OCR_DPI = 300
EARLY_PAGES = 10
# A page with an image and less text than this is a scan with a stamp (a page number, a Bates number, a
# scanner's footer) on it: it is read by OCR, which reads the stamp too.
STAMP_CHARACTERS = 40


def load_pdf(data: bytes, name: str, settings: Settings | None = None, progress=no_progress,
             early: Callable[[Document], None] | None = None) -> Document:
    """Text of every page, with `pages` recording where each page starts; pages that hold only images are
    read by OCR (with settings given) and listed in `metadata["ocr_pages"]`. A long scan hands `early`
    the pages read so far every EARLY_PAGES pages, so they can be searched before the last is read."""
    reader = _open_pdf(data, name)
    texts: dict[int, str] = {}
    unreadable: list[int] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            texts[number] = (page.extract_text() or "").strip()
        except Exception:  # pypdf raises many kinds of error on damaged pages; keep the readable ones
            unreadable.append(number)
    scanned = [n for n, text in texts.items()
               if len(text) < STAMP_CHARACTERS and _has_images(reader.pages[n - 1])]
    read_by_ocr: list[int] = []
    waiting = set(scanned)

    def page_read(i: int, text: str | None) -> None:
        number = scanned[i]
        waiting.discard(number)
        if text is None:
            unreadable.append(number)
        elif text and len(text) >= len(texts[number]):
            texts[number] = text
            read_by_ocr.append(number)
        done = len(scanned) - len(waiting)
        if early and len(scanned) > EARLY_PAGES and done % EARLY_PAGES == 0 and waiting:
            upto = min(waiting) - 1  # the pages before the first one still being read
            if any(texts[n] for n in texts if n <= upto):
                partial = _document(reader, name, texts, upto, unreadable, read_by_ocr)
                partial.metadata["partial"] = f"pages 1–{upto} of {len(reader.pages)}, the rest being read"
                early(partial)

    if settings is not None and scanned and (ocr.available() or not any(texts.values())):
        _ocr_pdf_pages(data, scanned, name, settings, progress, page_read)
    return _document(reader, name, texts, len(reader.pages), unreadable, read_by_ocr)


def _document(reader, name: str, texts: dict[int, str], upto: int, unreadable: list[int],
              read_by_ocr: list[int]) -> Document:
    """The document of pages 1..upto: their text, where each starts, outline, title and OCR marks."""
    pages, parts, offset = [], [], 0
    for number in sorted(n for n in texts if n <= upto):
        if texts[number]:
            pages.append((number, offset))
            parts.append(texts[number])
            offset += len(texts[number]) + 2
    if not parts:
        raise RagError(f"{name} has no text layer and no page image that OCR could read (it looks empty); "
                       "check that it is the document you meant.")
    metadata: dict = {"page_count": len(reader.pages)}
    if unreadable:
        metadata["unreadable_pages"] = sorted(unreadable)
    if ocr_pages := sorted(n for n in read_by_ocr if n <= upto):
        metadata.update({"ocr_pages": ocr_pages, "ocr_engine": "tesseract"})
    text = "\n\n".join(parts)
    if headings := _pdf_headings(reader, text, dict(pages)):
        metadata["headings"] = headings
    first = reader.pages[pages[0][0] - 1]
    title = _pdf_title(reader, first if pages[0][0] not in read_by_ocr else None, parts[0])
    return Document(source=name, text=text, title=title, metadata=metadata, pages=pages)


def _has_images(page) -> bool:
    try:
        resources = page.get("/Resources") or {}
        xobjects = resources.get("/XObject") or {}
        return any(xobjects[key].get_object().get("/Subtype") in ("/Image", "/Form") for key in xobjects)
    except Exception:  # a damaged resource dictionary: let OCR look at the page
        return True


def _ocr_pdf_pages(data: bytes, numbers: list[int], name: str, settings: Settings, progress,
                   page_read: Callable[[int, str | None], None]) -> list[str | None]:
    """The pages rendered at 300 dpi (fewer where that would pass the pixel cap) and read by OCR."""
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise RagError(f"{name} has pages without a text layer that could not be rendered for OCR ({exc}).") from None

    def render(i: int):
        try:
            page = pdf[numbers[i] - 1]
            width, height = page.get_size()
            scale = min(OCR_DPI / 72, math.sqrt(ocr.MAX_PIXELS / 2 / max(width * height, 1)))
            return page.render(scale=scale).to_pil()  # colour: grey renders lost digits of a scanned table
        except (pypdfium2.PdfiumError, ValueError, MemoryError) as exc:
            raise RagError(f"Page {numbers[i]} of {name} could not be rendered for OCR ({exc}).") from None

    try:
        return ocr.ocr_pages(len(numbers), render, name, settings.n_threads, progress, page_read)
    finally:
        pdf.close()


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
    """A pypdf reader, decrypted when it only has an empty user password (copy protection alone)."""
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise RagError(f"{name} is password-protected (it needs a password to open); remove the password and load it again.")
        len(reader.pages)  # walks the page tree, where broken files usually fail
    except RagError:
        raise
    except FileNotDecryptedError:
        raise RagError(f"{name} is password-protected (it needs a password to open); remove the password and load it again.") from None
    except DependencyError:
        raise RagError(f"{name} is encrypted and needs the cryptography package to read; "
                       "pip install -r requirements.txt.") from None
    except Exception as exc:  # pypdf signals broken files with many exception types
        raise RagError(f"{name} could not be read as a PDF ({type(exc).__name__}); "
                       "check that the file is complete.") from None
    return reader


def _pdf_title(reader, first_page, first_text: str) -> str:
    """The info dictionary's title, else the largest type on the first page (all its lines), else the
    first line that reads like a title."""
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary shouldn't cost the text
        title = None
    if isinstance(title, str) and len(title.strip()) >= 3 and not title.strip().lower().startswith(
            ("microsoft word", "untitled")):
        return " ".join(title.split())[:TITLE_MAX]
    if first_page is not None and (largest := _largest_type(first_page)):
        return largest
    return first_line_title([line.strip() for line in first_text.splitlines() if line.strip()])


def _largest_type(page) -> str:
    """The text set in the page's largest type in its top 40%, when that is larger than the body text and
    reads as a title (a few letters, at most two lines' worth); rotated text (an arXiv stamp) is left out."""
    pieces: list[tuple[float, float, str]] = []

    def visit(text, cm, tm, font, size):
        if text.strip() and not (tm[1] or tm[2] or cm[1] or cm[2]):
            pieces.append((round(size * abs(tm[3] * cm[3]), 1), tm[5] * cm[3] + cm[5], text))

    try:
        page.extract_text(visitor_text=visit)
        top = float(page.mediabox.bottom) + 0.6 * float(page.mediabox.height)
    except Exception:  # the visitor is a nicety: the text itself was read already
        return ""
    weighted = sorted((size, len(text)) for size, _, text in pieces)
    half, seen, body = sum(n for _, n in weighted) / 2, 0, 0.0
    for size, n in weighted:
        seen += n
        if seen >= half:
            body = size
            break
    high = [(size, text) for size, y, text in pieces if y >= top]
    if not high:
        return ""
    largest = max(size for size, _ in high)
    title = " ".join("".join(text for size, text in high if size >= largest * 0.95).split())
    letters = sum(c.isalpha() for c in title)
    return title if largest > body * 1.15 and letters >= 3 and len(title) <= TITLE_MAX * 2 else ""
