"""Downloading a catalogue model from the Hugging Face Hub: progress bar, resume, checksum.

The hub reports each large file's SHA-256 (its LFS object id) and size before the transfer; the
file grows in `<name>.part`, a later run resumes it with an HTTP Range request, and only a file
whose hash matches is renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from rag.errors import RagError
from rag.models.catalogue import CatalogueEntry
from rag.models.gguf import read_header

DEFAULT_ENDPOINT = "https://huggingface.co"
_CHUNK = 1 << 20


def download_model(entry: CatalogueEntry, models_dir: str | os.PathLike, endpoint: str | None = None,
                   progress: bool = True) -> Path:
    """Download a catalogue model into `models_dir`; RagError with one sentence when that fails."""
    try:
        import httpx
    except ImportError:
        raise RagError("Downloading models needs httpx; run `pip install httpx`.") from None
    models_dir = Path(models_dir)
    dest = models_dir / entry.filename
    url = f"{(endpoint or os.environ.get('HF_ENDPOINT') or DEFAULT_ENDPOINT).rstrip('/')}/{entry.repo}" \
          f"/resolve/main/{entry.filename}"
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            sha256, size = _expected(client, url)
            part = dest.with_name(dest.name + ".part")
            _fetch(client, url, part, size, entry.filename, progress)
            if _sha256(part) != sha256:
                part.unlink()
                raise RagError(f"{entry.filename} arrived damaged (its SHA-256 does not match the hub's); "
                               "run the download again.")
            os.replace(part, dest)
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise RagError(f"Could not download {entry.filename} from {entry.repo} ({reason}); check the "
                       f"network or put the file in {models_dir} yourself.") from None
    except OSError as exc:
        raise RagError(f"Could not write {dest} ({exc.strerror}); free some space or set another models dir.") from None
    read_header(dest)
    return dest


def _expected(client, url: str) -> tuple[str, int]:
    """The file's SHA-256 and size, from the hub's headers for a large (LFS) file."""
    head = client.head(url, follow_redirects=False)
    if head.status_code >= 400:
        head.raise_for_status()
    sha256 = (head.headers.get("x-linked-etag") or head.headers.get("etag") or "").strip('"').removeprefix("W/")
    size = head.headers.get("x-linked-size") or head.headers.get("content-length") or "0"
    if len(sha256) != 64:
        raise RagError(f"The hub gave no SHA-256 for {url.rsplit('/', 1)[-1]}, so it cannot be checked; "
                       "download it yourself into the models dir.")
    return sha256.lower(), int(size)


def _fetch(client, url: str, part: Path, size: int, label: str, progress: bool) -> None:
    """Append the missing bytes of `url` to `part`, resuming where an earlier run stopped."""
    have = part.stat().st_size if part.exists() else 0
    if size and have >= size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        if have and response.status_code != 206:
            have = 0  # the server ignored the range: start again
        bar = _bar(size, have, label, progress)
        with part.open("ab" if have else "wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        bar.close()


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
