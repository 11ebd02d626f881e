"""What the notebook shares between users: settings, opened collections, the read-only switch.

Built once in `app.main` and passed to the Blocks. Per-user data lives in `ui.state`, not here.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from pathlib import Path

from rag.conversations import ConversationStore
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

    def __init__(self, settings: Settings, read_only: bool = False, max_upload_mb: int = 25):
        self.settings = settings
        self.read_only = read_only
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

    def require_writable(self, action: str) -> None:
        """Refuse `action` in read-only mode, whatever the browser sent."""
        if self.read_only:
            raise ReadOnlyError(f"This notebook is read-only (demo mode): {action} is disabled.")

    def collection(self, name: str):
        """The named collection, opened (or created) once and shared; it is thread-safe."""
        from rag.collection import Collection

        name = (name or self.settings.collection).strip()
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

    def existing_collection(self, name: str):
        """The named collection when it holds something, else a readable error pointing at step 1."""
        if name not in self.collection_names():
            raise RagError(f"Collection {name!r} is empty; ingest something in step 1 first.")
        return self.collection(name)

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
        folder = Path(self._exports.name) / (session.conversation_id or "unsaved")
        folder.mkdir(exist_ok=True)
        return folder / "conversation.md"

    def collection_names(self) -> list[str]:
        from rag.collection import list_collections

        return list_collections(self.settings)

    def uploads_dir(self, collection: str) -> Path:
        from rag.store import validate_collection_name

        # Collection names start with a letter or digit, so "_uploads" never collides with one, and
        # hold no separators, so the folder is always directly under _uploads.
        return Path(self.settings.index_dir) / "_uploads" / validate_collection_name(collection)

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
