"""Delete you can take back: a deleted document is kept for `TRASH_DAYS` days, then forgotten.

Each deleted document is one JSON file under `<index_dir>/_trash/<collection>/` (its whole text, pages,
title and metadata, how it was chunked, who deleted it and when), written by temp file and rename before
the document leaves the store, so a crash never loses it. Restoring indexes it again with the chunking it
had. Expired entries are removed whenever the trash is listed. ("_" never starts a collection name, so the
folder cannot collide with one.)
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rag.documents import Document
from rag.errors import RagError
from rag.store import validate_collection_name
from rag.store.manifest import write_json_atomic

TRASH_DAYS = 7
FORMAT_VERSION = 1
_ID = re.compile(r"^[0-9a-f]{16}$")
_CHUNKING = re.compile(r"^chars:(\d+)/(\d+)$")  # rag.collection.chunking_id


@dataclass(frozen=True)
class TrashEntry:
    id: str
    source: str
    title: str
    deleted_at: float
    deleted_by: str

    @property
    def expires_at(self) -> float:
        return expires_at(self.deleted_at)


def expires_at(deleted_at: float) -> float:
    """When what was deleted at `deleted_at` leaves the trash for good."""
    return deleted_at + TRASH_DAYS * 86400


class Trash:
    """The deleted documents of every collection under one index directory."""

    def __init__(self, index_dir: str | Path):
        self.root = Path(index_dir) / "_trash"

    def _folder(self, collection: str) -> Path:
        return self.root / validate_collection_name(collection)

    def keep(self, collection: str, doc: Document, chunking: str, user: str = "",
             now: float | None = None, added_at: float | None = None) -> TrashEntry:
        """Keep `doc` of `collection` (deleted by `user`; first added at `added_at`) for TRASH_DAYS days;
        written whole before it returns."""
        entry = TrashEntry(secrets.token_hex(8), doc.source, doc.title, time.time() if now is None else now, user)
        folder = self._folder(collection)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / f"{entry.id}.json", {
            "format_version": FORMAT_VERSION, "source": doc.source, "title": doc.title, "text": doc.text,
            "metadata": doc.metadata, "pages": doc.pages, "chunking": chunking,
            "deleted_at": entry.deleted_at, "deleted_by": user, "added_at": added_at})
        return entry

    def entries(self, collection: str, now: float | None = None) -> list[TrashEntry]:
        """The documents deleted from `collection` in the last TRASH_DAYS days, newest first; older ones go."""
        now = time.time() if now is None else now
        found = []
        folder = self._folder(collection)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data = _read(path)
            if data is None:
                continue
            entry = TrashEntry(path.stem, data["source"], data.get("title", ""), data["deleted_at"],
                               data.get("deleted_by", ""))
            if entry.expires_at <= now:
                path.unlink(missing_ok=True)
            else:
                found.append(entry)
        return sorted(found, key=lambda e: e.deleted_at, reverse=True)

    def document(self, collection: str, entry_id: str) -> tuple[Document, dict, float | None]:
        """The kept document, the chunk settings it was indexed with ({chunk_size, chunk_overlap}, or {}), and
        when it was first added (None when the entry does not say)."""
        data = _read(self._path(collection, entry_id))
        if data is None:
            raise RagError("That document is no longer in the trash; refresh the list.")
        doc = Document(source=data["source"], text=data["text"], title=data.get("title", ""),
                       metadata=data.get("metadata") or {}, pages=[tuple(p) for p in data.get("pages") or []])
        match = _CHUNKING.match(data.get("chunking", ""))
        chunking = {"chunk_size": int(match[1]), "chunk_overlap": int(match[2])} if match else {}
        return doc, chunking, data.get("added_at")

    def drop(self, collection: str) -> None:
        """Forget every deleted document of `collection` (itself dropped for good)."""
        shutil.rmtree(self._folder(collection), ignore_errors=True)

    def forget(self, collection: str, entry_id: str) -> None:
        self._path(collection, entry_id).unlink(missing_ok=True)

    def _path(self, collection: str, entry_id: str) -> Path:
        if not _ID.match(entry_id or ""):
            raise RagError("That document is no longer in the trash; refresh the list.")
        return self._folder(collection) / f"{entry_id}.json"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # gone meanwhile, or a temp file a crash left: not an entry
    if data.get("format_version") != FORMAT_VERSION:
        return None
    return data


def move_to_trash(trash: Trash, coll, source: str, user: str = "") -> TrashEntry | None:
    """Delete `source` from collection `coll`, kept in `trash` first; None when it is not there."""
    found = coll.store.find(source)
    if found is None:
        return None
    entry = trash.keep(coll.name, coll.document(source), found.chunking, user, added_at=found.added_at)
    coll.delete(source)
    return entry


def restore(trash: Trash, coll, entry_id: str):
    """Index the kept document again, with the chunking and the "added" time it had, and take it out of the
    trash."""
    doc, chunking, added_at = trash.document(coll.name, entry_id)
    if coll.store.find(doc.source) is not None:
        raise RagError(f"{doc.source!r} is in collection {coll.name!r} again; delete it there first to restore "
                       "the copy in the trash.")
    report = coll.add_documents([doc], added_at={doc.source: added_at} if added_at else None, **chunking)
    if report.errors:
        raise RagError(report.errors[0]["error"])
    trash.forget(coll.name, entry_id)
    return report
