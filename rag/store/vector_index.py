"""The vector search cache: a FAISS index kept in memory, caught up incrementally, saved with a checksum.

SQLite holds every vector; this is a cache of them. Small collections use an exact flat index, larger
ones an inverted-file index (IVF) whose recall against exact search is measured in
`benchmarks/bench_search.py`. The file `faiss-<generation>.index` starts with a magic line and the
SHA-256 of the rest, so a damaged or foreign file is rebuilt from the database instead of trusted.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.store import schema
from rag.store.errors import cache_save_error

EXACT_UP_TO = 50_000  # chunks; above this an IVF index, whose search cost grows with sqrt(size)
# Share of the lists searched per query: recall@10 against exact search on real SciFact vectors (24,643,
# 512 lists) was 0.934 at 1/16, 0.969 at 1/8, 0.983 at 3/16 (benchmarks/bench_search.py --recall).
PROBE_SHARE = 3 / 16
TRAIN_PER_LIST = 40  # training sample: this many vectors per list
MAX_LISTS = 1024  # a million vectors train in well under a minute on 2 cores; a query scans ~3% of them
TRAIN_ITERATIONS = 10
SAVE_SHARE = 0.05  # rewrite the saved index once this share of the collection changed since it was saved
MAGIC = b"local-rag faiss\n"


def nlist_for(n: int) -> int:
    """Inverted lists for `n` vectors: about 4 * sqrt(n) as a power of two, at most MAX_LISTS (training
    time grows with lists x sample), with 39 vectors each at least to train on."""
    return max(1, min(2 ** round(math.log2(4 * math.sqrt(max(n, 1)))), MAX_LISTS, n // 39))


def nprobe_for(nlist: int) -> int:
    return max(1, math.ceil(nlist * PROBE_SHARE))


def build_index(dimension: int, ids: np.ndarray, vectors: np.ndarray, seed: int = 0):
    """An exact index for a small collection, an IVF index trained on a sample for a large one."""
    import faiss

    if len(ids) <= EXACT_UP_TO:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    else:
        nlist = nlist_for(len(ids))
        quantizer = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        quantizer.this.disown()  # the index owns and frees its quantizer
        index.own_fields = True
        index.cp.niter = TRAIN_ITERATIONS
        sample = np.random.default_rng(seed).choice(len(ids), min(len(ids), nlist * TRAIN_PER_LIST), replace=False)
        index.train(vectors[np.sort(sample)])
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # removals and lookups by id
        index.nprobe = nprobe_for(nlist)
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def index_ids(index) -> np.ndarray:
    """Every id an index holds."""
    import faiss

    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists = faiss.extract_index_ivf(index).invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(lists.nlist) if lists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _rows_to_arrays(rows: list, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
    return ids, vectors


@dataclass
class _Changes:
    generation: int
    removed: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    total: int = -1


def _apply(index, changes: _Changes) -> None:
    """Remove what was removed, add what was added (ids are never reused: AUTOINCREMENT)."""
    if len(changes.removed):
        index.remove_ids(changes.removed)
    if len(changes.ids):
        index.add_with_ids(changes.vectors, changes.ids)


class VectorCache:
    """The FAISS index of one collection, shared by every thread of a process.

    `lock` guards the index object: searches and in-place updates hold it briefly. Loading or
    rebuilding happens outside it and the result is swapped in, so searches keep being answered.
    """

    def __init__(self, path: Path, dimension: int):
        self.path = path
        self.dimension = dimension
        self.lock = threading.Lock()
        self._update = threading.Lock()
        self._index = None
        self._generation = -1

    # -- keeping up with the database ------------------------------------------------------------

    def ensure(self, db: sqlite3.Connection, generation: int) -> None:
        """Bring the index up to at least `generation`, as seen by `db`."""
        if self._index is not None and self._generation >= generation:
            return
        with self._update:
            if self._index is not None and self._generation >= generation:
                return
            changes = self._changes_since(db, self._generation) if self._index is not None else None
            if changes is not None:
                with self.lock:
                    self._apply(changes)
                return
            index, built_at = self._load_or_rebuild(db)
            with self.lock:
                self._index, self._generation = index, built_at

    def _changes_since(self, db: sqlite3.Connection, since: int, count: bool = False) -> _Changes | None:
        """What generations after `since` removed and added, read in one snapshot; None when the log
        no longer reaches back that far."""
        db.execute("BEGIN")
        try:
            if since < schema.log_floor(db):
                return None
            generation = schema.generation(db)
            removed = [r[0] for r in db.execute("SELECT chunk_id FROM removed WHERE gen > ?", (since,))]
            rows = db.execute("SELECT id, vector FROM chunks WHERE gen > ? ORDER BY id", (since,)).fetchall()
            total = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] if count else -1
        finally:
            db.execute("COMMIT")
        ids, vectors = _rows_to_arrays(rows, self.dimension)
        return _Changes(generation, np.array(removed, dtype=np.int64), ids, vectors, total)

    def _apply(self, changes: _Changes) -> None:
        _apply(self._index, changes)
        self._generation = changes.generation

    def _load_or_rebuild(self, db: sqlite3.Connection):
        """The newest saved file caught up with the log, else a rebuild from every stored vector."""
        loaded = self._load_newest()
        if loaded is not None:
            index, file_generation = loaded
            changes = self._changes_since(db, file_generation, count=True)
            if changes is not None and changes.generation >= file_generation:
                _apply(index, changes)
                if index.ntotal == changes.total:
                    return index, changes.generation
        return self.rebuild(db)

    def rebuild(self, db: sqlite3.Connection):
        """An index of every vector in the database, and the generation it reflects."""
        db.execute("BEGIN")
        try:
            generation = schema.generation(db)
            rows = db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        finally:
            db.execute("COMMIT")
        ids, vectors = _rows_to_arrays(rows, self.dimension)
        return build_index(self.dimension, ids, vectors), generation

    # -- files -----------------------------------------------------------------------------------

    def file(self, generation: int) -> Path:
        return self.path / f"faiss-{generation}.index"

    def _load_newest(self):
        import faiss

        found = sorted(((int(f.stem.split("-", 1)[1]), f) for f in self.path.glob("faiss-*.index")
                        if f.stem.split("-", 1)[1].isdigit()), reverse=True)
        for generation, file in found[:1]:
            try:
                data = file.read_bytes()
            except OSError:
                return None
            payload = memoryview(data)[len(MAGIC) + 32:]
            if not data.startswith(MAGIC) or hashlib.sha256(payload).digest() != data[len(MAGIC):len(MAGIC) + 32]:
                return None  # damaged, truncated or not ours: the database has everything
            try:
                index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
            except RuntimeError:
                return None
            if index.d != self.dimension:
                return None
            if not hasattr(index, "id_map"):
                ivf = faiss.extract_index_ivf(index)
                ivf.nprobe = nprobe_for(ivf.nlist)
                if ivf.direct_map.type != faiss.DirectMap.Hashtable:
                    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            return index, generation
        return None

    def save(self, db: sqlite3.Connection) -> None:
        """Write the index at the database's generation (the writer holds the writer lock), switching
        between exact and IVF when the size calls for it, then shorten the change log.

        Skipped while the changes since the saved file are under SAVE_SHARE of the collection: a
        reader catches up from the log, and a big index is not rewritten for each small change."""
        import faiss

        self.ensure(db, schema.generation(db))
        with self._update:
            other_kind = self._needs_other_kind()
            if not other_kind and self._saved_is_close(db):
                return
            if other_kind:
                index, generation = self.rebuild(db)
                with self.lock:
                    self._index, self._generation = index, generation
        with self.lock:
            payload = faiss.serialize_index(self._index)
            generation = self._generation
        target = self.file(generation)
        tmp = target.with_name(target.name + ".tmp")
        try:
            _write_file(tmp, payload)
            os.replace(tmp, target)
        except (OSError, RuntimeError) as exc:
            tmp.unlink(missing_ok=True)
            raise cache_save_error(self.path, exc) from None
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM removed WHERE gen <= ?", (generation,))
            db.execute("UPDATE meta SET value = ? WHERE key = 'log_floor'", (str(generation),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        for old in self.path.glob("faiss-*.index"):
            if old != target:
                old.unlink(missing_ok=True)

    def _saved_is_close(self, db: sqlite3.Connection) -> bool:
        floor = schema.log_floor(db)
        if not self.file(floor).exists():
            return False
        changed = db.execute("SELECT (SELECT COUNT(*) FROM chunks WHERE gen > ?) + (SELECT COUNT(*) FROM removed)",
                             (floor,)).fetchone()[0]
        return changed < SAVE_SHARE * self._index.ntotal

    def _needs_other_kind(self) -> bool:
        import faiss

        n = self._index.ntotal
        if hasattr(self._index, "id_map"):
            return n > EXACT_UP_TO
        return n <= EXACT_UP_TO // 2 or nlist_for(n) >= 4 * faiss.extract_index_ivf(self._index).nlist

    # -- searching -------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        import faiss

        # One query is too little work to share: with OpenMP's threads on a busy 2-core machine a
        # 10,000-vector search took 74 ms instead of 6 (measured). The setting is per calling thread,
        # so a rebuild in the writer's thread keeps every core.
        faiss.omp_set_num_threads(1)
        with self.lock:
            if not self._index.ntotal:
                return []
            scores, ids = self._index.search(np.asarray(vector, np.float32).reshape(1, -1), min(k, self._index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def scores(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine of the query to the given chunks, from the vectors the index holds."""
        found, rows = [], []
        with self.lock:
            for i in ids:
                try:
                    rows.append(self._index.reconstruct(int(i)))
                    found.append(int(i))
                except RuntimeError:  # removed by a newer generation
                    pass
        if not rows:
            return {}
        return dict(zip(found, (np.vstack(rows) @ np.asarray(vector, np.float32)).tolist()))

    def ids(self) -> np.ndarray:
        with self.lock:
            return index_ids(self._index)

    @property
    def generation(self) -> int:
        return self._generation


def _write_file(path: Path, payload: np.ndarray) -> None:
    """MAGIC, the SHA-256 of the payload, the payload; flushed to disk before the caller renames it."""
    data = memoryview(payload)
    with open(path, "wb") as fh:
        fh.write(MAGIC)
        fh.write(hashlib.sha256(data).digest())
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
