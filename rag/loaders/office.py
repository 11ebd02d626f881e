"""Word, PowerPoint, OpenDocument text and RTF: paragraphs, tables, slides, with headings and locations."""

from __future__ import annotations

import io

from rag.documents import Document
from rag.errors import RagError
from rag.loaders.common import TITLE_MAX, check_container, first_line_title, is_ole, is_zip, join_blocks, one_line
from rag.settings import Settings

# -- DOCX -----------------------------------------------------------------------------------------


def load_docx(data: bytes, name: str) -> Document:
    """Paragraphs and tables in document order; table rows become `cell | cell` lines."""
    import docx
    from docx.table import Table

    check_container(data, name, "a Word document")
    try:
        document = docx.Document(io.BytesIO(data))
        blocks, headings, offset = [], [], 0
        for item in document.iter_inner_content():
            text = _table_text(item) if isinstance(item, Table) else item.text.strip()
            if not text:
                continue
            if level := (None if isinstance(item, Table) else _heading_level(item)):
                headings.append({"text": one_line(text), "level": level, "start": offset})
            blocks.append(text)
            offset += len(text) + 2
        title = (document.core_properties.title or "").strip() or _docx_heading(document) if blocks else ""
    except Exception as exc:  # zip, XML and package errors, on opening or on reading a part whose
        # elements are missing (a document.xml without its body), all mean the same thing to a user
        raise RagError(f"{name} could not be read as a Word document ({type(exc).__name__}); "
                       "check that it is a complete .docx file.") from None
    if not blocks:
        raise RagError(f"{name} has no text; it holds no paragraphs or tables with words.")
    return Document(source=name, text="\n\n".join(blocks), title=title[:TITLE_MAX],
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
            cells.append(one_line(cell.text))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _docx_heading(document) -> str:
    for paragraph in document.paragraphs[:50]:
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if paragraph.text.strip() and (style == "Title" or style.startswith("Heading")):
            return paragraph.text.strip()
    return ""


def docx_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return load_docx(data, name)


def doc_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    """An old .doc: its piece table's text (rag.loaders.word97), or a .docx when it really is one."""
    from rag.loaders.word97 import doc_text

    if is_zip(data):
        return load_docx(data, name)
    if not is_ole(data):
        raise RagError(f"{name} is not a Word document (neither Word 97-2003 nor .docx); check the file.")
    text = doc_text(data, name)
    if not text:
        raise RagError(f"{name} has no text; it holds no paragraphs with words.")
    return Document(source=name, text=text, title=first_line_title(text.splitlines()))


# -- PowerPoint -----------------------------------------------------------------------------------


def load_pptx(data: bytes, name: str) -> Document:
    """One block per slide (its title, text frames, tables and notes), `pages` being the slide numbers and
    each titled slide a heading."""
    import pptx

    check_container(data, name, "a PowerPoint file")
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        slides = [(number, *_slide_text(slide)) for number, slide in enumerate(deck.slides, start=1)]
        core_title = (deck.core_properties.title or "").strip()
    except Exception as exc:  # zip, XML and package errors all mean the same thing to a user
        raise RagError(f"{name} could not be read as a PowerPoint file ({type(exc).__name__}); "
                       "check that it is a complete .pptx file.") from None
    slides = [(number, title, text) for number, title, text in slides if text]
    if not slides:
        raise RagError(f"{name} has no text; its slides hold no words.")
    text, starts = join_blocks([body for _, _, body in slides])
    headings = [{"text": title, "level": 1, "start": start}  # a title placeholder holding a paragraph is no title
                for (_, title, _), start in zip(slides, starts) if title and len(title) <= TITLE_MAX]
    metadata = {"location": "slide", "slide_count": len(deck.slides)}
    if headings:
        metadata["headings"] = headings
    title = core_title or (headings[0]["text"] if headings else "")
    return Document(source=name, text=text, title=title[:TITLE_MAX], metadata=metadata,
                    pages=[(number, start) for (number, _, _), start in zip(slides, starts)])


def _slide_text(slide) -> tuple[str, str]:
    """The slide's title and its whole text: the title first, then every shape in reading order, then notes."""
    title_shape = slide.shapes.title
    title = one_line(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else ""
    lines = [title] if title else []
    for shape in sorted(_shapes(slide.shapes), key=lambda s: ((s.top or 0), (s.left or 0))):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if shape.has_text_frame:
            lines.extend(p.strip() for p in shape.text_frame.text.splitlines() if p.strip())
        elif getattr(shape, "has_table", False) and shape.has_table:
            lines.extend(" | ".join(one_line(cell.text) for cell in row.cells) for row in shape.table.rows)
    if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None and notes.text.strip():
        lines.append("Notes: " + notes.text.strip())
    return title, "\n".join(line for line in lines if line)


def _shapes(shapes):
    """Shapes, groups opened."""
    for shape in shapes:
        if shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
            yield from _shapes(shape.shapes)
        else:
            yield shape


def pptx_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return load_pptx(data, name)


def ppt_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    """An old .ppt: read when it is really a .pptx (a zip) by its content, else refused in one sentence."""
    if is_zip(data):
        return load_pptx(data, name)
    raise RagError(f"{name} is a PowerPoint 97-2003 .ppt file, which can't be read here; save it as .pptx "
                   "(or PDF) and load that.")


# -- OpenDocument text and RTF --------------------------------------------------------------------


def odt_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    """Headings, paragraphs, list items and table rows of an OpenDocument text, in order."""
    from odf import teletype
    from odf.opendocument import load
    from odf.namespaces import TABLENS, TEXTNS

    check_container(data, name, "an OpenDocument text")
    try:
        document = load(io.BytesIO(data))
    except Exception as exc:  # odfpy raises zip, XML and key errors for a damaged package
        raise RagError(f"{name} could not be read as an OpenDocument text ({type(exc).__name__}); "
                       "check that the file is complete.") from None
    blocks, headings, offset = [], [], 0

    def walk(node) -> None:
        nonlocal offset
        for child in node.childNodes:
            if child.qname == (TEXTNS, "h") or child.qname == (TEXTNS, "p"):
                text = teletype.extractText(child).strip()
                if text:
                    if child.qname == (TEXTNS, "h"):
                        level = int(child.getAttrNS(TEXTNS, "outline-level") or 1)
                        headings.append({"text": one_line(text), "level": level, "start": offset})
                    blocks.append(text)
                    offset += len(text) + 2
            elif child.qname == (TABLENS, "table-row"):
                cells = [one_line(teletype.extractText(c)) for c in child.childNodes
                         if c.qname == (TABLENS, "table-cell")]
                if any(cells):
                    blocks.append(" | ".join(cells))
                    offset += len(blocks[-1]) + 2
            elif getattr(child, "childNodes", None):
                walk(child)

    walk(document.text)
    if not blocks:
        raise RagError(f"{name} has no text; it holds no paragraphs with words.")
    title = _odf_title(document) or (headings[0]["text"] if headings else first_line_title(blocks))
    return Document(source=name, text="\n\n".join(blocks), title=title[:TITLE_MAX],
                    metadata={"headings": headings} if headings else {})


def _odf_title(document) -> str:
    from odf import dc, teletype

    titles = document.meta.getElementsByType(dc.Title) if document.meta else []
    return one_line(teletype.extractText(titles[0])) if titles else ""


def rtf_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    """An RTF document's text, paragraphs kept."""
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip()[:5] == b"{\\rtf":
        raise RagError(f"{name} could not be read as RTF (it does not start with {{\\rtf); check the file.")
    try:
        text = rtf_to_text(data.decode("latin-1"), errors="replace")
    except Exception as exc:  # striprtf's parser fails in several ways on damaged input
        raise RagError(f"{name} could not be read as RTF ({type(exc).__name__}); check the file.") from None
    paragraphs = [one_line(p) for p in text.replace("\r", "\n").split("\n")]
    text = "\n\n".join(p for p in paragraphs if p)
    if not text:
        raise RagError(f"{name} has no text; it holds no paragraphs with words.")
    return Document(source=name, text=text, title=first_line_title(text.split("\n\n")))

