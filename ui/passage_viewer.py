"""The viewer that opens a cited passage inside its document, as escaped HTML."""

from __future__ import annotations

from typing import Sequence

from rag.locations import is_ocr, where
from ui.escaping import escape_html, one_line, source_html
from ui.formatting import field

VIEWER_EMPTY = '<div class="viewer empty">Click a [n] in an answer to read that passage in its document.</div>'


def passage_html(src, doc_text: str | None, pages: Sequence = (), context: int = 1200) -> str:
    """A cited passage highlighted inside its document: its page for a PDF, else the text around it.

    `src` is the source as the answer saw it (title, source, page, start, end, text); the passage is
    found at its stored offsets, or by its text when the document has changed since.
    """
    passage = str(field(src, "text") or "")
    head = (f'<div class="viewer-head"><b>[{int(field(src, "n") or 0)}] '
            f'{escape_html(one_line(field(src, "title"), 120) or "(untitled)")}</b><br>'
            f'{source_html(field(src, "source"), where(src), is_ocr(src))}</div>')
    start, end = field(src, "start"), field(src, "end")
    if doc_text is None or start is None or doc_text[start:end] != passage:
        found = doc_text.find(passage) if doc_text and passage else -1
        if found < 0:
            note = "The document is no longer in the collection, or has changed; this is the passage as cited."
            return (f'<div class="viewer">{head}<p class="viewer-note">{note}</p>'
                    f'<div class="doc"><mark id="cited">{escape_html(passage)}</mark></div></div>')
        start, end = found, found + len(passage)
    low, high = max(0, start - context), min(len(doc_text), end + context)
    page = field(src, "page")
    if page is not None and pages:
        starts = dict(pages)  # the whole page (slide, sheet, chapter) the passage is on, unless it is long
        if page in starts:
            later = [s for p, s in pages if s > starts[page]]
            unit = (min(starts[page], start), max(end, later[0] if later else len(doc_text)))
            if unit[1] - unit[0] <= 4 * context + (end - start):
                low, high = unit
    before = ("… " if low > 0 else "") + doc_text[low:start]
    after = doc_text[end:high] + (" …" if high < len(doc_text) else "")
    place = where(src) if page is not None and pages else ""
    note = f'<p class="viewer-note">{escape_html(place[:1].upper() + place[1:])} of the document.</p>' if place else ""
    return (f'<div class="viewer">{head}{note}<div class="doc">{escape_html(before)}'
            f'<mark id="cited">{escape_html(passage)}</mark>{escape_html(after)}</div></div>')
