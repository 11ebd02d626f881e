"""The writer lock: one writer per collection across threads (an RLock) and processes (flock)."""

from __future__ import annotations

import fcntl
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rag.errors import RagError
from rag.store.errors import storage_error


class WriterLock:
    """Held only while a batch is committed, never while sources are fetched or embedded."""

    def __init__(self, path: Path, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth:  # re-entered by the same thread: the file lock is already held
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._open() as fh:
                self._acquire(fh)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _open(self):
        try:
            return open(self.path / "lock", "a+")
        except OSError as exc:
            raise storage_error(self.path, exc) from None

    def _acquire(self, fh) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RagError(
                        f"Collection {self.path.name!r} is being written by another process; "
                        "wait for it to finish and try again."
                    ) from None
                time.sleep(0.05)
