"""The writer lock: one writer per collection across threads (an RLock) and processes (flock).

Not `filelock`, though it is installed: its acquire creates a missing directory (a collection deleted
while open would come back as an empty folder), and where flock is missing it falls back to a soft lock
that a process holding the flock does not see. Its flock would save a dozen lines here.
"""

from __future__ import annotations

import fcntl
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rag.errors import RagError
from rag.store.errors import storage_error


class WriterLock:
    """Held only while a batch is committed, never while sources are fetched or embedded."""

    def __init__(self, path: Path, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0

    @property
    def held_here(self) -> bool:
        """True while a thread of this process holds the lock."""
        return self._depth > 0

    @contextmanager
    def hold(self, wait: bool = True, outermost_done: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the lock (re-entrant in one thread). `outermost_done` runs, still under the lock, when the
        outermost hold ends, even after an error inside it (whose error then wins over its own)."""
        if not self._thread_lock.acquire(timeout=self.timeout if wait else 0):
            raise self._busy()
        try:
            if self._depth:  # re-entered by the same thread: the file lock is already held
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._open() as fh:
                self._acquire(fh, wait)
                self._depth = 1
                try:
                    try:
                        yield
                    except BaseException:
                        if outermost_done is not None:
                            try:
                                outermost_done()
                            except Exception:  # noqa: BLE001 - the first error is the one to report
                                pass
                        raise
                    if outermost_done is not None:
                        outermost_done()
                finally:
                    self._depth = 0
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _open(self):
        try:
            return open(self.path / "lock", "a+")
        except OSError as exc:
            raise storage_error(self.path, exc) from None

    def _acquire(self, fh, wait: bool = True) -> None:
        deadline = time.monotonic() + (self.timeout if wait else 0)
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(0.05)

    def _busy(self) -> RagError:
        return RagError(f"Collection {self.path.name!r} is being written by another process; "
                        "wait for it to finish and try again.")
