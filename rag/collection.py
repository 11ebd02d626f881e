"""The facade the CLI and the app use: open a named collection, ingest sources, search, list, delete."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from rag import limits
from rag.chunking import split_document
from rag.documents import Chunk, Document
from rag.embedding import Embedder, embedder_for, embedder_model_id
from rag.errors import RagError
from rag.interrupt import checkpoint
from rag.retrieval import Retriever, SearchHit
from rag.settings import Settings
from rag.store import ChunkStore, DocumentInfo, validate_collection_name
from rag.store.locate import collection_exists, collection_names, open_store

Progress = Callable[[str, int, int, "str | None"], None]
# Chunks gathered before an embedding pass: big enough for full batches, small enough to write often.
EMBED_GROUP = 512
NO_SOURCES = "No document is ticked in Sources; tick at least one for Chat, Summarize and Compare to read."


@dataclass
class SourceResult:
    source: str
    status: str  # added | unchanged | replaced | failed
    chunks: int = 0
    title: str = ""
    error: str = ""
    warning: str = ""


@dataclass
class IngestReport:
    documents_added: int = 0
    documents_unchanged: int = 0
    documents_replaced: int = 0
    chunks_added: int = 0
    seconds: float = 0.0
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    results: list[SourceResult] = field(default_factory=list)

    def record(self, result: SourceResult) -> None:
        self.results.append(result)
        if result.warning:
            self.warnings.append({"source": result.source, "warning": result.warning})
        if result.status == "failed":
            self.errors.append({"source": result.source, "error": result.error})
        else:
            setattr(self, f"documents_{result.status}", getattr(self, f"documents_{result.status}") + 1)
            self.chunks_added += result.chunks if result.status != "unchanged" else 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("results")
        return data


def _no_progress(stage: str, done: int, total: int, source: str | None = None) -> None:
    pass


def chunking_id(settings: Settings) -> str:
    """How a document was chunked, stored beside its content hash: new settings mean new chunks."""
    return f"chars:{settings.chunk_size}/{settings.chunk_overlap}"


def list_collections(settings: Settings) -> list[str]:
    """Names of the collections in the store (the index directory, or the Milvus engine RAG_STORE names)."""
    return collection_names(settings)


class Collection:
    """A named corpus in a store with its embedder; safe to share between threads."""

    def __init__(self, settings: Settings, store: ChunkStore, embedder: Embedder | None = None):
        self.settings = settings
        self.store = store
        self.name = store.name
        self._embedder = embedder
        self._map_cache: tuple | None = None
        self._written_early: set[str] = set()  # new sources whose first pages went in before the rest was read

    @classmethod
    def open(cls, settings: Settings, name: str | None = None, create: bool = True) -> "Collection":
        """Open collection `name` (default: settings.collection), creating it when `create` is true."""
        name = validate_collection_name(settings.collection if name is None else name)
        if not create or collection_exists(settings, name):
            model_id = embedder_model_id(settings.embedding_model, settings.embedding_backend)
            return cls(settings, open_store(settings, name, model_id, None))
        embedder = embedder_for(settings)
        return cls(settings, open_store(settings, name, embedder.model_id, embedder.dimension), embedder)

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded on first use and checked against the collection's manifest."""
        if self._embedder is None:
            embedder = embedder_for(self.settings)
            if embedder.dimension != self.store.dimension:
                raise RagError(
                    f"Embedding model {embedder.model_id!r} gives {embedder.dimension}-d vectors but collection "
                    f"{self.name!r} holds {self.store.dimension}-d ones; use a new collection."
                )
            self._embedder = embedder
        return self._embedder

    # -- ingest ------------------------------------------------------------------------------------

    def ingest(self, sources: list[str], progress: Progress = _no_progress, **overrides) -> IngestReport:
        """Load, chunk, embed and index `sources` (URLs, files, directories); failures are reported, not raised.

        A request over the limits in `rag.limits` (too many URLs or sources at once) is refused before any work.
        """
        from rag.loaders import expand_sources, is_url

        limits.check_count("sources", len(sources), limits.MAX_SOURCES, "ingest their folder, or split the list.")
        limits.check_count("URLs", sum(1 for s in sources if is_url(s)), limits.MAX_URLS,
                           "split them into several ingests.")
        expanded = expand_sources(sources)
        # loaders size what they cut themselves (a sheet's blocks of rows) by the chunk size the chunks will have
        settings = self.settings.replace(**overrides) if overrides else self.settings
        return self.add_documents(
            (self._load(source, i, len(expanded), progress, settings) for i, source in enumerate(expanded)),
            progress, **overrides,
        )

    def add_documents(self, docs: Iterable[Document | SourceResult], progress: Progress = _no_progress,
                      added_at: dict[str, float] | None = None, **overrides) -> IngestReport:
        """Chunk, embed and index documents (failed loads pass through as results), in groups. `added_at`
        keeps a source's first "added" time (a document restored from the trash); the others are added now.

        Loading, chunking and embedding happen outside the writer lock; each group takes it only to
        commit, so searches and other writers never wait for a fetch or an embedding.
        """
        settings = self.settings.replace(**overrides) if overrides else self.settings
        split_document(Document("", ""), settings.chunk_size, settings.chunk_overlap)  # validate early
        started = time.perf_counter()
        report = IngestReport()
        pending: list[tuple[Document, list[Chunk], str]] = []
        for item in docs:
            prepared = self._prepare(item, settings, report, progress)
            if prepared is not None:
                pending.append(prepared)
            if sum(len(p[1]) for p in pending) >= EMBED_GROUP:
                self._write(pending, settings, progress, report, added_at or {})
                pending = []
        if pending:
            self._write(pending, settings, progress, report, added_at or {})
        self.store.checkpoint()
        progress("done", len(report.results), len(report.results), None)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _load(self, source: str, i: int, total: int, progress: Progress,
              settings: Settings) -> Document | SourceResult:
        from rag.loaders import load_source

        checkpoint()
        progress("fetch", i, total, source)
        try:
            doc = load_source(source, settings, lambda done, pages: progress("ocr", done, pages, source),
                              early=self._write_early)
        except RagError as exc:
            return SourceResult(source, "failed", error=str(exc))
        progress("extract", i + 1, total, source)
        return doc

    def _write_early(self, part: Document) -> None:
        """Index the pages of a new long scan read so far, so they can be searched before the last page is
        read; the whole document replaces them when it is read. A document already in the collection stays
        as it is until then."""
        if part.source in self._written_early or self.store.find(part.source) is None:
            self._written_early.add(part.source)
            self.add_documents([part])

    def _prepare(self, item, settings: Settings, report: IngestReport,
                 progress: Progress) -> tuple[Document, list[Chunk], str] | None:
        """Chunks of a new or changed document; None when failed or unchanged (recorded in the report, and
        reported as chunked into 0 chunks: nothing to index)."""
        def nothing(result: SourceResult) -> None:
            report.record(result)
            progress("chunk", 0, 0, result.source)

        if isinstance(item, SourceResult):
            return nothing(item)
        found = self.store.find(item.source)
        if found and (found.content_hash, found.chunking) == (item.content_hash, chunking_id(settings)):
            return nothing(SourceResult(item.source, "unchanged", self.store.chunk_count(item.source), item.title))
        chunks = split_document(item, settings.chunk_size, settings.chunk_overlap)
        if not chunks:
            return nothing(SourceResult(item.source, "failed", error=f"{item.source} has no text to index."))
        progress("chunk", len(chunks), len(chunks), item.source)
        return item, chunks, "replaced" if found else "added"

    def _write(self, pending, settings, progress, report, added_at: dict[str, float]) -> None:
        checkpoint()
        texts = [c.text for _, chunks, _ in pending for c in chunks]
        too_long = self._over_window(texts)
        vectors = self.embedder.embed(
            texts, settings.embedding_batch_size, lambda done, total: progress("embed", done, total, None)
        )
        offset = 0
        with self.store.writer():
            for n, (doc, chunks, _) in enumerate(pending, start=1):
                early = doc.source in self._written_early and "partial" not in doc.metadata
                if early:  # the whole of a new scan replaces its first pages: it is added, not replaced
                    self._written_early.discard(doc.source)
                status = "added" if early or not self.store.find(doc.source) else "replaced"
                count = self.store.put_document(doc, chunks, vectors[offset : offset + len(chunks)],
                                                chunking_id(settings), added_at.get(doc.source))
                cut = int(too_long[offset : offset + len(chunks)].sum())
                offset += len(chunks)
                report.record(SourceResult(doc.source, status, count, doc.title, warning=self._cut_warning(
                    cut, len(chunks), settings)))
                progress("index", n, len(pending), doc.source)

    def _over_window(self, texts: list[str]) -> np.ndarray:
        """Which chunks have more word pieces than the embedding model reads (the rest would be cut off)."""
        counts = self.embedder.token_counts(texts)
        if counts is None or self.embedder.max_tokens is None:
            return np.zeros(len(texts), dtype=bool)
        return np.asarray(counts) > self.embedder.max_tokens

    def _cut_warning(self, cut: int, total: int, settings: Settings) -> str:
        if not cut:
            return ""
        return (f"{cut} of its {total} chunks are longer than the {self.embedder.max_tokens} word pieces the "
                f"embedding model reads, so their ends are not searchable by meaning; re-ingest with a smaller "
                f"chunk size (the default {Settings.chunk_size} characters fits).")

    # -- reading and deleting ------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None, mode: str | None = None, query_vector=None,
               sources: Sequence[str] | None = None) -> list[SearchHit]:
        """The `k` best chunks for `query` by dense, bm25 or hybrid search (k and mode default to the settings).

        `query_vector` may be given when many queries are embedded in one batch. With `sources`, only
        chunks of those documents are searched (None: every document; unknown ones match nothing). A k or
        query over the limits in `rag.limits`, or an empty list of sources, is refused.
        """
        if sources is not None and not len(sources):
            raise RagError(NO_SOURCES)
        k = self.settings.k if k is None else k
        limits.check_k(k)
        limits.check_text("query", query)
        try:
            query.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: undecodable bytes from a command line, say
            raise RagError("The query holds bytes that are not valid UTF-8 text; retype it or check the "
                           "terminal's encoding.") from None
        retriever = Retriever(self.store, self.embedder)
        return retriever.search(query, k, mode or self.settings.mode, query_vector, sources)

    def documents(self) -> list[DocumentInfo]:
        return self.store.documents()

    def document(self, source: str) -> Document:
        doc = self.store.document(source)
        if doc is None:
            raise RagError(f"{source!r} is not in collection {self.name!r}; see the list of documents.")
        return doc

    def delete(self, source: str) -> bool:
        with self.store.writer():
            deleted = self.store.delete_document(source)
        self.store.checkpoint()
        return deleted

    def projection(self, query: str | None = None, limit: int = 5000) -> dict:
        """2-D coordinates of up to `limit` chunks (PCA of their vectors) and of the query, for a map.

        The map is computed once per generation of the collection; a search only places its query.
        """
        key = (self.store.generation(), limit)
        if self._map_cache is None or self._map_cache[0] != key:
            ids, vectors = self.store.vectors(limit)
            if len(ids) < 2:
                return {"ids": ids.tolist(), "xy": np.zeros((len(ids), 2)).tolist(), "query_xy": None}
            mean = vectors.mean(axis=0)
            _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
            axes = vt[:2].T
            self._map_cache = (key, ids.tolist(), ((vectors - mean) @ axes).tolist(), mean, axes)
        _, ids, xy, mean, axes = self._map_cache
        query_xy = ((self.embedder.embed_query(query) - mean) @ axes).tolist() if query else None
        return {"ids": ids, "xy": xy, "query_xy": query_xy}
