"""Recursive character splitting (paragraph, line, sentence, word), keeping offsets into the text."""

from __future__ import annotations

import re

from rag.documents import Chunk, Document
from rag.errors import RagError
from rag.locations import unit_spans

# A chunk's size in characters and the overlap of neighbours, unless the settings say otherwise; the
# summaries read documents in passages of CHUNK_SIZE too.
CHUNK_SIZE = 500
CHUNK_OVERLAP = 0
# Tried in order: a piece that is still too long is split again at the next, finer boundary.
SEPARATORS = ("\n\n", "\n", r"(?<=[.!?])\s+", " ", "")


def _validate(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size < 1:
        raise RagError(f"Chunk size must be at least 1 character; got {chunk_size}.")
    if not 0 <= chunk_overlap < chunk_size:
        raise RagError(
            f"Chunk overlap must be between 0 and chunk size - 1 ({chunk_size - 1}); got {chunk_overlap}."
        )


def _pieces(text: str, start: int, end: int, level: int) -> list[tuple[int, int]]:
    """Split text[start:end] at the boundaries of `level`, keeping each separator with the piece before it."""
    sep = SEPARATORS[level]
    if sep == "":
        return [(i, i + 1) for i in range(start, end)]
    pattern = re.compile(sep if level == 2 else re.escape(sep))
    spans, cursor = [], start
    for match in pattern.finditer(text, start, end):
        if match.end() > cursor:
            spans.append((cursor, match.end()))
            cursor = match.end()
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _merge(spans: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily join consecutive spans up to `size`, starting each window `overlap` back where possible."""
    windows, i = [], 0
    while i < len(spans):
        start, j = spans[i][0], i
        while j + 1 < len(spans) and spans[j + 1][1] - start <= size:
            j += 1
        windows.append((start, spans[j][1]))
        if j + 1 >= len(spans):
            break
        nxt = j + 1
        # Step back over whole spans that fit within the overlap.
        while overlap and nxt - 1 > i and spans[j][1] - spans[nxt - 1][0] <= overlap:
            nxt -= 1
        i = nxt
    return windows


def _split(text: str, start: int, end: int, size: int, overlap: int, level: int = 0) -> list[tuple[int, int]]:
    """Windows over text[start:end]: runs of fitting pieces are merged, oversized pieces split finer."""
    if end - start <= size:
        return [(start, end)]
    windows, run = [], []
    for a, b in _pieces(text, start, end, level):
        if b - a <= size:
            run.append((a, b))
            continue
        windows += _merge(run, size, overlap)
        run = []
        windows += _split(text, a, b, size, overlap, level + 1)
    return windows + _merge(run, size, overlap)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_text(text: str, chunk_size: int = CHUNK_SIZE, chunk_overlap: int = CHUNK_OVERLAP) -> list[tuple[int, int]]:
    """(start, end) spans of chunks of at most `chunk_size` characters, whitespace trimmed."""
    _validate(chunk_size, chunk_overlap)
    spans: list[tuple[int, int]] = []
    for a, b in _split(text, 0, len(text), chunk_size, chunk_overlap):
        a, b = _trim(text, a, b)
        if b <= a or (spans and b <= spans[-1][1]):  # empty, or inside the previous chunk once trimmed
            continue
        if spans and a <= spans[-1][0]:  # holds the previous chunk once trimmed: keep this one only
            spans[-1] = (a, b)
        else:
            spans.append((a, b))
    return spans


def split_document(doc: Document, chunk_size: int = CHUNK_SIZE, chunk_overlap: int = CHUNK_OVERLAP) -> list[Chunk]:
    """Chunks of `doc` with their offsets and page numbers; none crosses from one slide, sheet or chapter to
    the next (rag.locations.UNITS), so each cites the one it is on."""
    _validate(chunk_size, chunk_overlap)
    return [
        Chunk(text=doc.text[low + a : low + b], start=low + a, end=low + b, page=doc.page_at(low + a))
        for low, high in unit_spans(doc.metadata, doc.pages, len(doc.text))
        for a, b in split_text(doc.text[low:high], chunk_size, chunk_overlap)
    ]
