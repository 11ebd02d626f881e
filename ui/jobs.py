"""Stop: each browser session's running model work, and a way to end it within a token.

Gradio's own `cancels=` only stops waiting for a callback: a model call already inside llama.cpp
(the rewrite of a follow-up, the map step of a long summary) runs on for minutes. Here Stop sets
an event that the model's token stream checks, between pieces and, through `rag.interrupt`, at the
backend's own checkpoints (llama.cpp's prompt evaluation, slice by slice); the stream is closed
(GeneratorExit reaches the backend, which frees the model) and the callback ends with a status line
saying what was kept.
"""

from __future__ import annotations

import threading
from typing import Iterator

from rag.interrupt import stop_also_when


class Stopped(Exception):
    """The user pressed Stop; raised out of the model's stream into the callback."""


class Job:
    """One press of Send, Summarize or Compare; `stop()` may come from any thread."""

    def __init__(self):
        self._event = threading.Event()
        self._done = threading.Event()

    def stop(self) -> None:
        self._event.set()

    def finish(self) -> None:
        """The work ended (answered, stopped or failed)."""
        self._done.set()

    @property
    def running(self) -> bool:
        """Pressed and neither finished nor stopped: its answer is still to come."""
        return not self._done.is_set() and not self._event.is_set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Stopped()


class Jobs:
    """The latest job of each browser session (keyed by Gradio's session hash)."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, key: str | None) -> Job:
        """A fresh job for `key`, replacing the previous one (pressed before the work is queued)."""
        job = Job()
        with self._lock:
            self._jobs[key or ""] = job
        return job

    def busy(self, key: str | None) -> bool:
        """Whether `key`'s latest job is still running (a second press would be lost behind it)."""
        with self._lock:
            job = self._jobs.get(key or "")
        return job is not None and job.running

    def current(self, key: str | None) -> Job:
        """The job started for `key`, or a fresh one when the work was called without a start (API)."""
        with self._lock:
            return self._jobs.setdefault(key or "", Job())

    def end_session(self, prefix: str) -> None:
        """A tab was closed or reloaded: stop its work (nobody waits for it) and forget its jobs."""
        with self._lock:
            ended = [k for k in self._jobs if k.startswith(prefix)]
            jobs = [self._jobs.pop(k) for k in ended]
        for job in jobs:
            job.stop()

    def stop(self, key: str | None) -> bool:
        """Stop `key`'s job; False when it has none."""
        with self._lock:
            job = self._jobs.get(key or "")
        if job is None:
            return False
        job.stop()
        return True


class StoppableGenerator:
    """A Generator whose every reply (streamed or whole) ends as soon as its job is stopped."""

    def __init__(self, generator, job: Job):
        self._inner, self._job = generator, job
        self.tokens = 0  # pieces streamed through this wrapper, kept when a reply is stopped

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def stream(self, messages, **params) -> Iterator[str]:
        self._job.check()
        pieces = self._inner.stream(messages, **params)
        try:
            while True:
                # Installed for one resumption at a time: each may run in another thread's context.
                with stop_also_when(self._job.check):
                    try:
                        piece = next(pieces)
                    except StopIteration:
                        return
                self._job.check()
                self.tokens += 1
                yield piece
        finally:
            pieces.close()  # frees the backend's lock at once, whether finished, stopped or abandoned

    def generate(self, messages, **params) -> str:
        return "".join(self.stream(messages, **params))
