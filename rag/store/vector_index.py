"""The vector search cache: a FAISS index kept in memory, caught up incrementally, saved with a checksum.

SQLite holds every vector; this is a cache of them. Small collections use an exact flat index, larger
ones a graph index (FAISS's HNSW), whose recall against exact search is measured in
`benchmarks/bench_search.py`. HNSW cannot remove a vector: a removed chunk's id is kept in a set of
tombstones that searches skip, and the graph is rebuilt without them once they pass SAVE_SHARE. The file `faiss-<generation>.index` starts with a magic line and the
SHA-256 of the rest, so a damaged or foreign file is rebuilt from the database instead of trusted.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.store import schema
from rag.store.faiss_ops import (MAGIC, Changes, apply_changes, index_ids, is_graph, remove_ids, rows_to_arrays,
                                 write_file)
from rag.store.errors import cache_save_error

EXACT_UP_TO = 50_000  # chunks; above this an HNSW graph, whose search cost grows with log(size)
# HNSW: links per node, and the candidate lists while building and searching. Recall@10 against exact
# search on real SciFact vectors: see benchmarks/bench_search.py --recall and the README.
HNSW_M = 32
EF_CONSTRUCTION = 80
EF_SEARCH = 128  # at least k: a search for more neighbours widens its list to k
ADD_BATCH = 64  # vectors added to the live index per hold of its search lock
SAVE_SHARE = 0.05  # rewrite the saved index once this share of the collection changed since it was saved


def build_index(dimension: int, ids: np.ndarray, vectors: np.ndarray):
    """An exact index for a small collection, an HNSW graph for a large one (built on every core)."""
    import faiss

    if len(ids) <= EXACT_UP_TO:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    else:
        graph = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = EF_CONSTRUCTION
        graph.hnsw.efSearch = EF_SEARCH
        index = faiss.IndexIDMap2(graph)
        graph.this.disown()  # the id map owns and frees the graph
        index.own_fields = True
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


class VectorCache:
    """The FAISS index of one collection, shared by every thread of a process.

    `lock` guards the index object: searches and in-place updates hold it briefly. Loading or
    rebuilding happens outside it and the result is swapped in, so searches keep being answered.
    `_update` is held by whoever changes the index (catching up, loading, saving): a search that finds
    it held answers from the index as it is (a few hundred milliseconds behind) instead of waiting,
    and new vectors go into a graph in batches, so no search waits for a whole batch's insertion.
    """

    def __init__(self, path: Path, dimension: int):
        self.path = path
        self.dimension = dimension
        self.lock = threading.Lock()
        self._update = threading.Lock()
        self._index = None
        self._tombstones: set[int] = set()  # removed ids a graph index still holds
        self._skip = None  # FAISS search parameters that skip the tombstones
        self._alive = None  # (a selector of the ids that are not tombstones, the batch it negates)
        self._generation = -1

    # -- keeping up with the database ------------------------------------------------------------

    def ensure(self, db: sqlite3.Connection, generation: int, wait: bool = True) -> None:
        """Bring the index up to at least `generation`, as seen by `db`. With `wait` False (searches),
        return at once while another thread is changing an index that exists: it is answered as it is."""
        if self._index is not None and self._generation >= generation:
            return
        if not self._update.acquire(blocking=wait or self._index is None):
            return
        try:
            if self._index is not None and self._generation >= generation:
                return
            changes = self._changes_since(db, self._generation) if self._index is not None else None
            if changes is not None:
                self._apply(changes)
                return
            index, tombstones, built_at = self._load_or_rebuild(db)
            with self.lock:
                self._swap(index, tombstones, built_at)
        finally:
            self._update.release()

    def _swap(self, index, tombstones: set[int], generation: int) -> None:
        self._index, self._tombstones, self._generation = index, tombstones, generation
        self._skip = self._alive = None

    def _changes_since(self, db: sqlite3.Connection, since: int, every_id: bool = False) -> Changes | None:
        """What generations after `since` removed and added, read in one snapshot; None when the log
        no longer reaches back that far."""
        db.execute("BEGIN")
        try:
            if since < schema.log_floor(db):
                return None
            generation = schema.generation(db)
            removed = [r[0] for r in db.execute("SELECT chunk_id FROM removed WHERE gen > ?", (since,))]
            rows = db.execute("SELECT id, vector FROM chunks WHERE gen > ? ORDER BY id", (since,)).fetchall()
            every = (np.fromiter((r[0] for r in db.execute("SELECT id FROM chunks")), dtype=np.int64)
                     if every_id else None)
        finally:
            db.execute("COMMIT")
        ids, vectors = rows_to_arrays(rows, self.dimension)
        return Changes(generation, np.array(removed, dtype=np.int64), ids, vectors, every)

    def _apply(self, changes: Changes) -> None:
        """Apply changes to the live index (the caller holds `_update`), taking `lock` per batch of
        additions: a graph inserts about a vector per 0.3 ms at 100,000 (measured), so a whole
        ingest's batch at once would hold searches for a fraction of a second."""
        with self.lock:
            remove_ids(self._index, self._tombstones, changes.removed)
            self._skip = self._alive = None
        for start in range(0, len(changes.ids), ADD_BATCH):
            with self.lock:
                self._index.add_with_ids(changes.vectors[start:start + ADD_BATCH], changes.ids[start:start + ADD_BATCH])
        with self.lock:
            self._generation = changes.generation

    def _load_or_rebuild(self, db: sqlite3.Connection):
        """The newest saved file caught up with the log, else a rebuild from every stored vector. A graph's
        tombstones are what it holds beyond the database's chunks; it must hold every chunk."""
        loaded = self._load_newest()
        if loaded is not None:
            index, file_generation = loaded
            changes = self._changes_since(db, file_generation, every_id=True)
            if changes is not None and changes.generation >= file_generation:
                tombstones: set[int] = set()
                apply_changes(index, tombstones, changes)
                held = index_ids(index)
                extra = np.setdiff1d(held, changes.every_id, assume_unique=True)
                if len(held) - len(extra) == len(changes.every_id) and (is_graph(index) or not len(extra)):
                    return index, set(extra.tolist()), changes.generation
        return self.rebuild(db)

    def rebuild(self, db: sqlite3.Connection):
        """An index of every vector in the database, no tombstones, and the generation it reflects."""
        db.execute("BEGIN")
        try:
            generation = schema.generation(db)
            rows = db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        finally:
            db.execute("COMMIT")
        ids, vectors = rows_to_arrays(rows, self.dimension)
        del rows
        return build_index(self.dimension, ids, vectors), set(), generation

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
                return None  # an inverted-file index from an earlier version: rebuilt as a graph
            if is_graph(index):
                faiss.downcast_index(index.index).hnsw.efSearch = EF_SEARCH
            return index, generation
        return None

    def save(self, db: sqlite3.Connection) -> None:
        """Write the index at the database's generation (the writer holds the writer lock), switching
        between exact and HNSW when the size calls for it (or rebuilding a graph with too many tombstones),
        then shorten the change log.

        Skipped while the changes since the saved file are under SAVE_SHARE of the collection: a
        reader catches up from the log, and a big index is not rewritten for each small change."""
        import faiss

        self.ensure(db, schema.generation(db))
        with self._update:
            other_kind = self._needs_other_kind()
            if not other_kind and self._saved_is_close(db):
                return
            if other_kind:
                index, tombstones, generation = self.rebuild(db)
                with self.lock:
                    self._swap(index, tombstones, generation)
            # Only holders of `_update` change the index, so searches (which only read it) go on
            # while it is copied out: a second or so for a million vectors.
            payload = faiss.serialize_index(self._index)
            generation = self._generation
        target = self.file(generation)
        tmp = target.with_name(target.name + ".tmp")
        try:
            write_file(tmp, payload)
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
        """Exact past EXACT_UP_TO, a graph at half of it (so a size near the line does not flip back and
        forth), or a graph whose tombstones passed SAVE_SHARE."""
        live = self._index.ntotal - len(self._tombstones)
        if not is_graph(self._index):
            return live > EXACT_UP_TO
        return live <= EXACT_UP_TO // 2 or len(self._tombstones) > SAVE_SHARE * self._index.ntotal

    # -- searching -------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int, only: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(id, inner product) of the `k` nearest vectors, best first; with `only`, the `k` nearest of those ids."""
        import faiss

        # One query is too little work to share: with OpenMP's threads on a busy 2-core machine a
        # 10,000-vector search took 74 ms instead of 6 (measured). The setting is per calling thread,
        # so a rebuild in the writer's thread keeps every core.
        faiss.omp_set_num_threads(1)
        query = np.asarray(vector, np.float32).reshape(1, -1)
        with self.lock:
            if self._index.ntotal <= len(self._tombstones) or (only is not None and not len(only)):
                return []
            if only is not None:
                scores, ids = self._search_among(query, k, np.asarray(only, dtype=np.int64))
            elif is_graph(self._index):
                scores, ids = self._index.search(query, k, params=self._graph_params(k))
            else:
                scores, ids = self._index.search(query, min(k, self._index.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def _search_among(self, query: np.ndarray, k: int, only: np.ndarray):
        """FAISS's (scores, ids) of the `k` nearest among the ids `only` (the caller holds `lock`).

        The exact index compares the query with their vectors alone. A graph search meets only a few
        hundred nodes, of which a small document may own none, so up to EXACT_UP_TO chosen ids (what
        would be searched exactly anyway) are scored exactly from the graph's own vector table; a
        larger choice walks the graph with the filter."""
        import faiss

        chosen = faiss.IDSelectorBatch(only)
        alive = self._alive_selector()
        both = chosen if alive is None else faiss.IDSelectorAnd(chosen, alive)
        k = min(k, len(only))
        if not is_graph(self._index):
            params = faiss.SearchParameters()
            params.sel = both
            return self._index.search(query, k, params=params)
        if len(only) > EXACT_UP_TO:
            # A walk admits only the chosen nodes to its results, so its candidate list is widened by the
            # inverse of their share: as many chosen ones pass through it as an unfiltered search sees.
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(max(EF_SEARCH, k) * max(1.0, self._index.ntotal / len(only)))
            params.sel = both
            return self._index.search(query, k, params=params)
        # The graph's vector table is addressed by position; the id map turns positions into ids.
        # (Each selector is held in a variable: FAISS holds raw pointers to them while it searches.)
        translated = faiss.IDSelectorTranslated(self._index.id_map, both)
        params = faiss.SearchParameters()
        params.sel = translated
        storage = faiss.downcast_index(faiss.downcast_index(self._index.index).storage)
        scores, positions = storage.search(query, k, params=params)
        id_map = self._index.id_map
        return scores, np.array([[id_map.at(int(p)) if p >= 0 else -1 for p in positions[0]]], dtype=np.int64)

    def _alive_selector(self):
        """A selector of the ids that are not tombstones (None when there are none), kept until they change.
        FAISS selectors hold raw pointers, so the negated batch is kept alive beside it."""
        import faiss

        if not self._tombstones:
            return None
        if self._alive is None:
            batch = faiss.IDSelectorBatch(np.fromiter(self._tombstones, np.int64, len(self._tombstones)))
            self._alive = (faiss.IDSelectorNot(batch), batch)
        return self._alive[0]

    def _graph_params(self, k: int):
        """HNSW's search parameters: a candidate list of at least k, skipping tombstones (cached per set)."""
        import faiss

        if self._skip is None or self._skip.efSearch < k:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(EF_SEARCH, k)
            alive = self._alive_selector()
            if alive is not None:
                params.sel = alive
            self._skip = params
        return self._skip

    def scores(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine of the query to the given chunks, from the vectors the index holds."""
        found, rows = [], []
        with self.lock:
            for i in ids:
                if int(i) in self._tombstones:
                    continue
                try:
                    rows.append(self._index.reconstruct(int(i)))
                    found.append(int(i))
                except RuntimeError:  # removed by a newer generation
                    pass
        if not rows:
            return {}
        return dict(zip(found, (np.vstack(rows) @ np.asarray(vector, np.float32)).tolist()))

    def ids(self) -> np.ndarray:
        """The ids a search can return (tombstones left out)."""
        with self.lock:
            held = index_ids(self._index)
            if not self._tombstones:
                return held
            return held[~np.isin(held, np.fromiter(self._tombstones, np.int64, len(self._tombstones)))]

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def loaded(self) -> bool:
        """True once a search (or a save) has loaded the index into this process."""
        return self._index is not None
