"""The collection's manifest (format version, embedding model, dimension) and its name rules."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path

from rag.errors import RagError
from rag.store.errors import storage_error

# A local collection's format. 2: the keyword index is tantivy's, beside the database; 1 kept an FTS5
# table inside it, and is upgraded on opening (`upgrade`). A program that reads only 1 refuses 2 in one
# sentence instead of searching a keyword table that nothing fills.
FORMAT_VERSION = 2
UPGRADES_FROM = (1,)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_collection_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise RagError(
            f"Collection name {name!r} is not allowed; use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def write_json_atomic(path: Path, data: dict) -> None:
    # A temp name of its own, so two processes creating the same collection don't rename each other's file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_manifest(path: Path, model_id: str, dimension: int | None) -> int:
    """Create the manifest of a new collection, or check an existing one; returns the dimension."""
    manifest = path / "manifest.json"
    if not manifest.exists():
        if dimension is None:
            raise RagError(f"There is no collection at {path}; ingest something into it first.")
        try:
            path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(manifest, {"format_version": FORMAT_VERSION, "embedding_model": model_id,
                                         "dimension": dimension, "created_at": time.time()})
        except OSError as exc:
            raise storage_error(path, exc) from None
        return dimension
    try:
        found = json.loads(manifest.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise RagError(f"Cannot read the index directory {path}: {exc.strerror}; check its permissions.")
    except (OSError, ValueError) as exc:
        raise RagError(f"The manifest of {path} cannot be read ({exc}); move that directory aside and re-ingest.")
    return check_found(found, f"Index {path}", path.name, model_id, dimension,
                       version=FORMAT_VERSION, readable=(FORMAT_VERSION, *UPGRADES_FROM))


def upgrade(path: Path) -> None:
    """Record the current format in the manifest of a collection whose files were just upgraded."""
    manifest = path / "manifest.json"
    try:
        found = json.loads(manifest.read_text(encoding="utf-8"))
        if found.get("format_version") in UPGRADES_FROM:
            write_json_atomic(manifest, {**found, "format_version": FORMAT_VERSION})
    except (OSError, ValueError) as exc:
        raise storage_error(path, exc) from None


def check_found(found: dict, where: str, name: str, model_id: str, dimension: int | None,
                version: int, readable: tuple[int, ...]) -> int:
    """The dimension a stored manifest (`found`, read from `where`) records, or a RagError when it is of
    a format this program does not read (`readable`; `version` is the one it writes) or of another
    embedding model; every store checks its manifest here."""
    if found.get("format_version") not in readable:
        raise RagError(
            f"{where} has format version {found.get('format_version')}, this program reads "
            f"{version}; re-ingest into a new collection."
        )
    if dimension is None:
        dimension = found.get("dimension")
    if (found.get("embedding_model"), found.get("dimension")) != (model_id, dimension):
        raise RagError(
            f"Collection {name!r} was built with embedding model {found.get('embedding_model')!r} "
            f"(dimension {found.get('dimension')}), not {model_id!r} (dimension {dimension}); "
            "use the same model or a new collection (RAG_EMBEDDING_MODEL and RAG_EMBEDDING_BACKEND choose them)."
        )
    return dimension
