"""The records that flow through the pipeline: a loaded document and its chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass
class Document:
    """Text loaded from one source, with where each page starts (for PDFs)."""

    source: str
    text: str
    title: str = ""
    metadata: dict = field(default_factory=dict)
    # (page_number, start_offset) pairs, ascending by offset; empty when pages don't apply.
    pages: list[tuple[int, int]] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def page_at(self, offset: int) -> int | None:
        """The page number that holds character `offset`, or None when pages don't apply."""
        page = None
        for number, start in self.pages:
            if start > offset:
                break
            page = number
        return page


@dataclass
class Chunk:
    """A span of a document's text, with its offsets in that text."""

    text: str
    start: int
    end: int
    page: int | None = None
