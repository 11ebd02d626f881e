"""Where collections live: a directory for the local store, or a Milvus engine (`settings.store`)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from rag.store.base import ChunkStore
from rag.store.milvus_client import is_store_uri


def on_milvus(settings) -> bool:
    return bool(settings.store) and is_store_uri(settings.store)


def open_store(settings, name: str, model_id: str, dimension: int | None) -> ChunkStore:
    """Collection `name` in the store `settings` names, created when `dimension` is given."""
    if on_milvus(settings):
        from rag.store.milvus import MilvusStore
        from rag.store.milvus_client import connect

        return MilvusStore(connect(settings), name, model_id, dimension)
    from rag.store.local import LocalStore

    return LocalStore(Path(settings.index_dir) / name, model_id, dimension)


def collection_exists(settings, name: str) -> bool:
    if on_milvus(settings):
        from rag.store.milvus_records import collection_exists as exists
        from rag.store.milvus_client import connect

        return exists(connect(settings), name)
    return (Path(settings.index_dir) / name / "manifest.json").exists()


def collection_names(settings) -> list[str]:
    """Names of the collections in the store."""
    if on_milvus(settings):
        from rag.store.milvus_records import collection_names as names
        from rag.store.milvus_client import connect

        return names(connect(settings))
    root = Path(settings.index_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())


def read_access(settings, name: str) -> dict | None:
    """Collection `name`'s access record (rag.access) without opening the collection; None when none."""
    if on_milvus(settings):
        from rag.store.milvus_records import read_access as read
        from rag.store.milvus_client import connect

        return read(connect(settings), name)
    from rag.store.local import read_access as read

    return read(Path(settings.index_dir) / name)


def create_access(settings, name: str, record: dict) -> None:
    """Write collection `name`'s first access record unless one is there (at once on the local store; on Milvus,
    which has no conditional write, the last of two simultaneous creators wins)."""
    if on_milvus(settings):
        if read_access(settings, name) is None:
            write_access(settings, name, record)
        return
    from rag.store.local import create_access as create

    create(Path(settings.index_dir) / name, record)


def write_access(settings, name: str, record: dict) -> None:
    """Replace collection `name`'s access record at once (one rename; one upsert on Milvus)."""
    if on_milvus(settings):
        from rag.store.milvus_records import write_access as write
        from rag.store.milvus_client import connect

        return write(connect(settings), name, record)
    from rag.store.local import write_access as write

    write(Path(settings.index_dir) / name, record)


def drop_collection(settings, name: str) -> None:
    """Remove collection `name` and everything of it from the store, for good (rag.libraries, when its days in
    the trash are over). The local store's folder is first moved out of the index directory in one rename, so
    a removal cut short leaves no part of a collection behind under its name."""
    if on_milvus(settings):
        from rag.store.milvus_records import drop_collection as drop
        from rag.store.milvus_client import connect

        return drop(connect(settings), name)
    # rag.trash keeps documents under _trash/<collection>; "_" never starts a collection name.
    folder, attic = Path(settings.index_dir) / name, Path(settings.index_dir) / "_trash" / "_dropping"
    attic.mkdir(parents=True, exist_ok=True)
    gone = attic / f"{secrets.token_hex(8)}"
    folder.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)
