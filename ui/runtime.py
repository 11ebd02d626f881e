"""What the notebook shares between users: settings, opened collections, the read-only switch.

Built once in `app.main` and passed to the Blocks. Per-user data lives in `ui.state`, not here.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

from rag import access
from rag.access import AccessRule
from rag.conversations import ConversationStore
from rag.libraries import Libraries, uploads_folder
from rag.quota import Quota
from rag.trash import Trash
from rag.errors import RagError
from rag.settings import Settings
from ui.jobs import Jobs

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
# Loading a GGUF file reads it whole; a cold read with llama.cpp's preparation runs at about this rate on a
# laptop SSD (the default 98 MB model loads in about 2 s on a busy 2-core machine).
LOAD_BYTES_PER_S = 150 << 20


class ReadOnlyError(RagError):
    """A guest tried to change something in read-only (demo) mode."""


class Runtime:
    """Shared services for every session; opening a collection happens on first use."""

    def __init__(self, settings: Settings, read_only: bool = False, max_upload_mb: int = 25,
                 is_admin: Callable[[str], bool] | None = None, access_rule: AccessRule | None = None,
                 quota: Quota | None = None):
        self.settings = settings
        self.read_only = read_only
        # Who may open which collection (rag.access); the default, without --auth, lets the one person do all.
        self.access = access_rule or AccessRule()
        self.quota = quota or Quota()  # per user under --auth (rag/quota.py); none by default
        # Who may act for the whole app (download models): app.LaunchConfig.is_admin; the one local user otherwise.
        self.is_admin = is_admin or (lambda user: True)
        self._downloads = None
        self.max_upload_bytes = max_upload_mb * 1024 * 1024
        self._collections: dict[str, object] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._pool = None
        self.jobs = Jobs()
        self._exports: tempfile.TemporaryDirectory | None = None
        # A read-only notebook writes nothing under the index: guests' conversations last until it stops.
        self._guest_conversations = tempfile.TemporaryDirectory(prefix="local-rag-guests-") if read_only else None
        self.conversations = ConversationStore(self._guest_conversations.name if read_only else settings.index_dir)
        self.trash = Trash(settings.index_dir)  # deleted documents, kept 7 days (rag/trash.py)
        # Each user's collections, their names, and the trash of collections (rag/libraries.py).
        self.libraries = Libraries(settings, self.access, read_only)

    @property
    def downloads(self):
        """The model downloads every session sees (one per model, shared)."""
        from rag.models.download import Downloads

        with self._lock:
            if self._downloads is None:
                self._downloads = Downloads(self.settings.models_dir)
            return self._downloads

    def may_administer(self, user: str) -> bool:
        """Whether `user` may act for the whole app here (download models): the admin, on a writable notebook."""
        return not self.read_only and self.is_admin(user)

    def require_admin(self, user: str, action: str) -> None:
        """Refuse `action` to anyone but the admin, whatever the browser sent."""
        self.require_writable(action)
        if not self.is_admin(user):
            raise RagError(f"Only the notebook's admin can {action} here; choose one of the models already "
                           "on this machine, or ask the admin.")

    def require_writable(self, action: str) -> None:
        """Refuse `action` in read-only mode, whatever the browser sent."""
        if self.read_only:
            raise ReadOnlyError(f"This notebook is read-only (demo mode): {action} is disabled.")

    def collection(self, name: str, user: str = "", want: str = "read"):
        """The collection `user` calls `name`, who must be allowed to `want` it (read, write, create: write and
        create it when missing, manage: share or delete it); opened (or created) once and shared, thread-safe.

        Under --auth a collection the user may not read is refused in the sentence a missing one gets.
        """
        stored = self.check_access(name, user, want)
        coll = self._open(stored)
        if self.access.enabled and want == "create":
            # Just made, the maker owns it; of two sessions of one person creating it at once, one record is kept.
            record = access.read(self.settings, stored) or access.create(self.settings, stored,
                                                                         self.access.new_record(user))
            if not self.access.can_write(user, record):
                raise access.refused(name, want, self.access.can_read(user, record))
        return coll

    def check_access(self, name: str, user: str, want: str = "read") -> str:
        """The store's name of collection `name`, once `user` may `want` it (rag.libraries); refused saying
        nothing of one they cannot read. Without --auth reading needs no check: a conversation's own passages
        stay readable when its collection is gone."""
        if not self.access.enabled and want == "read":
            return self.libraries.stored(name, user)
        return self.libraries.check(name, user, want)

    def level(self, name: str, user: str) -> str | None:
        """What `user` may do with collection `name`: own, write, read, or None (missing, or not theirs)."""
        return self.libraries.level(name, user)

    def visible(self, name: str, user: str = ""):
        """The collection when it exists and `user` may read it, else None (the views show it empty)."""
        stored = self.libraries.readable(name, user)
        return None if stored is None else self._open(stored)

    def delete_collection(self, name: str, user: str) -> None:
        """Move collection `name` to the trash, for its owner or the admin; it leaves every list at once."""
        self.require_writable("deleting collections")
        stored = self.libraries.delete(name, user)
        with self._lock:
            coll = self._collections.pop(stored, None)
        if coll is not None:
            coll.store.close()

    def restore_collection(self, stored: str, user: str) -> str:
        """Take a collection out of the trash (`stored` from `libraries.deleted`); the name `user` calls it."""
        self.require_writable("restoring collections")
        return self.libraries.restore(stored, user)

    def _open(self, name: str):
        from rag.collection import Collection

        with self._lock:
            if name in self._collections:
                return self._collections[name]
            opening = self._opening.setdefault(name, threading.Lock())
        # Opening may take seconds (the first ONNX export): only callers of this name wait for it.
        with opening:
            with self._lock:
                if name in self._collections:
                    return self._collections[name]
            coll = Collection.open(self.settings, name, create=not self.read_only)
            with self._lock:
                self._collections[name] = coll
            return coll

    def delete_document(self, name: str, user: str, source: str) -> bool:
        """Move `source` of collection `name` to the trash, for one who may change the collection."""
        from rag.trash import move_to_trash

        self.require_writable("deleting documents")
        return move_to_trash(self.trash, self.collection(name, user, "write"), source, user) is not None

    def trash_entries(self, name: str, user: str) -> list:
        """The documents deleted from collection `name` in the last 7 days, for one who may change it."""
        return self.trash.entries(self.check_access(name, user, "write"))

    def restore(self, name: str, user: str, entry_id: str):
        """Put a document back from the trash, for one who may change the collection."""
        from rag.trash import restore

        self.require_writable("restoring documents")
        return restore(self.trash, self.collection(name, user, "write"), entry_id)

    def existing_collection(self, name: str, user: str = ""):
        """The named collection when it holds something `user` may read, else a readable error pointing at
        step 1 (the same sentence, under --auth, for one that is not theirs)."""
        coll = self.visible(name, user)
        if coll is None:
            raise access.hidden(name)
        return coll

    def generator(self, chat, backend: str | None = None):
        """The model `chat` (a ChatSettings) asks for, loaded on first use; one per backend is kept."""
        from rag.generators import GeneratorPool

        with self._lock:
            if self._pool is None:
                self._pool = GeneratorPool()
        settings = self.settings.replace(
            backend=backend or chat.backend, model=chat.model, temperature=chat.temperature,
            max_tokens=chat.max_tokens, n_ctx=chat.n_ctx,
        )
        return self._pool.get(settings)

    def is_loaded(self, backend: str) -> bool:
        return self._pool is not None and backend in self._pool.loaded()

    def holds(self, chat, backend: str) -> bool:
        """Whether `backend` has `chat`'s own model loaded, not another one chosen before (a server's counts
        as held once its backend is)."""
        if not self.is_loaded(backend):
            return False
        wanted = self.model_file(chat, backend)
        loaded = self._pool.loaded().get(backend)
        if wanted is None or not isinstance(loaded, (str, Path)) or not Path(loaded).is_file():
            return True
        return Path(loaded).name.startswith(wanted.stem)  # GPT4All runs a renamed copy (rag.models.compat)

    def model_file(self, chat, backend: str) -> Path | None:
        """The GGUF file `chat`'s model is on `backend` (None for a server, or a model not found)."""
        if backend == "openai":
            return None
        from rag.models import resolve_model

        try:
            return resolve_model(chat.model or self.settings.model, self.settings.models_dir)
        except Exception:  # noqa: BLE001 - a model that can't be found is said when it is loaded
            return None

    def load_seconds(self, chat, backend: str) -> int | None:
        """About how long loading `chat`'s model takes on `backend`: reading the file from disk and preparing
        it, from its size (None for a server, or a model not found)."""
        path = self.model_file(chat, backend)
        return None if path is None else max(2, round(path.stat().st_size / LOAD_BYTES_PER_S))

    def answer_style(self, chat) -> str:
        """The style `chat`'s own backend and model answer in: "quote" or "free" (auto resolved)."""
        from rag.quote import model_parameters, quotes_by_default

        path = self.model_file(chat, chat.backend)
        return "quote" if quotes_by_default(chat.answer_style, model_parameters(path)) else "free"

    def loaded_model(self, backend: str) -> str | None:
        """The file name of the model `backend` holds, if it has loaded one."""
        path = self._pool.loaded().get(backend) if self._pool is not None else None
        return Path(path).name if path else None

    def backends(self) -> list[str]:
        """The backends the notebook offers: the openai backend only where a server is set (--base-url), since
        the page has no field for one; a newcomer's Compare said only that it needed one."""
        from rag.generators import available_backends

        return [b for b in available_backends() if b != "openai" or self.settings.base_url]

    def export_path(self, session) -> Path:
        """Where a conversation's export is written: one file per conversation, replaced on each export."""
        with self._lock:
            if self._exports is None:
                self._exports = tempfile.TemporaryDirectory(prefix="local-rag-exports-")
        # A conversation not saved yet gets a folder of its own: a shared "unsaved" one mixed users' exports.
        folder = Path(self._exports.name) / (session.conversation_id or f"unsaved-{secrets.token_hex(8)}")
        folder.mkdir(exist_ok=True)
        return folder / "conversation.md"

    def collection_names(self, user: str = "") -> list[str]:
        """The collections `user` may read, by the names they use (every one without --auth); none in the trash."""
        return self.libraries.names(user)

    def uploads_dir(self, collection: str, user: str = "") -> Path:
        """Where uploads to collection `collection` (as `user` calls it) are kept."""
        return uploads_folder(self.settings, self.libraries.stored(collection, user))

    def check_quota(self, name: str, user: str, sources: list[str], upload_paths: list[str] = ()) -> None:
        """Refuse, before any work, an ingest into collection `name` that would take its owner past their quota
        (under --auth; the admin has none). `sources` are URLs; uploads are counted by their files."""
        from rag.collection import list_collections
        from rag.quota import disk_bytes
        from rag.store.locate import collection_exists

        if not (self.access.enabled and self.quota.enabled):
            return
        name = self.libraries.stored(name, user)
        exists = collection_exists(self.settings, name)
        owner = self.access.owner(access.read(self.settings, name)) if exists else user
        if self.access.is_admin(owner):
            return
        # Collections in the trash count too: they keep their disk until they are dropped.
        owned = [n for n in list_collections(self.settings)
                 if self.access.owner(access.read(self.settings, n)) == owner]
        documents = sum(len(self._open(n).documents()) for n in owned)
        stored = [str(uploads_folder(self.settings, name) / _safe_file_name(Path(p).name)) for p in upload_paths]
        coll = self._open(name) if exists else None
        adding = sum(1 for s in [*sources, *stored] if coll is None or coll.store.find(s) is None)
        used = disk_bytes(*(Path(self.settings.index_dir) / n for n in owned),
                          *(uploads_folder(self.settings, n) for n in owned)) \
            if self.quota.megabytes else 0
        self.quota.check(documents, adding, used, sum(Path(p).stat().st_size for p in upload_paths))

    def stash_upload(self, collection: str, temp_path: str, user: str = "") -> Path:
        """Copy an upload to a stable place named after the file, so re-uploading it replaces it."""
        src = Path(temp_path)
        size = src.stat().st_size
        if size > self.max_upload_bytes:
            raise RagError(
                f"{src.name} is {size / 1e6:.1f} MB; uploads are limited to "
                f"{self.max_upload_bytes // (1024 * 1024)} MB."
            )
        folder = self.uploads_dir(collection, user)
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / _safe_file_name(src.name)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        return dest


def _safe_file_name(name: str, limit: int = 120) -> str:
    """A plain file name: no separators or dot-only names, and short enough for any file system."""
    name = _UNSAFE_NAME.sub("_", name).strip(" .") or "upload"
    if len(name.encode("utf-8")) > limit:
        stem, dot, suffix = name.rpartition(".")
        suffix = dot + suffix if dot and len(suffix) <= 10 else ""
        name = (stem if suffix else name).encode("utf-8")[: limit - len(suffix)].decode("utf-8", "ignore") + suffix
    return name
