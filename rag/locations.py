"""Where a passage sits in its document, in the document's own units (a PDF's page, a slide, a sheet and its
rows, an e-book's chapter), and whether its words were read by OCR: the one place every citation, search hit
and export takes them from."""

from __future__ import annotations

import re

# The `metadata["location"]` kinds whose units a chunk never crosses (rag.chunking): a slide, a sheet or a
# chapter stands alone, so its chunks cite it alone. A PDF's pages are not among them: its paragraphs run on
# from one page to the next.
UNITS = ("slide", "sheet", "chapter")
OCR_MARK = "OCR"
OCR_NOTE = "read by OCR from an image: some words may be misread"


def unit_spans(metadata: dict, pages: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """(start, end) of each unit a document's chunks stay within: its slides, sheets or chapters, else the
    whole text."""
    if (metadata or {}).get("location") not in UNITS or not pages:
        return [(0, length)]
    starts = [start for _, start in pages]
    if starts[0] > 0:
        starts.insert(0, 0)
    return [(a, b) for a, b in zip(starts, starts[1:] + [length]) if b > a]


def unit_label(metadata: dict, page: int | None, text: str = "") -> str:
    """A passage's place as a reader says it: "page 4", "slide 3", "sheet 'Budget', rows 2–40",
    "chapter 'The Title'"; empty for a document without pages. `text` is the passage (a sheet's rows are read
    from the labels its blocks begin with)."""
    if page is None:
        return ""
    metadata = metadata or {}
    kind = metadata.get("location") or "page"
    if kind == "sheet":
        name = _nth(metadata.get("sheets"), page)
        rows = _rows(text, name)
        label = f"sheet '{name}'" if name else f"sheet {page}"
        return f"{label}, {rows}" if rows else label
    if kind == "chapter":
        title = _nth(metadata.get("chapters"), page)
        return f"chapter '{title}'" if title else f"chapter {page}"
    return f"{kind} {int(page)}"


def read_by_ocr(metadata: dict, page: int | None) -> bool:
    """Whether a passage on `page` was recognised from an image (a scanned page, a photo) rather than read
    from the file's own text."""
    ocr_pages = (metadata or {}).get("ocr_pages") or []
    return bool(ocr_pages) and (page is None or page in ocr_pages)


def where(src) -> str:
    """The place of a hit or a cited source (an object or its dict): its `where`, else "page N" for a source
    saved before places were named."""
    get = src.get if isinstance(src, dict) else lambda name: getattr(src, name, None)
    label = get("where")
    if label:
        return str(label)
    page = get("page")
    return f"page {int(page)}" if page is not None else ""


def is_ocr(src) -> bool:
    """Whether a hit or a cited source (an object or its dict) holds words read by OCR."""
    return bool(src.get("ocr") if isinstance(src, dict) else getattr(src, "ocr", False))


def _nth(names, number: int) -> str:
    names = names if isinstance(names, list) else []
    return str(names[number - 1]).strip() if 0 < number <= len(names) else ""


def _rows(text: str, sheet: str) -> str:
    """ "rows 2–40" from the labels of the blocks in a passage (rag.loaders.tables: "Budget, rows 2–20:")."""
    name = re.escape(sheet) if sheet else ".*"
    pattern = re.compile(rf"^{name}, rows? (\d+)(?:–(\d+))?:$", re.MULTILINE)
    spans = [(int(m.group(1)), int(m.group(2) or m.group(1))) for m in pattern.finditer(text or "")]
    if not spans:
        return ""
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    return f"row {first}" if first == last else f"rows {first}–{last}"
