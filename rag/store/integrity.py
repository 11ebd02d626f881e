"""The integrity check: what is inconsistent between the database, its keyword index and the vector cache."""

from __future__ import annotations

import sqlite3

import numpy as np


def database_problems(db: sqlite3.Connection, fts_db: sqlite3.Connection) -> list[str]:
    """SQLite's own check, FTS5's check against its content table, chunks without documents, a bad log."""
    problems = []
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        problems.append(f"sqlite: {check}")
    try:
        fts_db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY":  # a read-only copy cannot run it
            problems.append(f"keyword index: {exc}")
    orphans = db.execute("SELECT COUNT(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone()[0]
    if orphans:
        problems.append(f"{orphans} chunks without a document")
    logged = db.execute("SELECT COUNT(*) FROM removed r JOIN chunks c ON c.id = r.chunk_id").fetchone()[0]
    if logged:
        problems.append(f"{logged} chunks logged as removed are still stored")
    return problems


def vector_problems(index_ids: np.ndarray, db_ids: set[int]) -> list[str]:
    found = set(index_ids.tolist())
    if found == db_ids and len(index_ids) == len(found):
        return []
    return [f"{len(found - db_ids)} FAISS ids without chunks, {len(db_ids - found)} chunks without vectors, "
            f"{len(index_ids) - len(found)} duplicated"]
