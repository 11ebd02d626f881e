"""The interface every store implements: what `Collection` and `Retriever` call, and nothing more.

A store holds one collection: documents (whole text, pages, metadata), their chunks with offsets, one
vector per chunk, and a keyword index over the chunk texts. A second engine (a server, say) writes
these methods and passes the same contract tests (`tests/test_store.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from rag.documents import Chunk, Document


@dataclass
class DocumentInfo:
    source: str
    title: str
    chunks: int
    content_hash: str
    added_at: float
    metadata: dict = field(default_factory=dict)


@dataclass
class StoredChunk:
    chunk_id: int
    source: str
    title: str
    text: str
    start: int
    end: int
    page: int | None
    metadata: dict = field(default_factory=dict)  # its document's (what rag.locations names its place by)


class Found(NamedTuple):
    """What identifies a stored document: its content and how it was chunked; and when it was first added."""

    doc_id: int
    content_hash: str
    chunking: str
    added_at: float = 0.0


class ChunkStore(ABC):
    """One collection's documents, chunks, vectors and keyword index.

    Writes happen inside `writer()`; each `put_document` / `delete_document` is atomic: readers see a
    document with all its chunks or not at all. Reads never wait for a writer.
    """

    name: str
    dimension: int

    # -- writing (inside writer()) ---------------------------------------------------------------

    @abstractmethod
    def writer(self) -> AbstractContextManager["ChunkStore"]:
        """Exclusive right to write this collection (threads and processes), held only to commit."""

    @abstractmethod
    def put_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray, chunking: str = "",
                     added_at: float | None = None) -> int:
        """Insert or replace `doc` with its chunks and vectors, atomically; returns the number of chunks. Its
        "added" time is `added_at` (a restored document keeps its first), else now."""

    @abstractmethod
    def delete_document(self, source: str) -> bool:
        """Remove `source` and its chunks; False when it was not there."""

    def checkpoint(self) -> None:
        """Persist search caches after a batch of writes (a no-op where the engine keeps them itself)."""

    # -- reading ---------------------------------------------------------------------------------

    @abstractmethod
    def find(self, source: str) -> Found | None:
        """The stored identity of `source`, or None."""

    @abstractmethod
    def documents(self) -> list[DocumentInfo]:
        """Every document, oldest first."""

    @abstractmethod
    def document(self, source: str) -> Document | None:
        """The whole stored document, or None."""

    @abstractmethod
    def chunk_count(self, source: str) -> int:
        """How many chunks `source` has."""

    @abstractmethod
    def count_chunks(self) -> int:
        """How many chunks the collection has."""

    @abstractmethod
    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        """The rows of the given chunk ids (missing ones left out), fetched together."""

    @abstractmethod
    def dense(self, query_vector: np.ndarray, k: int, *,
              sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the `k` nearest chunks, best first; with `sources`, the `k`
        nearest among the chunks of those documents only (unknown sources match nothing)."""

    @abstractmethod
    def dense_scores(self, query_vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of the query to the given chunks (for candidates the other retriever found)."""

    @abstractmethod
    def bm25(self, query: str, k: int, *, sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) of the `k` best keyword matches, best first; with
        `sources`, the `k` best among the chunks of those documents only (unknown sources match nothing)."""

    @abstractmethod
    def bm25_for(self, query: str, ids: Sequence[int]) -> dict[int, float]:
        """BM25 scores of the given chunks (those matching no word of `query` left out)."""

    @abstractmethod
    def vectors(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of up to `limit` chunks, for maps of the collection."""

    # -- who may use it (rag.access) -------------------------------------------------------------

    @abstractmethod
    def access(self) -> dict | None:
        """The collection's access record (owner and shares) as last written, or None when none was."""

    @abstractmethod
    def set_access(self, record: dict) -> None:
        """Replace the access record at once: a reader sees the old record or the new one, whole."""

    @abstractmethod
    def integrity_problems(self) -> list[str]:
        """What is inconsistent inside the store (empty when sound)."""

    @abstractmethod
    def generation(self) -> int:
        """A counter that rises with every committed change."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""
