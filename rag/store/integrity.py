"""The integrity check: what is inconsistent between the database, its keyword index and the vector cache."""

from __future__ import annotations

import sqlite3

import numpy as np


def database_problems(db: sqlite3.Connection) -> list[str]:
    """SQLite's own check, chunks without documents, a bad log."""
    problems = []
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        problems.append(f"sqlite: {check}")
    orphans = db.execute("SELECT COUNT(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone()[0]
    if orphans:
        problems.append(f"{orphans} chunks without a document")
    logged = db.execute("SELECT COUNT(*) FROM removed r JOIN chunks c ON c.id = r.chunk_id").fetchone()[0]
    if logged:
        problems.append(f"{logged} chunks logged as removed are still stored")
    return problems


def vector_problems(index_ids: np.ndarray, db_ids: set[int]) -> list[str]:
    return _id_problems("FAISS", "vectors", index_ids.tolist(), db_ids)


def keyword_problems(index_ids: list[int], db_ids: set[int]) -> list[str]:
    return _id_problems("keyword index", "keyword entries", index_ids, db_ids)


def _id_problems(index: str, what: str, index_ids: list[int], db_ids: set[int]) -> list[str]:
    found = set(index_ids)
    if found == db_ids and len(index_ids) == len(found):
        return []
    return [f"{len(found - db_ids)} {index} ids without chunks, {len(db_ids - found)} chunks without {what}, "
            f"{len(index_ids) - len(found)} duplicated"]
