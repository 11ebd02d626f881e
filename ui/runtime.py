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
        """The named collection for `user`, who must be allowed to `want` it (read, write, create: write and
        create it when missing, manage: share or delete it); opened (or created) once and shared, thread-safe.

        Under --auth a collection the user may not read is refused in the sentence a missing one gets.
        """
        name = (name or self.settings.collection).strip()
        self.check_access(name, user, want)
        coll = self._open(name)
        if self.access.enabled and want == "create":
            # Just made, the maker owns it; of two people creating one name at once, the second is refused here.
            record = access.read(self.settings, name) or access.create(self.settings, name,
                                                                       self.access.new_record(user))
            if not self.access.can_write(user, record):
                raise access.refused(name, want, self.access.can_read(user, record))
        return coll

    def check_access(self, name: str, user: str, want: str = "read") -> None:
        """Refuse `user` what they may not do with collection `name`, saying nothing of one they cannot read."""
        from rag.store import validate_collection_name
        from rag.store.locate import collection_exists

        if not self.access.enabled:
            return
        name = validate_collection_name(name)
        if not collection_exists(self.settings, name):
            if want == "create" and not self.read_only:
                return
            raise access.hidden(name)
        record = access.read(self.settings, name)
        if not self.access.allows(want, user, record):
            raise access.refused(name, want, self.access.can_read(user, record))

    def level(self, name: str, user: str) -> str | None:
        """What `user` may do with collection `name`: own, write, read, or None (missing, or not theirs)."""
        from rag.store.locate import collection_exists

        if not collection_exists(self.settings, name):
            return None
        return self.access.level(user, access.read(self.settings, name))

    def sharing(self, name: str, user: str):
        """Collection `name`'s owner and shares, for its owner or the admin (anyone else: as a missing one)."""
        self.check_access(name, user, "manage")
        record = access.read(self.settings, name)
        return self.access.owner(record), dict(record.shares) if record else {}

    def share(self, name: str, user: str, who: str, level: str | None) -> None:
        """Give `who` (a user, or everyone) `level` on collection `name`, or take it back (None); owner or admin."""
        self.require_writable("sharing collections")
        self.check_access(name, user, "manage")
        who = self.access.check_user(who)
        record = access.read(self.settings, name) or access.Access(self.access.owner(None))
        if who == self.access.owner(record):
            raise RagError(f"{who} owns collection {name!r} already.")
        access.write(self.settings, name, record.shared(who, level))

    def move_owner(self, name: str, user: str, new_owner: str) -> None:
        """Make `new_owner` the owner of collection `name`; the admin only. Shares stay as they were."""
        self.require_writable("moving collections")
        if not self.access.is_admin(user):
            raise access.AccessDenied("Only the notebook's admin can move a collection to another owner.")
        self.check_access(name, user, "manage")
        new_owner = self.access.check_user(new_owner)
        if new_owner == access.EVERYONE:
            raise RagError("A collection is owned by one user; share it with everyone instead.")
        record = access.read(self.settings, name) or access.Access(self.access.owner(None))
        access.write(self.settings, name, access.Access(new_owner, record.shared(new_owner, None).shares))

    def owners(self, user: str) -> list[tuple[str, str, dict]]:
        """Every collection with its owner and shares; the admin only."""
        if not self.access.is_admin(user):
            raise access.AccessDenied("Only the notebook's admin can see who owns every collection.")
        from rag.collection import list_collections

        rows = []
        for name in list_collections(self.settings):
            record = access.read(self.settings, name)
            rows.append((name, self.access.owner(record), dict(record.shares) if record else {}))
        return rows

    def visible(self, name: str, user: str = ""):
        """The collection when it exists and `user` may read it, else None (the views show it empty)."""
        return self._open(name) if self._readable(name, user) else None

    def _readable(self, name: str, user: str) -> bool:
        """Whether collection `name` exists and `user` may read it: that one collection's record only (listing
        every collection's would ask a Milvus server once per collection on every call)."""
        from rag.store import validate_collection_name
        from rag.store.locate import collection_exists

        try:
            validate_collection_name(name)
        except RagError:
            return False
        if not collection_exists(self.settings, name):
            return False
        return not self.access.enabled or self.access.can_read(user, access.read(self.settings, name))

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
        self.check_access(name, user, "write")
        return self.trash.entries(name) if name in self.collection_names(user) else []

    def restore(self, name: str, user: str, entry_id: str):
        """Put a document back from the trash, for one who may change the collection."""
        from rag.trash import restore

        self.require_writable("restoring documents")
        return restore(self.trash, self.collection(name, user, "write"), entry_id)

    def existing_collection(self, name: str, user: str = ""):
        """The named collection when it holds something `user` may read, else a readable error pointing at
        step 1 (the same sentence, under --auth, for one that is not theirs)."""
        if not self._readable(name, user):
            raise access.hidden(name)
        return self._open(name)

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
        """The collections `user` may read (every one without --auth)."""
        from rag.collection import list_collections

        names = list_collections(self.settings)
        if not self.access.enabled:
            return names
        return [n for n in names if self.access.can_read(user, access.read(self.settings, n))]

    def uploads_dir(self, collection: str) -> Path:
        from rag.store import validate_collection_name

        # Collection names start with a letter or digit, so "_uploads" never collides with one, and
        # hold no separators, so the folder is always directly under _uploads.
        return Path(self.settings.index_dir) / "_uploads" / validate_collection_name(collection)

    def check_quota(self, name: str, user: str, sources: list[str], upload_paths: list[str] = ()) -> None:
        """Refuse, before any work, an ingest into collection `name` that would take its owner past their quota
        (under --auth; the admin has none). `sources` are URLs; uploads are counted by their files."""
        from rag.collection import list_collections
        from rag.quota import disk_bytes
        from rag.store.locate import collection_exists

        if not (self.access.enabled and self.quota.enabled):
            return
        exists = collection_exists(self.settings, name)
        owner = self.access.owner(access.read(self.settings, name)) if exists else user
        if self.access.is_admin(owner):
            return
        owned = [n for n in list_collections(self.settings)
                 if self.access.owner(access.read(self.settings, n)) == owner]
        documents = sum(len(self._open(n).documents()) for n in owned)
        stored = [str(self.uploads_dir(name) / _safe_file_name(Path(p).name)) for p in upload_paths]
        coll = self._open(name) if exists else None
        adding = sum(1 for s in [*sources, *stored] if coll is None or coll.store.find(s) is None)
        used = disk_bytes(*(Path(self.settings.index_dir) / n for n in owned), *(self.uploads_dir(n) for n in owned)) \
            if self.quota.megabytes else 0
        self.quota.check(documents, adding, used, sum(Path(p).stat().st_size for p in upload_paths))

    def stash_upload(self, collection: str, temp_path: str) -> Path:
        """Copy an upload to a stable place named after the file, so re-uploading it replaces it."""
        src = Path(temp_path)
        size = src.stat().st_size
        if size > self.max_upload_bytes:
            raise RagError(
                f"{src.name} is {size / 1e6:.1f} MB; uploads are limited to "
                f"{self.max_upload_bytes // (1024 * 1024)} MB."
            )
        folder = self.uploads_dir(collection)
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
