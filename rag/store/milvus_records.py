"""What the Milvus store writes and reads outside one store object: version numbers, string literals and the
source filter of its expressions, which collections exist, and each collection's access record."""

from __future__ import annotations

import json
import secrets
import time
from typing import Sequence

from rag.errors import RagError
from rag.store.milvus_client import Connection
from rag.store.milvus_schema import ACCESS_KEY, KINDS, PLACEHOLDER, logical_name, physical_name


def new_version() -> int:
    """A version number: microseconds since the epoch, times 1000, plus a random part (two writers
    never pick the same one; the age of an abandoned write can be read from it)."""
    return time.time_ns() // 1000 * 1000 + secrets.randbelow(1000)


def version_age(version: int) -> float:
    """Seconds since `version` was picked."""
    return time.time() - version / 1e9


def text_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# The escapes a Milvus string literal accepts on a server and in lite alike; other characters stand as
# they are. (Expression templates would need no escaping, but lite does not parse them.)
_LITERAL = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def string_literal(text: str) -> str:
    """`text` as a double-quoted Milvus string literal: no quote or backslash in it can end the string."""
    return '"' + text.translate(_LITERAL) + '"'


def among(sources: Sequence[str] | None) -> dict | None:
    """The search arguments that keep chunks of `sources` only: none for every document, None when no
    stored document can match (a source that is not UTF-8 text, a lone surrogate, cannot be stored)."""
    if sources is None:
        return {}
    stored = [s for s in sources if encodes(s)]
    return {"filter": f"source in [{', '.join(map(string_literal, stored))}]"} if stored else None


def encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def collection_names(connection: Connection) -> list[str]:
    """The collections on the server (those with a docs collection, which is created last)."""
    names = connection.retry(connection.client.list_collections)
    return sorted(n for n in map(logical_name, names) if n)


def collection_exists(connection: Connection, name: str) -> bool:
    return connection.retry(lambda: connection.client.has_collection(physical_name(name, "docs")))


def read_access(connection: Connection, name: str) -> dict | None:
    """The access record of collection `name`, or None (none written, or no collection)."""
    docs = physical_name(name, "docs")
    if not collection_exists(connection, name):
        return None
    rows = connection.retry(lambda: connection.client.get(docs, ids=[ACCESS_KEY], output_fields=["metadata"]),
                            reload=lambda: connection.retry(lambda: connection.client.load_collection(docs),
                                                            patient=True))
    return json.loads(rows[0]["metadata"]) if rows else None


def write_access(connection: Connection, name: str, record: dict) -> None:
    """Replace the access record with one upsert of its row: readers see the old record or the new one."""
    docs = physical_name(name, "docs")
    if not collection_exists(connection, name):
        raise RagError(f"There is no collection {name!r} on the Milvus server at {connection.address.shown}.")
    row = {"id": ACCESS_KEY, "source": "", "version": 0, "content_hash": "", "chunking": "", "title": "",
           "metadata": json.dumps(record), "added_at": 0.0, "chunks": 0, "_v": PLACEHOLDER}
    connection.retry(lambda: connection.client.upsert(docs, [row]),
                     reload=lambda: connection.retry(lambda: connection.client.load_collection(docs), patient=True))


def drop_collection(connection: Connection, name: str) -> None:
    """Drop collection `name` from the server: the docs collection, which holds the manifest and the access
    record, last, so a drop cut short leaves the collection listed, still marked deleted, to drop again."""
    for kind in KINDS:
        physical = physical_name(name, kind)
        if connection.retry(lambda: connection.client.has_collection(physical)):
            connection.retry(lambda: connection.client.drop_collection(physical))
