"""An ingest's progress as one fraction of the whole, from the events `Collection.ingest` reports.

Each source is an equal share of the bar: the first part of it while it is read (fetched, its pages OCR'd one
by one, extracted), the rest while it is indexed (chunked, embedded with the others of its group, written). A
source that needs no indexing (unchanged, failed, empty) has its whole share when it is read, so the bar
advances with every file and every page and reaches 1 when the last source is done, not at a stage boundary.
"""

from __future__ import annotations

READ_SHARE = 0.5  # of each source's share: being read; the rest is being indexed
EMBED_SHARE = 0.8  # of indexing a group: embedding its chunks; the rest is writing its documents


class IngestProgress:
    """Turns `progress(stage, done, total, source)` events into a fraction of the ingest done, which only grows.

    `sources` is how many are ingested, when known before the first event (else the `fetch` events say it,
    else the documents seen so far count). The stage `done` (`Collection.add_documents`' last event) is 1.
    """

    def __init__(self, sources: int | None = None):
        self.sources = sources or 0
        self.current = 0  # the index of the source being read
        self.read = 0.0  # sources read, with a fraction of the one whose pages are being read
        self.finished = 0  # sources indexed, or needing none
        self.waiting = 0  # documents chunked, not yet in a group being embedded
        self.group = 0  # documents of the group being embedded and written
        self.part = 0.0  # how much of that group is done, 0 to 1
        self.seen = 0  # documents that reached chunking (the count when no one says how many sources)
        self.fraction = 0.0

    def update(self, stage: str, done: int, total: int, source: str | None = None) -> float:
        """The fraction after this event: 0 to 1, never less than before."""
        step = min(done, total) / max(total, 1)
        if stage == "done":
            self.read = self.finished = self.sources = max(self.sources, self.seen, 1)
        elif stage == "fetch":
            self.sources, self.current = max(self.sources, total), done
            self.read = max(self.read, float(done))
        elif stage == "ocr":
            self.read = max(self.read, self.current + step)
        elif stage == "extract":
            self.sources = max(self.sources, total)
            self.read = max(self.read, float(done))
        elif stage == "chunk":
            self._chunked(needs_index=total > 0)
        elif stage in ("embed", "index"):
            if not self.group:  # the first event of a group: the documents chunked since the last one
                self.group, self.waiting = self.waiting, 0
            self.part = EMBED_SHARE * step if stage == "embed" else EMBED_SHARE + (1 - EMBED_SHARE) * step
            if stage == "index" and done >= total:
                self.finished, self.group, self.part = self.finished + self.group, 0, 0.0
        whole = max(self.sources, self.seen, 1)
        indexed = self.finished + self.group * self.part
        value = (READ_SHARE * min(self.read, whole) + (1 - READ_SHARE) * min(indexed, whole)) / whole
        self.fraction = max(self.fraction, min(value, 1.0))
        return self.fraction

    def _chunked(self, needs_index: bool) -> None:
        self.seen += 1
        self.read = max(self.read, float(self.seen))  # documents handed over ready (a site's pages) are read
        if needs_index:
            self.waiting += 1
        else:  # unchanged, failed or empty: nothing to index
            self.finished += 1
