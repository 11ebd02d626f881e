"""The local store: one collection directory with SQLite (the truth), a tantivy keyword index and a
FAISS cache.

Every change is one SQLite transaction that also bumps a generation counter. Readers use their own
connection per thread, so each read sees a committed snapshot and never waits for a writer; the
writer lock is held only while a batch commits. Both search indexes follow the database through a
change log: the keyword index is brought up to date at the end of each writer-lock hold, the FAISS
cache is caught up in memory by each reader and saved as `faiss-<generation>.index` at the end of an
ingest. A missing, older or damaged index is caught up or rebuilt from SQLite, so a process killed at
any point leaves whole documents only.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rag.documents import Chunk, Document
from rag.errors import RagError
from rag.store import integrity, manifest, schema
from rag.store.base import ChunkStore, DocumentInfo, Found, StoredChunk
from rag.store.errors import storage_error
from rag.store.lock import WriterLock
from rag.store.keyword_index import KeywordIndex
from rag.store.vector_index import VectorCache

ACCESS_FILE = "access.json"  # the owner and shares (rag.access), beside the manifest


def read_access(path: Path) -> dict | None:
    """The access record of the collection at `path`, or None (none written, or no collection)."""
    try:
        return json.loads((Path(path) / ACCESS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise storage_error(Path(path), exc) from None


def write_access(path: Path, record: dict) -> None:
    """Replace the access record in one rename: a crash leaves the old record or the new one, whole."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise RagError(f"There is no collection at {path}; ingest something into it first.")
    try:
        manifest.write_json_atomic(path / ACCESS_FILE, record)
    except OSError as exc:
        raise storage_error(path, exc) from None


def create_access(path: Path, record: dict) -> None:
    """Write the first access record unless there is one: of two processes creating it at once, one wins and
    the other finds the winner's (a hard link of a complete temp file, which fails when the name is taken)."""
    path = Path(path)
    tmp = path / f"{ACCESS_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.link(tmp, path / ACCESS_FILE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise storage_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


class LocalStore(ChunkStore):
    """A collection directory: manifest.json, store.sqlite, keywords/, faiss-<gen>.index and a writer lock."""

    def __init__(self, path: Path, model_id: str, dimension: int | None, lock_timeout: float = 30.0):
        """Open or create the collection at `path`; `dimension` may be None only when it exists."""
        self.path = Path(path)
        self.name = self.path.name
        self.model_id = model_id
        self.dimension = manifest.check_manifest(self.path, model_id, dimension)
        self._db = schema.connect_writer(self.path)  # used only under the writer lock (it upgrades old files)
        manifest.upgrade(self.path)
        self._writer_lock = WriterLock(self.path, lock_timeout)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._vectors = VectorCache(self.path, self.dimension)
        self._keywords = KeywordIndex(self.path)
        self._dirty = False
        self._catch_up_keywords_if_free()

    @property
    def lock_timeout(self) -> float:
        return self._writer_lock.timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._writer_lock.timeout = seconds

    def close(self) -> None:
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        self._db.close()

    # -- connections and generations -------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = schema.connect_reader(self.path)
            with self._readers_lock:
                self._readers.append(db)
            self._local.db, self._local.version, self._local.generation = db, None, -1
        return db

    def _read_generation(self, db: sqlite3.Connection) -> int:
        """The generation this thread's connection sees, re-read only when another connection committed."""
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._local.version:
            self._local.version, self._local.generation = version, schema.generation(db)
        return self._local.generation

    def generation(self) -> int:
        return schema.generation(self._reader())

    def _fresh_vectors(self) -> VectorCache:
        """The vector index for a search, caught up with the database. A search never does a writer's
        work or waits for it: while a thread of this process holds the writer lock, that thread takes
        in what it commits when its hold ends (`_after_writes`), and while another thread is changing
        the index, the index is searched as it is."""
        if self._vectors.loaded and self._writer_lock.held_here:
            return self._vectors
        db = self._reader()
        self._vectors.ensure(db, self._read_generation(db), wait=False)
        return self._vectors

    # -- writing ---------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator["LocalStore"]:
        """Hold the collection's writer lock (threads and processes) while a batch commits."""
        with self._hold():
            yield self

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """The writer lock; when the outermost hold ends, the keyword index takes in what it committed,
        and so does this process's vector index if it is loaded (so that its searches need not)."""
        with self._writer_lock.hold(outermost_done=self._after_writes):
            yield

    def _after_writes(self) -> None:
        self._catch_up_keywords()
        if self._vectors.loaded:
            try:
                self._vectors.ensure(self._db, schema.generation(self._db))
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc) from None

    def _catch_up_keywords(self) -> None:
        try:
            self._keywords.catch_up(self._db)
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from None

    def _catch_up_keywords_if_free(self) -> None:
        """On opening: bring a lagging or damaged keyword index (a crash between the two commits, or a
        collection from before it existed) up to date, unless a writer is busy; it catches up when it ends."""
        if self._keywords.is_current(schema.generation(self._db)):
            return
        try:
            with self._writer_lock.hold(wait=False, outermost_done=self._catch_up_keywords):
                pass
        except RagError:
            pass  # busy (it will catch up), or a read-only copy: searched as it is

    def checkpoint(self) -> None:
        """Save the FAISS cache at the current generation, if anything changed since the last save."""
        if not self._dirty:
            return
        with self._hold():
            self._catch_up_keywords()  # first: the save below shortens the change log it replays
            self._vectors.save(self._db)
            self._dirty = False

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; on failure roll back and turn database errors into a RagError."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            # SQLite has already rolled back after some errors (a full disk among them).
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise storage_error(self.path, exc) from None
            raise

    def _bump(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
        return schema.generation(db)

    def put_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray, chunking: str = "",
                     added_at: float | None = None) -> int:
        """Insert or replace `doc` with its chunks and vectors in one transaction."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk is required")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._hold(), self._transaction() as db:
            generation = self._bump(db)
            self._delete_rows(db, doc.source, generation)
            cur = db.execute(
                "INSERT INTO documents(source, content_hash, title, metadata, pages, text, added_at, chunking) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.source, doc.content_hash, doc.title, json.dumps(doc.metadata, default=str),
                 json.dumps(doc.pages), doc.text, time.time() if added_at is None else added_at, chunking),
            )
            doc_id = cur.lastrowid
            db.executemany(
                'INSERT INTO chunks(doc_id, ord, text, start, "end", page, vector, gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                ((doc_id, n, c.text, c.start, c.end, c.page, v.tobytes(), generation)
                 for n, (c, v) in enumerate(zip(chunks, vectors))),
            )
        self._dirty = True
        return len(chunks)

    def delete_document(self, source: str) -> bool:
        """Remove `source` and its chunks. False when it was not there."""
        with self._hold(), self._transaction() as db:
            if self._find(db, source) is None:
                return False
            self._delete_rows(db, source, self._bump(db))
        self._dirty = True
        return True

    def _delete_rows(self, db: sqlite3.Connection, source: str, generation: int) -> None:
        found = self._find(db, source)
        if found is None:
            return
        db.execute("INSERT INTO removed(chunk_id, gen) SELECT id, ? FROM chunks WHERE doc_id=?", (generation, found.doc_id))
        db.execute("DELETE FROM chunks WHERE doc_id=?", (found.doc_id,))
        db.execute("DELETE FROM documents WHERE id=?", (found.doc_id,))

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _find(db: sqlite3.Connection, source: str) -> Found | None:
        row = db.execute("SELECT id, content_hash, chunking, added_at FROM documents WHERE source=?",
                         (source,)).fetchone()
        return Found(*row) if row else None

    def find(self, source: str) -> Found | None:
        return self._find(self._reader(), source)

    def count_chunks(self) -> int:
        return self._reader().execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def chunk_count(self, source: str) -> int:
        return self._reader().execute(
            "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source=?", (source,)
        ).fetchone()[0]

    def documents(self) -> list[DocumentInfo]:
        rows = self._reader().execute(
            "SELECT d.source, d.title, COUNT(c.id), d.content_hash, d.added_at, d.metadata "
            "FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.added_at, d.id"
        )
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def document(self, source: str) -> Document | None:
        row = self._reader().execute(
            "SELECT source, text, title, metadata, pages FROM documents WHERE source=?", (source,)
        ).fetchone()
        if row is None:
            return None
        pages = [tuple(p) for p in json.loads(row[4])]
        return Document(source=row[0], text=row[1], title=row[2], metadata=json.loads(row[3]), pages=pages)

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._reader().execute(
            'SELECT c.id, d.source, d.title, c.text, c.start, c."end", c.page, d.metadata FROM chunks c '
            "JOIN documents d ON d.id = c.doc_id WHERE c.id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        ).fetchall()
        # each document's metadata parsed once, however many of its chunks are asked for
        metadata = {source: json.loads(text or "{}") for source, text in {r[1]: r[7] for r in rows}.items()}
        return {r[0]: StoredChunk(*r[:7], metadata=metadata[r[1]]) for r in rows}

    def _chunk_ids(self, sources: Sequence[str]) -> np.ndarray:
        """The chunk ids of the given documents (unknown ones have none), in one query."""
        rows = self._reader().execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE d.source IN (SELECT value FROM json_each(?))", (json.dumps(list(sources)),))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def dense(self, query_vector: np.ndarray, k: int, *,
              sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        vectors = self._fresh_vectors()
        if sources is None:
            return vectors.search(query_vector, k)
        return vectors.search(query_vector, k, only=self._chunk_ids(sources))

    def dense_scores(self, query_vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        if not len(ids):
            return {}
        return self._fresh_vectors().scores(query_vector, ids)

    def bm25(self, query: str, k: int, *, sources: Sequence[str] | None = None) -> list[tuple[int, float]]:
        # The keyword index holds chunk ids and text only (no source field: adding one would change its
        # format), so the documents' chunk ids from SQLite restrict it.
        return self._keywords.top(query, k, only=None if sources is None else self._chunk_ids(sources).tolist())

    def bm25_for(self, query: str, ids: Sequence[int]) -> dict[int, float]:
        return self._keywords.scores(query, ids)

    def bm25_scores(self, query: str, limit: int = 1000) -> dict[int, float]:
        """BM25 of the `limit` best chunks matching any word of `query` (for benchmarks that rank deeply)."""
        return dict(self._keywords.top(query, limit))

    def vectors(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        sql = "SELECT id, vector FROM chunks ORDER BY id" + (" LIMIT ?" if limit else "")
        rows = self._reader().execute(sql, (limit,) if limit else ()).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dimension)
        return ids, vecs

    def access(self) -> dict | None:
        return read_access(self.path)

    def set_access(self, record: dict) -> None:
        write_access(self.path, record)

    def integrity_problems(self) -> list[str]:
        """What is inconsistent between the database, the keyword index and the FAISS index (empty when sound)."""
        db = self._reader()
        problems = integrity.database_problems(db)
        db.execute("BEGIN")
        try:
            generation = schema.generation(db)
            db_ids = {r[0] for r in db.execute("SELECT id FROM chunks")}
        finally:
            db.execute("COMMIT")
        self._vectors.ensure(db, generation)
        if self._vectors.generation == generation:  # else a writer moved on meanwhile; nothing to compare
            problems += integrity.vector_problems(self._vectors.ids(), db_ids)
        if self._keywords.generation() == generation:
            problems += integrity.keyword_problems(self._keywords.ids(), db_ids)
        else:
            problems.append(f"keyword index at generation {self._keywords.generation()}, database at {generation}")
        return problems
