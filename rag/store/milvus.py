"""A collection on Milvus (a server, a cluster, Zilliz Cloud or the embedded lite engine), behind `ChunkStore`.

Milvus has no transaction over many rows, so a document becomes visible all at once by versions: its
text and chunks are written under a new version number, then one upsert of its row in the docs
collection makes that version current, and only then are the old version's rows deleted. Readers keep
only chunks of their document's current version, so they never see half a document. Rows of a version
that never became current (a killed ingest) are swept by the next writer once they are old enough that
no writer can still be finishing them.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import numpy as np

from rag.documents import Chunk, Document
from rag.errors import RagError
from rag.store.base import ChunkStore, DocumentInfo, Found, StoredChunk
from rag.store.milvus_client import Connection
from rag.store.milvus_records import among, new_version, read_access, text_bytes, version_age, write_access
from rag.store.milvus_schema import (HEAD_KEY, KINDS, MAX_SOURCE, MAX_VARCHAR, PLACEHOLDER,
                                     RESERVED_KEYS, check_manifest, chunks_schema, doc_key, docs_schema,
                                     new_manifest, physical_name, texts_schema)

INSERT_BATCH = 500  # rows per insert call (a few MB with 384-d vectors)
TEXT_PIECE = 60_000  # characters of a document's JSON (ASCII) per row of the texts collection
MAX_TOPK = 16_384  # the most hits Milvus returns for one search
SLACK = 8  # hits asked beyond k, so that a document being replaced rarely makes a second search needed
SWEEP_AFTER = 15 * 60.0  # seconds after which a version that never became current is an abandoned write
_DOC_FIELDS = ["source", "version", "content_hash", "chunking", "title", "metadata", "added_at", "chunks"]
_CHUNK_FIELDS = ["source", "version", "text", "start", "end", "page"]


class MilvusStore(ChunkStore):
    """Collection `name` on the engine `connection` reaches; many processes may share it."""

    def __init__(self, connection: Connection, name: str, model_id: str, dimension: int | None):
        """Open or create the collection; `dimension` may be None only when it exists."""
        self.conn = connection
        self.client = connection.client
        self.name = name
        self.model_id = model_id
        self._names = {kind: physical_name(name, kind) for kind in KINDS}
        self._write_lock = threading.RLock()
        self._swept = False
        self._dirty = False
        self.dimension = self._open(dimension)

    def _open(self, dimension: int | None) -> int:
        docs = self._names["docs"]
        head = None
        if self.conn.retry(lambda: self.client.has_collection(docs)):
            self.conn.retry(lambda: self.client.load_collection(docs))  # a reopened collection is released
            head = self._head()
        if head is None:  # not there, or its creation was cut short before the manifest was written
            if dimension is None:
                raise RagError(f"There is no collection {self.name!r} on the Milvus server at "
                               f"{self.conn.address.shown}; ingest something into it first.")
            self._create(dimension)
            self._manifest = json.dumps(new_manifest(self.model_id, dimension))
            self._upsert_docs([self._head_row(new_version())])
            head = self._head()
        try:
            manifest = json.loads(head["metadata"])
        except ValueError:
            raise RagError(f"The Milvus collection {docs!r} holds no manifest of ours; "
                           "use another collection name.") from None
        dimension = check_manifest(self.name, manifest, self.model_id, dimension)
        self._manifest = head["metadata"]
        self._load()
        return dimension

    def _call(self, call):
        """A read or idempotent write, retried; collections released by a server restart are loaded again."""
        return self.conn.retry(call, reload=self._load)

    def _load(self) -> None:
        for physical in self._names.values():
            self.conn.retry(lambda: self.client.load_collection(physical), patient=True)

    def _head(self) -> dict | None:
        rows = self._call(lambda: self.client.get(self._names["docs"], ids=[HEAD_KEY],
                                                  output_fields=["version", "metadata"]))
        return rows[0] if rows else None

    def _create(self, dimension: int) -> None:
        specs = {"chunks": chunks_schema(self.client, dimension), "texts": texts_schema(self.client),
                 "docs": docs_schema(self.client)}
        for kind in KINDS:  # each step skipped when done before (a creation cut short, another process's)
            physical, (schema, index) = self._names[kind], specs[kind]
            if not self.conn.retry(lambda: self.client.has_collection(physical)):
                try:
                    self.conn.once(lambda: self.client.create_collection(physical, schema=schema,
                                                                         consistency_level="Strong"))
                except RagError:
                    if not self.conn.retry(lambda: self.client.has_collection(physical)):
                        raise
            if not self.conn.retry(lambda: self.client.list_indexes(physical)):
                # Not waited for: the collection is empty, and pymilvus would poll each index for half a second.
                self.conn.retry(lambda: self.client.create_index(physical, index, sync=False))

    def close(self) -> None:
        """Nothing to release: the connection is shared by every store of the process."""

    # -- writing -----------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator["MilvusStore"]:
        """This process's writers one at a time (writers elsewhere are kept apart by versions, not a lock)."""
        with self._write_lock:
            if not self._swept:
                self.sweep()
                self._swept = True
            yield self

    def checkpoint(self) -> None:
        """Seal the chunks written since the last batch (one flush per ingest): unsealed rows are searched
        without their index (lite rebuilds its BM25 index over them on every search: 400 ms, not 16, for
        4,700 chunks), and Milvus flushes on its own only after a while."""
        if self._dirty:
            self._call(lambda: self.client.flush(self._names["chunks"]))
            self._dirty = False

    def put_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray, chunking: str = "",
                     added_at: float | None = None) -> int:
        """Write `doc` under a new version, make it current with one upsert, then drop the old version."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk is required")
        row = self._doc_row(doc, 0, len(chunks), chunking, time.time() if added_at is None else added_at)
        vectors = np.asarray(vectors, dtype=np.float32)
        with self._write_lock:
            old = self.find(doc.source)
            version = row["version"] = new_version()
            self._insert("texts", self._text_rows(doc, version))  # the piece numbered 0 first: sweep finds it
            self._insert("chunks", self._chunk_rows(doc, chunks, vectors, version))
            self._upsert_docs([row, self._head_row(version)])
            if old is not None:
                self._drop_version(old.doc_id)
            self._dirty = True
        return len(chunks)

    def delete_document(self, source: str) -> bool:
        """Remove `source`: its row first (its chunks vanish from searches at once), then its rows."""
        with self._write_lock:
            old = self.find(source)
            if old is None:
                return False
            self._call(lambda: self.client.delete(self._names["docs"], ids=[doc_key(source)]))
            self._upsert_docs([self._head_row(new_version())])
            self._drop_version(old.doc_id)
            self._dirty = True
        return True

    def sweep(self, older_than: float = SWEEP_AFTER) -> int:
        """Delete the rows of versions that never became current and are `older_than` seconds old."""
        current = {r["version"] for r in self._doc_rows(["version"])}
        started = self._iterate("texts", "ord == 0", ["version"])
        abandoned = sorted({r["version"] for r in started} - current)
        abandoned = [v for v in abandoned if version_age(v) >= older_than]
        for v in abandoned:
            self._drop_version(v)
        return len(abandoned)

    def _doc_row(self, doc: Document, version: int, chunks: int, chunking: str, added_at: float) -> dict:
        if text_bytes(doc.source) > MAX_SOURCE:
            raise RagError(f"The source name {doc.source[:80]!r}… is longer than the {MAX_SOURCE} bytes a Milvus "
                           "store keeps; rename or shorten it.")
        metadata = json.dumps(doc.metadata, default=str)
        if len(metadata) > MAX_VARCHAR:
            raise RagError(f"The metadata of {doc.source!r} is longer than the {MAX_VARCHAR} bytes a Milvus store "
                           "keeps per document.")
        title = doc.title[:2000]
        return {"id": doc_key(doc.source), "source": doc.source, "version": version, "content_hash": doc.content_hash,
                "chunking": chunking, "title": title, "metadata": metadata, "added_at": added_at, "chunks": chunks,
                "_v": PLACEHOLDER}

    def _head_row(self, version: int) -> dict:
        return {"id": HEAD_KEY, "source": "", "version": version, "content_hash": "", "chunking": "", "title": "",
                "metadata": self._manifest, "added_at": 0.0, "chunks": 0, "_v": PLACEHOLDER}

    @staticmethod
    def _text_rows(doc: Document, version: int) -> list[dict]:
        body = json.dumps({"text": doc.text, "pages": doc.pages})  # ASCII: one byte per character
        pieces = [body[i : i + TEXT_PIECE] for i in range(0, len(body), TEXT_PIECE)] or [""]
        return [{"version": version, "ord": n, "body": piece, "_v": PLACEHOLDER} for n, piece in enumerate(pieces)]

    @staticmethod
    def _chunk_rows(doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray, version: int) -> list[dict]:
        rows = []
        for chunk, vector in zip(chunks, vectors):
            if text_bytes(chunk.text) > MAX_VARCHAR:
                raise RagError(f"A chunk of {doc.source!r} is longer than the {MAX_VARCHAR} bytes a Milvus store "
                               "keeps per chunk; ingest with a smaller chunk size.")
            rows.append({"source": doc.source, "version": version, "text": chunk.text, "start": chunk.start,
                         "end": chunk.end, "page": -1 if chunk.page is None else chunk.page,
                         "vector": vector.tolist()})
        return rows

    def _insert(self, kind: str, rows: list[dict]) -> None:
        for i in range(0, len(rows), INSERT_BATCH):
            batch = rows[i : i + INSERT_BATCH]
            self.conn.once(lambda: self.client.insert(self._names[kind], batch))

    def _upsert_docs(self, rows: list[dict]) -> None:
        self._call(lambda: self.client.upsert(self._names["docs"], rows))

    def _drop_version(self, version: int) -> None:
        for kind in ("chunks", "texts"):  # the texts last: while they remain, sweep finds the version
            self._call(lambda: self.client.delete(self._names[kind], filter=f"version == {int(version)}"))

    # -- reading -----------------------------------------------------------------------------------

    def _iterate(self, kind: str, expr: str, fields: list[str]) -> Iterable[dict]:
        """Every row matching `expr`, in batches (a plain query stops at 16,384 rows)."""
        def start():
            return self.client.query_iterator(self._names[kind], batch_size=1000, filter=expr, output_fields=fields)

        iterator = self._call(start)
        try:
            while batch := self._call(iterator.next):
                yield from batch
        finally:
            iterator.close()

    def _doc_rows(self, fields: list[str]) -> list[dict]:
        return list(self._iterate("docs", f"id not in {list(RESERVED_KEYS)}", ["source", *fields]))

    def _docs_by_source(self, sources: Iterable[str], fields: list[str]) -> dict[str, dict]:
        sources = set(sources)
        if not sources:
            return {}
        keys = [doc_key(s) for s in sources]
        rows = self._call(lambda: self.client.get(self._names["docs"], ids=keys, output_fields=["source", *fields]))
        return {r["source"]: r for r in rows}

    def find(self, source: str) -> Found | None:
        row = self._docs_by_source([source], ["version", "content_hash", "chunking", "added_at"]).get(source)
        return Found(row["version"], row["content_hash"], row["chunking"], row["added_at"]) if row else None

    def documents(self) -> list[DocumentInfo]:
        rows = sorted(self._doc_rows(_DOC_FIELDS), key=lambda r: (r["added_at"], r["version"]))
        return [DocumentInfo(r["source"], r["title"], r["chunks"], r["content_hash"], r["added_at"],
                             json.loads(r["metadata"])) for r in rows]

    def document(self, source: str) -> Document | None:
        row = self._docs_by_source([source], ["version", "title", "metadata"]).get(source)
        if row is None:
            return None
        pieces = sorted(self._iterate("texts", f"version == {int(row['version'])}", ["ord", "body"]),
                        key=lambda r: r["ord"])
        body = json.loads("".join(p["body"] for p in pieces))
        return Document(source=source, text=body["text"], title=row["title"], metadata=json.loads(row["metadata"]),
                        pages=[tuple(p) for p in body["pages"]])

    def chunk_count(self, source: str) -> int:
        row = self._docs_by_source([source], ["chunks"]).get(source)
        return row["chunks"] if row else 0

    def count_chunks(self) -> int:
        return sum(r["chunks"] for r in self._doc_rows(["chunks"]))

    def generation(self) -> int:
        head = self._head()
        return head["version"] if head else 0

    def _current(self, rows: list[dict], fields: tuple[str, ...] = ("title",)) -> list[dict]:
        """The rows (with source and version) whose document is at that version now, with the document's
        `fields`."""
        docs = self._docs_by_source((r["source"] for r in rows), ["version", *fields])
        kept = []
        for r in rows:
            doc = docs.get(r["source"])
            if doc is not None and doc["version"] == r["version"]:
                kept.append({**r, **{name: doc[name] for name in fields}})
        return kept

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._call(lambda: self.client.get(self._names["chunks"], ids=ids, output_fields=_CHUNK_FIELDS))
        rows = self._current(rows, ("title", "metadata"))
        # each document's metadata parsed once, however many of its chunks are asked for
        texts = {r["source"]: r["metadata"] for r in rows}
        metadata = {source: json.loads(text or "{}") for source, text in texts.items()}
        return {r["id"]: StoredChunk(r["id"], r["source"], r["title"], r["text"], r["start"], r["end"],
                                     None if r["page"] < 0 else r["page"], metadata[r["source"]]) for r in rows}

    def _ranked(self, data, field: str, metric: str, k: int,
                sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """The k best current chunks by `field` (of `sources` only, when given), in Milvus's order; asks for
        more while replaced ones crowd them out."""
        where = among(sources)
        if where is None:
            return []
        limit = min(k + SLACK, MAX_TOPK)
        while True:
            hits = self._call(lambda: self.client.search(
                self._names["chunks"], data=[data], anns_field=field, limit=limit, output_fields=["source", "version"],
                search_params={"metric_type": metric}, **where))[0]
            rows = [{"id": h["id"], "score": h["distance"], **h["entity"]} for h in hits]
            kept = self._current(rows)
            if len(kept) >= k or len(rows) < limit or limit == MAX_TOPK:
                return [(r["id"], r["score"]) for r in kept[:k]]
            limit = min(limit * 4, MAX_TOPK)

    def dense(self, query_vector: np.ndarray, k: int, *,
              sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        return self._ranked(np.asarray(query_vector, dtype=np.float32).tolist(), "vector", "COSINE", k, sources)

    def dense_scores(self, query_vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._call(lambda: self.client.get(self._names["chunks"], ids=ids, output_fields=["vector"]))
        if not rows:
            return {}
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
        query = np.asarray(query_vector, dtype=np.float32)
        cosine = vectors @ query / np.maximum(np.linalg.norm(vectors, axis=1) * np.linalg.norm(query), 1e-12)
        return {r["id"]: float(c) for r, c in zip(rows, cosine)}

    # Lite reports BM25 negated (smaller is better), a server as is: the order Milvus returns is kept, and
    # the score shown is the magnitude, which is the BM25 score either way.
    def bm25(self, query: str, k: int, *, sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        return [(i, abs(s)) for i, s in self._ranked(query, "sparse", "BM25", k, sources)]

    def bm25_for(self, query: str, ids: Sequence[int]) -> dict[int, float]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        hits = self._call(lambda: self.client.search(
            self._names["chunks"], data=[query], anns_field="sparse", limit=min(len(ids), MAX_TOPK),
            filter=f"id in {ids}", output_fields=["version"], search_params={"metric_type": "BM25"}))[0]
        return {h["id"]: abs(h["distance"]) for h in hits}

    def vectors(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        current = {r["version"] for r in self._doc_rows(["version"])}
        ids, vecs = [], []
        for r in self._iterate("chunks", "id >= 0 or id < 0", ["vector", "version"]):
            if r["version"] in current:
                ids.append(r["id"])
                vecs.append(r["vector"])
                if limit and len(ids) >= limit:
                    break
        order = np.argsort(ids, kind="stable")
        return (np.asarray(ids, dtype=np.int64)[order],
                np.asarray(vecs, dtype=np.float32).reshape(len(ids), self.dimension)[order])

    def access(self) -> dict | None:
        return read_access(self.conn, self.name)

    def set_access(self, record: dict) -> None:
        write_access(self.conn, self.name, record)

    def integrity_problems(self) -> list[str]:
        """Documents whose chunks or text are not all there, and abandoned writes older than the sweep's wait."""
        docs = {r["version"]: r for r in self._doc_rows(["version", "chunks"])}
        counts: dict[int, int] = {}
        for r in self._iterate("chunks", "id >= 0 or id < 0", ["version"]):
            counts[r["version"]] = counts.get(r["version"], 0) + 1
        texts = {r["version"] for r in self._iterate("texts", "ord == 0", ["version"])}
        problems = [f"{d['source']!r} has {counts.get(v, 0)} chunks stored, its row says {d['chunks']}"
                    for v, d in docs.items() if counts.get(v, 0) != d["chunks"]]
        problems += [f"{d['source']!r} has no stored text" for v, d in docs.items() if v not in texts]
        stale = [v for v in (set(counts) | texts) - set(docs) if version_age(v) >= SWEEP_AFTER]
        if stale:
            problems.append(f"{len(stale)} abandoned writes older than {SWEEP_AFTER:.0f} s are not swept")
        return problems
