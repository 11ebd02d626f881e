"""Named conversations kept on disk: one SQLite file beside the collections, rows per user and collection.

A conversation is a list of turns (question, standalone question, answer, sources, stopped) stored
as JSON. Every read and write names the user, so under `--auth` nobody sees another's conversations.
Each save is one transaction: a crash leaves the last saved state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import RagError

FORMAT_VERSION = 1
FILE_NAME = "_conversations.sqlite"  # "_" never starts a collection name, so it cannot collide with one
MAX_TITLE_CHARS = 120

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    collection TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    turns TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (user, collection, updated);
"""


@dataclass
class Conversation:
    id: str
    collection: str
    title: str
    turns: list[dict] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0


def title_from(question: str) -> str:
    """A conversation's first name: its first question on one line, shortened."""
    line = " ".join((question or "").split())
    return (line[: MAX_TITLE_CHARS - 1] + "…") if len(line) > MAX_TITLE_CHARS else (line or "Untitled")


class ConversationStore:
    """The conversations file under `index_dir`; safe to share between threads."""

    def __init__(self, index_dir: str | Path):
        self.path = Path(index_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, FORMAT_VERSION):
                    db.close()
                    raise RagError(f"{self.path} holds conversations in format {version}; this version reads "
                                   f"format {FORMAT_VERSION}. Move the file aside to start afresh.")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            except sqlite3.Error as exc:
                raise RagError(f"Cannot open the conversations file {self.path}: {exc}.") from exc
            self._db = db
        return self._db

    def list(self, user: str, collection: str) -> list[Conversation]:
        """The user's conversations over `collection`, most recently updated first (turns not loaded)."""
        if self._db is None and not self.path.exists():
            return []  # reading creates nothing: the file appears with the first saved conversation
        with self._lock:
            rows = self._connect().execute(
                "SELECT id, collection, title, created, updated FROM conversations "
                "WHERE user = ? AND collection = ? ORDER BY updated DESC", (user, collection)).fetchall()
        return [Conversation(id=r[0], collection=r[1], title=r[2], created=r[3], updated=r[4]) for r in rows]

    def get(self, user: str, conversation_id: str) -> Conversation:
        if self._db is None and not self.path.exists():
            raise RagError("That conversation no longer exists; pick another one from the list.")
        with self._lock:
            row = self._connect().execute(
                "SELECT id, collection, title, created, updated, turns FROM conversations WHERE user = ? AND id = ?",
                (user, conversation_id)).fetchone()
        if row is None:
            raise RagError("That conversation no longer exists; pick another one from the list.")
        return Conversation(id=row[0], collection=row[1], title=row[2], created=row[3], updated=row[4],
                            turns=json.loads(row[5]))

    def save(self, user: str, collection: str, turns: list[dict], conversation_id: str | None = None,
             title: str | None = None) -> str:
        """Write the turns (creating the conversation when `conversation_id` is None); returns its id."""
        now = time.time()
        data = json.dumps(turns, ensure_ascii=False)
        with self._lock:
            db = self._connect()
            if conversation_id:
                updated = db.execute("UPDATE conversations SET turns = ?, updated = ? WHERE user = ? AND id = ?",
                                     (data, now, user, conversation_id)).rowcount
                if updated:
                    return conversation_id
            conversation_id = conversation_id or uuid.uuid4().hex
            name = title_from(title or (turns[0]["question"] if turns else ""))
            db.execute("INSERT INTO conversations (id, user, collection, title, created, updated, turns) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (conversation_id, user, collection, name, now, now, data))
            return conversation_id

    def rename(self, user: str, conversation_id: str, title: str) -> str:
        title = " ".join((title or "").split())
        if not title:
            raise RagError("Type a name for the conversation first.")
        if len(title) > MAX_TITLE_CHARS:
            raise RagError(f"The name is {len(title)} characters long; the limit is {MAX_TITLE_CHARS}.")
        with self._lock:
            changed = self._connect().execute("UPDATE conversations SET title = ? WHERE user = ? AND id = ?",
                                              (title, user, conversation_id)).rowcount
        if not changed:
            raise RagError("Open a saved conversation first, then rename it.")
        return title

    def delete(self, user: str, conversation_id: str) -> bool:
        with self._lock:
            return bool(self._connect().execute("DELETE FROM conversations WHERE user = ? AND id = ?",
                                                (user, conversation_id)).rowcount)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
