"""EPUB e-books: the chapters in reading order, each a heading, `pages` being the chapter numbers."""

from __future__ import annotations

import io
import re

from rag.documents import Document
from rag.errors import RagError
from rag.loaders.common import TITLE_MAX, check_container, join_blocks, one_line
from rag.loaders.markup import html_text
from rag.settings import Settings


def epub_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    """Every spine item's text, named by the table of contents or its first heading."""
    import ebooklib
    from ebooklib import epub

    check_container(data, name, "an EPUB e-book")
    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": False})
        toc = _toc_titles(book.toc)
        chapters = []
        for item_id, _ in book.spine:
            item = book.get_item_with_id(item_id)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
                continue
            html = item.get_content()
            text = html_text(html)
            if text:
                chapters.append((toc.get(item.get_name()) or _first_heading(html) or "", text))
        metadata_title = book.get_metadata("DC", "title")
    except Exception as exc:  # ebooklib raises zip, XML and key errors for a damaged book
        raise RagError(f"{name} could not be read as an EPUB e-book ({type(exc).__name__}); "
                       "check that it is complete and has no DRM.") from None
    if not chapters:
        raise RagError(f"{name} has no text; its chapters hold no words.")
    text, starts = join_blocks([body for _, body in chapters])
    headings = [{"text": title[:TITLE_MAX], "level": 1, "start": start}
                for (title, _), start in zip(chapters, starts) if title]
    title = one_line(metadata_title[0][0]) if metadata_title else ""
    metadata = {"location": "chapter", "chapter_count": len(chapters),
                "chapters": [one_line(title)[:TITLE_MAX] for title, _ in chapters]}
    if headings:
        metadata["headings"] = headings
    return Document(source=name, text=text, title=title[:TITLE_MAX], metadata=metadata,
                    pages=[(number, start) for number, start in enumerate(starts, start=1)])


def _toc_titles(toc) -> dict[str, str]:
    """File name to the first table-of-contents title that points into it."""
    titles: dict[str, str] = {}
    for entry in toc:
        if isinstance(entry, tuple):  # (section, children)
            section, children = entry
            titles.update({k: v for k, v in _toc_titles([section, *children]).items() if k not in titles})
            continue
        href = getattr(entry, "href", "") or ""
        file_name = href.split("#", 1)[0]
        if file_name and file_name not in titles and getattr(entry, "title", ""):
            titles[file_name] = one_line(entry.title)
    return titles


def _first_heading(html: bytes) -> str:
    match = re.search(rb"<h[1-3][^>]*>(.*?)</h[1-3]>", html, re.IGNORECASE | re.DOTALL)
    return one_line(html_text(match.group(1))) if match else ""
