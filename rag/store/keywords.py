"""Keyword search over the FTS5 table: the query syntax and the BM25 statements.

The tokenisation (words, stopwords) is the one place keyword search and term highlighting share.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
# Dropped from keyword queries: they match nearly every chunk, cost time and add nothing to BM25.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their then there "
    "these they this to was were which will with what when where who how do does did not no can".split()
)


def keyword_query(text: str) -> str:
    """An FTS5 query matching any of the words of `text` (stopwords dropped), each quoted literally."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(kept))


def bm25_top(db: sqlite3.Connection, query: str, k: int) -> list[tuple[int, float]]:
    """(rowid, BM25) of the `k` best matches, best first; FTS5 keeps only the best k while it ranks."""
    match = keyword_query(query)
    if not match:
        return []
    return db.execute(
        "SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", (match, k)
    ).fetchall()


def bm25_all(db: sqlite3.Connection, query: str) -> dict[int, float]:
    """BM25 of every matching chunk (for benchmarks that need whole rankings)."""
    match = keyword_query(query)
    if not match:
        return {}
    return dict(db.execute("SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?", (match,)))


def bm25_for(db: sqlite3.Connection, query: str, ids: Sequence[int]) -> dict[int, float]:
    """BM25 of the given chunks only, in one statement (FTS5 looks each rowid up, it scans nothing)."""
    match = keyword_query(query)
    if not match or not len(ids):
        return {}
    rows = db.execute(
        "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
        "AND rowid IN (SELECT value FROM json_each(?))",
        (match, json.dumps([int(i) for i in ids])),
    )
    return dict(rows)
