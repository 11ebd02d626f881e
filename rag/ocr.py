"""Optical character recognition of page images with Tesseract, pages in parallel within the core budget.

Tesseract runs as its own program (Debian's `tesseract-ocr`, which `make install` brings), one process a
page, each held to one thread so that `settings.n_threads` pages are read at once and no more.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable

from rag.errors import RagError
from rag.interrupt import checkpoint

LANGUAGE = "eng"
PAGE_TIMEOUT_S = 300
MIN_SIDE = 16  # pixels: an image smaller than this on a side cannot hold a readable word
MAX_PIXELS = 120_000_000  # a page image larger than this is a decompression bomb, not a scan


def available() -> bool:
    """Whether the Tesseract program is installed."""
    return shutil.which("tesseract") is not None


def ocr_pages(count: int, render: Callable[[int], object], name: str, threads: int,
              progress: Callable[[int, int], None] | None = None,
              page_read: Callable[[int, str | None], None] | None = None) -> list[str | None]:
    """The text of pages 0..count-1, in order, `render(i)` giving page i's PIL image (called one at a time,
    so a renderer that is not thread-safe is safe); `page_read(i, text)` and then `progress(done, total)`
    after each page is read, in the calling thread.

    A page that cannot be rendered or read is None, so one bad page costs only itself; when every page
    fails, the first page's error is raised."""
    if not available():
        raise RagError(f"{name} needs OCR, and the tesseract program is not installed; "
                       "install Debian's tesseract-ocr (make install does) and load it again.")
    texts: list[str | None] = [""] * count
    errors: list[RagError] = []
    lock = threading.Lock()

    def read(i: int) -> str:
        with lock:  # one page image in memory per worker, rendered one at a time
            image = render(i)
        return _ocr_one(image, name)

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, min(threads, count or 1))) as pool:
        futures = {pool.submit(read, i): i for i in range(count)}
        try:
            for future in as_completed(futures):
                try:
                    texts[futures[future]] = future.result()
                except RagError as exc:
                    texts[futures[future]] = None
                    errors.append(exc)
                if page_read:
                    page_read(futures[future], texts[futures[future]])
                done += 1
                if progress:
                    progress(done, count)
                checkpoint()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    if errors and all(text is None for text in texts):
        raise errors[0]
    return texts


def _ocr_one(image, name: str) -> str:
    """One page: the image as PNG on Tesseract's standard input, its text on the standard output."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        done = subprocess.run(["tesseract", "stdin", "stdout", "-l", LANGUAGE], input=buffer.getvalue(),
                              capture_output=True, timeout=PAGE_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise RagError(f"OCR of a page of {name} took over {PAGE_TIMEOUT_S} s and was stopped.") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason given"]
        raise RagError(f"OCR of {name} failed ({reason[0]}); check that the image is complete.")
    return tidy(done.stdout.decode("utf-8", "replace"))


def tidy(text: str) -> str:
    """OCR output with form feeds gone and runs of blank lines made one."""
    lines = [line.rstrip() for line in text.replace("\f", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def check_image_size(width: int, height: int, name: str) -> None:
    """Refuse an image too small to hold a word or too large to be a page."""
    if min(width, height) < MIN_SIDE:
        raise RagError(f"{name} is only {width}×{height} pixels, too small to hold readable text.")
    if width * height > MAX_PIXELS:
        raise RagError(f"{name} is {width}×{height} pixels, too large to be a page; scale it down and "
                       "load it again.")
