"""FAISS operations the vector cache is built from: what kind an index is, the ids it holds, a batch of
changes from the change log applied to it (removals tombstoned in a graph, which cannot remove), and the
cache file written with its checksum."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"local-rag faiss\n"


def is_graph(index) -> bool:
    """True for an HNSW index (which cannot remove vectors), False for the exact one."""
    import faiss

    return isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW)


def index_ids(index) -> np.ndarray:
    """Every id an index holds (tombstoned ones included)."""
    import faiss

    return faiss.vector_to_array(index.id_map).astype(np.int64)


def rows_to_arrays(rows: list, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
    return ids, vectors


@dataclass
class Changes:
    generation: int
    removed: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    every_id: np.ndarray | None = None  # all chunk ids at `generation`, when asked for


def remove_ids(index, tombstones: set[int], removed: np.ndarray) -> None:
    """Remove the ids from an exact index, or tombstone them in a graph (which cannot remove)."""
    if len(removed):
        if is_graph(index):
            tombstones.update(removed.tolist())
        else:
            index.remove_ids(removed)


def apply_changes(index, tombstones: set[int], changes: Changes) -> None:
    """Remove what was removed, add what was added (ids are never reused: AUTOINCREMENT)."""
    remove_ids(index, tombstones, changes.removed)
    if len(changes.ids):
        index.add_with_ids(changes.vectors, changes.ids)


def write_file(path: Path, payload: np.ndarray) -> None:
    """MAGIC, the SHA-256 of the payload, the payload; flushed to disk before the caller renames it."""
    data = memoryview(payload)
    with open(path, "wb") as fh:
        fh.write(MAGIC)
        fh.write(hashlib.sha256(data).digest())
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
