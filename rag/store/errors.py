"""Database and disk errors turned into one sentence a user can act on."""

from __future__ import annotations

import errno
import re
import sqlite3
from pathlib import Path

from rag.errors import RagError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_error(path: Path, exc: BaseException) -> RagError:
    """A RagError saying why writing to the collection at `path` failed: full disk, read-only, or other."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, sqlite3.Error):
        code = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_READONLY": errno.EROFS, "SQLITE_CANTOPEN": errno.EACCES,
                "SQLITE_PERM": errno.EPERM}.get(getattr(exc, "sqlite_errorname", ""), code)
    elif "No space left" in str(exc):  # FAISS reports write errors as RuntimeError with strerror's text
        code = errno.ENOSPC
    if code in _FULL:
        return RagError(f"The disk holding {path} is full; free some space and try again "
                        "(the collection keeps every document that finished before this one).")
    if code in _READ_ONLY:
        return RagError(f"The collection at {path} cannot be written (read-only or no permission); "
                        "use a writable --index or fix its permissions.")
    return RagError(f"Writing the collection at {path} failed ({exc}); check the disk and try again "
                    "(the collection keeps every document that finished before this one).")


def cache_save_error(path: Path, exc: BaseException) -> RagError:
    """The database is committed but a search cache file could not be written."""
    found = re.search(r"\(([^()]+)\)\s*$", str(exc))  # faiss ends its message with strerror's text
    reason = getattr(exc, "strerror", None) or (found.group(1) if found else str(exc))
    return RagError(f"The documents are saved, but the search cache in {path} could not be written "
                    f"({reason}); it is rebuilt from the database when the collection is next opened, "
                    "once the disk has space and is writable.")


def open_error(path: Path, exc: sqlite3.DatabaseError) -> RagError:
    if getattr(exc, "sqlite_errorname", "") in ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN"):
        return storage_error(path, exc)
    return RagError(f"The database in {path} cannot be opened ({exc}); check permissions and free disk space.")
