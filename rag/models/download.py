"""Downloading a catalogue model from the Hugging Face Hub: progress, cancel, resume, checksum.

The hub reports each large file's SHA-256 (its LFS object id) and size before the transfer; the
file grows in `<name>.part`, a later try (after a cancel, a dropped connection or a restart) resumes
it with an HTTP Range request, and only a file whose hash matches is renamed into place. A gated
repository takes the token in `HF_TOKEN`.

`Downloads` runs them in the background for the notebook, one per file: a second request for a file
already on its way joins the first, so two people pressing Download fetch it once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rag.errors import RagError
from rag.models.catalogue import CatalogueEntry
from rag.models.gguf import read_header

DEFAULT_ENDPOINT = "https://huggingface.co"
_CHUNK = 1 << 20


class DownloadCancelled(RagError):
    """The download was cancelled; its `.part` file stays for the next try to resume."""


@dataclass
class Progress:
    """How far a download is: bytes on disk of `total`, and the pace of this try."""

    done: int = 0
    total: int = 0
    resumed_from: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def speed(self) -> float:
        """Bytes per second fetched by this try (not counting what an earlier try left)."""
        elapsed = time.monotonic() - self.started
        return (self.done - self.resumed_from) / elapsed if elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        speed = self.speed
        return (self.total - self.done) / speed if speed > 0 and self.total else None


def hub_url(entry: CatalogueEntry, endpoint: str | None = None) -> str:
    base = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    return f"{base}/{entry.repo}/resolve/main/{entry.filename}"


def part_path(entry: CatalogueEntry, models_dir: str | os.PathLike) -> Path:
    """Where the file grows until its checksum is right."""
    return Path(models_dir) / (entry.filename + ".part")


def download_model(entry: CatalogueEntry, models_dir: str | os.PathLike, endpoint: str | None = None,
                   progress: bool = True, *, on_progress: Callable[[Progress], None] | None = None,
                   cancel: threading.Event | None = None, token: str | None = None) -> Path:
    """Download a catalogue model into `models_dir`; RagError with one sentence when that fails.

    `on_progress` is called as bytes arrive; setting `cancel` stops the transfer (DownloadCancelled) with
    the `.part` file kept. `progress` draws a bar on a terminal.
    """
    import httpx

    models_dir = Path(models_dir)
    dest, part = models_dir / entry.filename, part_path(entry, models_dir)
    url = hub_url(entry, endpoint)
    token = token or os.environ.get("HF_TOKEN") or None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    state = Progress()
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with httpx.Client(follow_redirects=True, headers=headers,
                          timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            sha256, size = _expected(client, url, entry)
            have = part.stat().st_size if part.exists() else 0
            _check_space(models_dir, size - have, entry)
            state = Progress(done=have, total=size, resumed_from=have)
            _fetch(client, url, part, state, entry.filename, progress, on_progress, cancel)
        if _sha256(part) != sha256:
            part.unlink()  # damaged bytes must not be resumed either
            raise RagError(f"{entry.filename} arrived damaged (its SHA-256 does not match the hub's) and was "
                           "deleted; download it again.")
        os.replace(part, dest)
    except httpx.HTTPError as exc:
        raise _network_error(exc, entry, state) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise RagError(f"The disk holding {models_dir} is full; free some space and download again "
                           "(the part already fetched is kept).") from None
        raise RagError(f"Could not write {dest} ({exc.strerror}); free some space or set another models dir.") from None
    read_header(dest)
    return dest


def _expected(client, url: str, entry: CatalogueEntry) -> tuple[str, int]:
    """The file's SHA-256 and size, from the hub's headers for a large (LFS) file."""
    head = client.head(url, follow_redirects=False)
    if head.status_code in (401, 403):
        raise RagError(f"The hub refused {entry.repo} (HTTP {head.status_code}): it is gated or private. Accept its "
                       "licence on huggingface.co and set HF_TOKEN to a token of yours, then download again.")
    if head.status_code == 404:
        raise RagError(f"{entry.filename} is not in {entry.repo} on the hub (HTTP 404); the catalogue entry is out "
                       "of date, so choose another model.")
    if head.status_code >= 400:
        head.raise_for_status()
    sha256 = (head.headers.get("x-linked-etag") or head.headers.get("etag") or "").strip('"').removeprefix("W/")
    size = head.headers.get("x-linked-size") or head.headers.get("content-length") or "0"
    if len(sha256) != 64:
        raise RagError(f"The hub gave no SHA-256 for {entry.filename}, so it cannot be checked; "
                       "download it yourself into the models dir.")
    return sha256.lower(), int(size)


def _check_space(models_dir: Path, needed: int, entry: CatalogueEntry) -> None:
    free = shutil.disk_usage(models_dir).free
    if needed > 0 and free < needed:
        raise RagError(f"{entry.filename} needs {needed >> 20:,} MB more, and the disk holding {models_dir} has "
                       f"{free >> 20:,} MB free; free some space and download again.")


def _fetch(client, url: str, part: Path, state: Progress, label: str, bar_on: bool,
           on_progress: Callable[[Progress], None] | None, cancel: threading.Event | None) -> None:
    """Append the missing bytes of `url` to `part`, resuming where an earlier try stopped."""
    if state.total and state.done >= state.total:
        return
    headers = {"Range": f"bytes={state.done}-"} if state.done else {}
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        if state.done and response.status_code != 206:
            state.done = state.resumed_from = 0  # the server ignored the range: start again
        bar = _bar(state.total, state.done, label, bar_on)
        try:
            with part.open("ab" if state.done else "wb") as out:
                for chunk in response.iter_bytes():  # as it arrives: a cut loses nothing received
                    if cancel is not None and cancel.is_set():
                        raise DownloadCancelled(f"The download of {label} was cancelled at "
                                                f"{state.fraction:.0%}; download it again to resume from there.")
                    out.write(chunk)
                    state.done += len(chunk)
                    bar.update(len(chunk))
                    if on_progress is not None:
                        on_progress(state)
        finally:
            bar.close()
    if state.total and state.done < state.total:
        raise RagError(f"The hub's connection ended at {state.fraction:.0%} of {label}; download it again to "
                       "resume from there.")


def _network_error(exc, entry: CatalogueEntry, state: Progress) -> RagError:
    import httpx

    where = f" at {state.fraction:.0%}" if state.done else ""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return RagError(f"Could not reach the hub for {entry.filename} (no network?); check the connection and "
                        "download again.")
    if isinstance(exc, httpx.HTTPStatusError):
        return RagError(f"The hub answered HTTP {exc.response.status_code} for {entry.filename}; try again later.")
    return RagError(f"The connection to the hub dropped{where} while fetching {entry.filename} "
                    f"({type(exc).__name__}); download it again to resume from there.")


def _bar(total: int, initial: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, initial=initial, unit="B", unit_scale=True, desc=label,
                disable=not enabled or not sys.stderr.isatty(), file=sys.stderr)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- the notebook's downloads ------------------------------------------------------------------------


@dataclass
class DownloadJob:
    """One file on its way: its progress, how it ended (path or error), and the switch that cancels it."""

    entry: CatalogueEntry
    progress: Progress = field(default_factory=Progress)
    cancel: threading.Event = field(default_factory=threading.Event)
    path: Path | None = None
    error: str = ""
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return not self.finished.is_set()


class Downloads:
    """The downloads of this process, one per catalogue model, each in a thread of its own."""

    def __init__(self, models_dir: str | os.PathLike, endpoint: str | None = None):
        self.models_dir, self.endpoint = Path(models_dir), endpoint
        self._jobs: dict[str, DownloadJob] = {}
        self._lock = threading.Lock()

    def start(self, entry: CatalogueEntry) -> DownloadJob:
        """Start fetching `entry`, or return the download of it already running."""
        with self._lock:
            job = self._jobs.get(entry.name)
            if job is not None and job.running:
                return job
            job = self._jobs[entry.name] = DownloadJob(entry)
        threading.Thread(target=self._run, args=(job,), name=f"download-{entry.name}", daemon=True).start()
        return job

    def job(self, name: str) -> DownloadJob | None:
        with self._lock:
            return self._jobs.get(name)

    def cancel(self, name: str) -> bool:
        """Ask the running download of `name` to stop; False when none runs."""
        job = self.job(name)
        if job is None or not job.running:
            return False
        job.cancel.set()
        return True

    def _run(self, job: DownloadJob) -> None:
        def seen(state: Progress) -> None:
            job.progress = state

        try:
            job.path = download_model(job.entry, self.models_dir, self.endpoint, progress=False,
                                      on_progress=seen, cancel=job.cancel)
        except RagError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a thread's failure must reach the page as a sentence
            job.error = f"The download of {job.entry.filename} failed ({type(exc).__name__}: {exc})."
        finally:
            job.finished.set()
