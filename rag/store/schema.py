"""The SQLite schema, its upgrade from older files of the same format, and how connections are opened.

Each chunk records the generation that added it, and `removed` logs the chunks each generation took
away, so a search cache at generation g catches up to G by reading only what changed in between.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from rag.store.errors import open_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    pages TEXT NOT NULL DEFAULT '[]',
    text TEXT NOT NULL,
    added_at REAL NOT NULL,
    chunking TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    page INTEGER,
    vector BLOB NOT NULL,
    gen INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS removed (chunk_id INTEGER NOT NULL, gen INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');
INSERT OR IGNORE INTO meta(key, value) VALUES ('log_floor', '0');
"""
# Created after the upgrade below, since older files lack the column.
_INDEXES = """
CREATE INDEX IF NOT EXISTS chunks_gen ON chunks(gen);
CREATE INDEX IF NOT EXISTS removed_gen ON removed(gen);
"""
# Files from before the keyword index moved to tantivy (keyword_index.py) kept an FTS5 table in step
# with triggers; it is dropped, and the new index is built from the chunks when the store opens.
_DROP_FTS5 = """
DROP TRIGGER IF EXISTS chunks_ai;
DROP TRIGGER IF EXISTS chunks_ad;
DROP TABLE IF EXISTS chunks_fts;
"""
LOCKED_WAIT_S = 30  # as long as the busy timeout: how long opening waits out another process's lock
# Columns added since format 1 first shipped: (table, column, declaration).
_ADDED = (("documents", "chunking", "TEXT NOT NULL DEFAULT ''"), ("chunks", "gen", "INTEGER NOT NULL DEFAULT 0"))


def connect_plain(file: Path) -> sqlite3.Connection:
    db = sqlite3.connect(file, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=30000")  # first, so a second process opening at once waits
    return db


def connect_writer(path: Path) -> sqlite3.Connection:
    """The connection that writes: WAL, the schema created or upgraded. Two processes creating one
    collection at once can meet SQLite's "database is locked" where its busy handler does not wait (the
    switch to WAL, a read that must become a write); that is tried again for up to LOCKED_WAIT_S."""
    deadline = time.monotonic() + LOCKED_WAIT_S
    while True:
        db = None
        try:
            db = connect_plain(path / "store.sqlite")
            _prepare_writer(db)
            return db
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise open_error(path, exc) from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise open_error(path, exc) from None


def _prepare_writer(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(SCHEMA)
    for table, column, decl in _ADDED:
        if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    db.executescript(_INDEXES)
    if db.execute("SELECT 1 FROM sqlite_master WHERE name='chunks_fts'").fetchone():
        db.executescript(_DROP_FTS5)


def connect_reader(path: Path) -> sqlite3.Connection:
    """A connection of one thread's own: each read sees one committed snapshot (WAL), never a writer's rows."""
    try:
        db = connect_plain(path / "store.sqlite")
        db.execute("PRAGMA query_only=1")
    except sqlite3.DatabaseError as exc:
        raise open_error(path, exc) from None
    return db


def generation(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])


def log_floor(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key='log_floor'").fetchone()[0])
