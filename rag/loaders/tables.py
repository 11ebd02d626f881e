"""Spreadsheets and delimited text (xlsx, xls, ods, csv, tsv): each sheet in blocks of rows, every block
labelled with its sheet and row range and carrying the header row, so that a chunk makes sense alone."""

from __future__ import annotations

import csv
import io

from rag.documents import Document
from rag.errors import RagError
from rag.extract import decode_bytes
from rag.loaders.common import TITLE_MAX, check_container, is_zip, join_blocks, one_line
from rag.settings import Settings

MAX_SHEETS = 500
MAX_CELLS = 2_000_000
_HEADER_SCAN = 20


def spreadsheet_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    """An Excel (xlsx, xlsm, xls) or OpenDocument (ods) workbook, read by calamine."""
    from python_calamine import CalamineWorkbook

    if is_zip(data):
        check_container(data, name, "a spreadsheet")
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:  # calamine raises its own error types for every damaged or encrypted file
        raise RagError(f"{name} could not be read as a spreadsheet ({_reason(exc)}); "
                       "check that it is complete and not password-protected.") from None
    if len(book.sheet_names) > MAX_SHEETS:
        raise RagError(f"{name} has {len(book.sheet_names)} sheets, more than the {MAX_SHEETS} that are read; "
                       "split the workbook.")
    sheets, cells = [], 0
    for sheet_name in book.sheet_names:
        try:
            sheet = book.get_sheet_by_name(sheet_name)
            cells += sheet.height * sheet.width
            if cells > MAX_CELLS:
                raise RagError(f"{name} holds more than {MAX_CELLS:,} cells; split the workbook.")
            sheets.append((sheet_name, sheet.to_python(skip_empty_area=False)))
        except RagError:
            raise
        except Exception:  # one unreadable sheet (a chart sheet, a damaged part) costs only itself
            sheets.append((sheet_name, []))
    return table_document(sheets, name, settings.chunk_size)


def _reason(exc: Exception) -> str:
    text = one_line(str(exc))
    return text[:120] if text else type(exc).__name__


def delimited_file(data: bytes, name: str, settings: Settings, progress=None, delimiter: str | None = None) -> Document:
    """CSV (its delimiter sniffed among , ; | and tab) or, with delimiter tab, TSV."""
    text = decode_bytes(data)
    if "\x00" in text:
        raise RagError(f"{name} doesn't look like text (it holds binary data); check the file.")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:20_000], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    csv.field_size_limit(10_000_000)
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise RagError(f"{name} could not be read as delimited text ({exc}); check the file.") from None
    if sum(len(row) for row in rows) > MAX_CELLS:
        raise RagError(f"{name} holds more than {MAX_CELLS:,} cells; split the file.")
    stem = name.rsplit(".", 1)[0]
    return table_document([(stem, rows)], name, settings.chunk_size)


def tsv_file(data: bytes, name: str, settings: Settings, progress=None) -> Document:
    return delimited_file(data, name, settings, delimiter="\t")


def table_document(sheets: list[tuple[str, list[list]]], name: str, block_size: int) -> Document:
    """Sheets of rows as blocks of at most `block_size` characters (at least one row each); `pages` are the
    sheet numbers, each sheet a heading."""
    blocks, block_sheets, headings = [], [], []
    for number, (sheet_name, rows) in enumerate(sheets, start=1):
        lines = [(i + 1, _row_text(row)) for i, row in enumerate(rows)]
        lines = [(n, line) for n, line in lines if line]
        if not lines:
            continue
        header_at = _header_index(rows)
        header = _row_text(rows[header_at]) if header_at is not None else ""
        sheet_blocks = list(_blocks(sheet_name, lines, header, header_at, block_size))
        headings.append((len(blocks), sheet_name))
        blocks.extend(sheet_blocks)
        block_sheets.extend([number] * len(sheet_blocks))
    if not blocks:
        raise RagError(f"{name} has no text; its sheets hold no cells with values.")
    text, starts = join_blocks(blocks)
    pages = [(sheet, start) for i, (sheet, start) in enumerate(zip(block_sheets, starts))
             if i == 0 or block_sheets[i - 1] != sheet]
    metadata = {"location": "sheet", "sheets": [sheet for sheet, _ in sheets],
                "headings": [{"text": title, "level": 1, "start": starts[i]} for i, title in headings]}
    title = sheets[0][0] if len(sheets) == 1 else name.rsplit(".", 1)[0]
    return Document(source=name, text=text, title=title[:TITLE_MAX], metadata=metadata, pages=pages)


def _blocks(sheet_name: str, lines: list[tuple[int, str]], header: str, header_at: int | None, size: int):
    """Runs of rows under a label line and the header, each run kept within `size` characters."""
    body = [(n, line) for n, line in lines if header_at is None or n != header_at + 1]
    before = [(n, line) for n, line in body if header_at is not None and n <= header_at]
    after = [(n, line) for n, line in body if header_at is None or n > header_at + 1]
    if before:  # a title or notes above the header: a block of their own, without the header
        yield from _runs(sheet_name, before, "", size)
    if not after and header:
        after = [(header_at + 1, header)]
        header = ""
    yield from _runs(sheet_name, after, header, size)


def _runs(sheet_name: str, lines: list[tuple[int, str]], header: str, size: int):
    run: list[tuple[int, str]] = []
    used = 0
    for n, line in lines:
        if run and used + len(line) + 1 > size:
            yield _block(sheet_name, run, header)
            run, used = [], 0
        if not run:
            used = len(sheet_name) + 30 + len(header)
        run.append((n, line))
        used += len(line) + 1
    if run:
        yield _block(sheet_name, run, header)


def _block(sheet_name: str, run: list[tuple[int, str]], header: str) -> str:
    first, last = run[0][0], run[-1][0]
    label = f"{sheet_name}, row {first}" if first == last else f"{sheet_name}, rows {first}–{last}"
    return "\n".join([label + ":"] + ([header] if header else []) + [line for _, line in run])


def _row_text(row: list) -> str:
    cells = [_cell(value) for value in row]
    while cells and not cells[-1]:
        cells.pop()
    return " | ".join(cells) if any(cells) else ""


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return one_line(str(value))


def _header_index(rows: list[list]) -> int | None:
    """The first row, among the first 20, that fills at least half as many cells as the fullest of them
    (and two at least): the table's header, below any title lines."""
    counts = [sum(1 for v in row if _cell(v)) for row in rows[:_HEADER_SCAN]]
    if not counts or max(counts) < 2:
        return None
    return next(i for i, count in enumerate(counts) if count >= max(2, max(counts) / 2))
