"""One collection on disk: SQLite (documents, chunks, vectors, FTS5) as the truth, FAISS as its search cache.

Every change is one SQLite transaction that also bumps a generation counter. The FAISS index is saved
as `faiss-<generation>.index` by temp-file-and-rename; on open, a missing or older file is rebuilt from
the vectors in SQLite. A process killed at any point therefore leaves whole documents only.
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rag.documents import Chunk, Document
from rag.errors import RagError

FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WORD = re.compile(r"\w+", re.UNICODE)
# Dropped from keyword queries: they match nearly every chunk, cost time and add nothing to BM25.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their then there "
    "these they this to was were which will with what when where who how do does did not no can".split()
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    pages TEXT NOT NULL DEFAULT '[]',
    text TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    page INTEGER,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');
"""


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


def validate_collection_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise RagError(
            f"Collection name {name!r} is not allowed; use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def keyword_query(text: str) -> str:
    """An FTS5 query matching any of the words of `text` (stopwords dropped), each quoted literally."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(kept))


def top_k(scores: dict[int, float], k: int) -> list[tuple[int, float]]:
    """The `k` highest-scoring (id, score) pairs, best first (ties by id, for stable results)."""
    return heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))


def _write_json_atomic(path: Path, data: dict) -> None:
    # A temp name of its own, so two processes creating the same collection don't rename each other's file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_error(path: Path, exc: BaseException) -> RagError:
    """A RagError saying why writing to the collection at `path` failed: full disk, read-only, or other."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, sqlite3.Error):
        code = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_READONLY": errno.EROFS, "SQLITE_CANTOPEN": errno.EACCES,
                "SQLITE_PERM": errno.EPERM}.get(getattr(exc, "sqlite_errorname", ""), code)
    elif "No space left" in str(exc):  # FAISS reports write errors as RuntimeError with strerror's text
        code = errno.ENOSPC
    if code in _FULL:
        return RagError(f"The disk holding {path} is full; free some space and try again "
                        "(the collection keeps every document that finished before this one).")
    if code in _READ_ONLY:
        return RagError(f"The collection at {path} cannot be written (read-only or no permission); "
                        "use a writable --index or fix its permissions.")
    return RagError(f"Writing the collection at {path} failed ({exc}); check the disk and try again "
                    "(the collection keeps every document that finished before this one).")


class Store:
    """A collection directory: manifest.json, store.sqlite, faiss-<gen>.index and a writer lock."""

    def __init__(self, path: Path, model_id: str, dimension: int | None, lock_timeout: float = 30.0):
        """Open or create the collection at `path`; `dimension` may be None only when it exists."""
        self.path = Path(path)
        self.model_id = model_id
        self.dimension = dimension
        self.lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._check_manifest()
        self._db = self._connect()
        self._index = None
        self._index_generation = -1
        self._dirty = False

    # -- opening -----------------------------------------------------------------------------

    def _check_manifest(self) -> None:
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            if self.dimension is None:
                raise RagError(f"There is no collection at {self.path}; ingest something into it first.")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                _write_json_atomic(manifest, self._manifest())
            except OSError as exc:
                raise storage_error(self.path, exc) from None
            return
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except PermissionError as exc:
            raise RagError(f"Cannot read the index directory {self.path}: {exc.strerror}; check its permissions.")
        except (OSError, ValueError) as exc:
            raise RagError(f"The manifest of {self.path} cannot be read ({exc}); move that directory aside and re-ingest.")
        if found.get("format_version") != FORMAT_VERSION:
            raise RagError(
                f"Index {self.path} has format version {found.get('format_version')}, this program reads "
                f"{FORMAT_VERSION}; re-ingest into a new collection."
            )
        if self.dimension is None:
            self.dimension = found.get("dimension")
        if (found.get("embedding_model"), found.get("dimension")) != (self.model_id, self.dimension):
            raise RagError(
                f"Collection {self.path.name!r} was built with embedding model {found.get('embedding_model')!r} "
                f"(dimension {found.get('dimension')}), not {self.model_id!r} (dimension {self.dimension}); "
                "use the same model or a new collection (RAG_EMBEDDING_MODEL and RAG_EMBEDDING_BACKEND choose them)."
            )

    def _manifest(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "embedding_model": self.model_id,
            "dimension": self.dimension,
            "created_at": time.time(),
        }

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path / "store.sqlite", check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")  # first, so a second process opening at once waits
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN"):
                raise storage_error(self.path, exc) from None
            raise RagError(f"The database in {self.path} cannot be opened ({exc}); check permissions and free disk space.")
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- generation and the FAISS cache ------------------------------------------------------------

    def generation(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def _index_file(self, generation: int) -> Path:
        return self.path / f"faiss-{generation}.index"

    def _fresh_index(self):
        """The FAISS index for the database's current generation: in memory, on disk, or rebuilt."""
        import faiss

        generation = self.generation()
        if self._index is not None and self._index_generation == generation:
            return self._index
        file = self._index_file(generation)
        try:
            index = faiss.read_index(str(file)) if file.exists() else None
        except RuntimeError:  # a damaged cache file (a disk fault, say): the database has everything
            index = None
        if index is None or index.ntotal != self.count_chunks():
            index = self._rebuild_index()
        self._index, self._index_generation = index, generation
        return index

    def _rebuild_index(self):
        import faiss

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))
        rows = self._db.execute("SELECT id, vector FROM chunks ORDER BY id")
        while batch := rows.fetchmany(4096):
            ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
            vectors = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(len(batch), -1)
            index.add_with_ids(vectors, ids)
        return index

    def _save_index(self) -> None:
        """Write the in-memory index for the current generation and drop older files."""
        import faiss

        generation = self.generation()
        target = self._index_file(generation)
        tmp = target.with_name(target.name + ".tmp")
        try:
            faiss.write_index(self._index, str(tmp))
            os.replace(tmp, target)
        except (OSError, RuntimeError) as exc:  # faiss raises RuntimeError for I/O errors
            tmp.unlink(missing_ok=True)
            # The database is already committed; the next open rebuilds this cache from it.
            found = re.search(r"\(([^()]+)\)\s*$", str(exc))  # faiss ends its message with strerror's text
            reason = getattr(exc, "strerror", None) or (found.group(1) if found else str(exc))
            raise RagError(f"The documents are saved, but the search cache in {self.path} could not be written "
                           f"({reason}); it is rebuilt from the database when the collection is next opened, "
                           "once the disk has space and is writable.") from None
        self._dirty = False
        for old in self.path.glob("faiss-*.index"):
            if old != target:
                old.unlink(missing_ok=True)

    # -- writing -----------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator["Store"]:
        """Hold the collection's writer lock (threads and processes) for a batch of changes."""
        with self._lock, self._open_lock_file() as fh:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RagError(
                            f"Collection {self.path.name!r} is being written by another process; "
                            "wait for it to finish and try again."
                        ) from None
                    time.sleep(0.1)
            try:
                self._fresh_index()
                yield self
            finally:
                try:
                    if self._dirty:
                        self._save_index()
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _open_lock_file(self):
        try:
            return open(self.path / "lock", "a+")
        except OSError as exc:
            raise storage_error(self.path, exc) from None

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

    def _bump(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    def find(self, source: str) -> tuple[int, str] | None:
        """(document id, content hash) of `source`, or None."""
        row = self._db.execute("SELECT id, content_hash FROM documents WHERE source=?", (source,)).fetchone()
        return (row[0], row[1]) if row else None

    def put_document(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> int:
        """Insert or replace `doc` with its chunks and vectors in one transaction; must hold writer()."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk is required")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._transaction() as db:
            old_ids = self._delete_rows(doc.source)
            cur = db.execute(
                "INSERT INTO documents(source, content_hash, title, metadata, pages, text, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (doc.source, doc.content_hash, doc.title, json.dumps(doc.metadata, default=str),
                 json.dumps(doc.pages), doc.text, time.time()),
            )
            doc_id = cur.lastrowid
            new_ids = []
            for ord_, (chunk, vector) in enumerate(zip(chunks, vectors)):
                cur = db.execute(
                    'INSERT INTO chunks(doc_id, ord, text, start, "end", page, vector) VALUES (?, ?, ?, ?, ?, ?, ?)',
                    (doc_id, ord_, chunk.text, chunk.start, chunk.end, chunk.page, vector.tobytes()),
                )
                new_ids.append(cur.lastrowid)
            self._bump()
        self._apply_to_index(old_ids, np.array(new_ids, dtype=np.int64), vectors)
        return len(new_ids)

    def delete_document(self, source: str) -> bool:
        """Remove `source` and its chunks; must hold writer(). False when it was not there."""
        with self._transaction():
            old_ids = self._delete_rows(source)
            found = old_ids is not None
            if found:
                self._bump()
        if found:
            self._apply_to_index(old_ids, np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), np.float32))
        return found

    def _delete_rows(self, source: str) -> np.ndarray | None:
        found = self.find(source)
        if found is None:
            return None
        ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE doc_id=?", (found[0],))]
        self._db.execute("DELETE FROM chunks WHERE doc_id=?", (found[0],))
        self._db.execute("DELETE FROM documents WHERE id=?", (found[0],))
        return np.array(ids, dtype=np.int64)

    def _apply_to_index(self, old_ids: np.ndarray | None, new_ids: np.ndarray, vectors: np.ndarray) -> None:
        index = self._index
        if old_ids is not None and len(old_ids):
            index.remove_ids(old_ids)
        if len(new_ids):
            index.add_with_ids(vectors, new_ids)
        # The in-memory index now matches the committed generation; writer() saves it on the way out.
        self._index_generation = self.generation()
        self._dirty = True

    # -- reading -----------------------------------------------------------------------------------

    def count_chunks(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def chunk_count(self, source: str) -> int:
        return self._db.execute(
            "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source=?", (source,)
        ).fetchone()[0]

    def documents(self) -> list[DocumentInfo]:
        rows = self._db.execute(
            "SELECT d.source, d.title, COUNT(c.id), d.content_hash, d.added_at, d.metadata "
            "FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.added_at, d.id"
        )
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def document(self, source: str) -> Document | None:
        row = self._db.execute(
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
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f'SELECT c.id, d.source, d.title, c.text, c.start, c."end", c.page FROM chunks c '
            f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            ids,
        )
        return {r[0]: StoredChunk(*r) for r in rows}

    def dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the `k` nearest chunks."""
        with self._lock:
            index = self._fresh_index()
            if index.ntotal == 0:
                return []
            scores, ids = index.search(np.asarray(query_vector, np.float32).reshape(1, -1), min(k, index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def dense_scores(self, query_vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of the query to the given chunks."""
        if not ids:
            return {}
        with self._lock:
            index = self._fresh_index()
            vectors = np.vstack([index.reconstruct(int(i)) for i in ids])
        return dict(zip((int(i) for i in ids), (vectors @ query_vector).tolist()))

    def bm25_scores(self, query: str) -> dict[int, float]:
        """BM25 score of every chunk matching any word of `query` (higher is better).

        One FTS5 pass yields both the ranking and the score of any chunk, which is cheaper than a
        ranked query plus a second query restricted to the other retriever's candidates.
        """
        match = keyword_query(query)
        if not match:
            return {}
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?", (match,)
            ).fetchall()
        return dict(rows)

    def bm25_for(self, query: str, ids: Sequence[int]) -> dict[int, float]:
        """BM25 scores of the given chunks only (those matching no word are left out).

        One rowid lookup each: for a handful of dense hits this is far cheaper than scoring every match.
        """
        match = keyword_query(query)
        if not match:
            return {}
        sql = "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid = ?"
        with self._lock:
            rows = [self._db.execute(sql, (match, int(i))).fetchone() for i in ids]
        return dict(r for r in rows if r is not None)

    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the `k` best keyword matches."""
        return top_k(self.bm25_scores(query), k)

    def vectors(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of up to `limit` chunks, for maps of the collection."""
        sql = "SELECT id, vector FROM chunks ORDER BY id" + (" LIMIT ?" if limit else "")
        rows = self._db.execute(sql, (limit,) if limit else ()).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dimension)
        return ids, vecs

    def integrity_problems(self) -> list[str]:
        """What is inconsistent between the manifest, the database and the FAISS index (empty when sound)."""
        problems = []
        check = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            problems.append(f"sqlite: {check}")
        with self._lock:
            index = self._fresh_index()
            faiss_ids = set(np.asarray([index.id_map.at(i) for i in range(index.ntotal)], dtype=np.int64).tolist())
        db_ids = {r[0] for r in self._db.execute("SELECT id FROM chunks")}
        if faiss_ids != db_ids:
            problems.append(f"{len(faiss_ids - db_ids)} FAISS ids without chunks, {len(db_ids - faiss_ids)} chunks without vectors")
        orphans = self._db.execute("SELECT COUNT(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} chunks without a document")
        return problems
