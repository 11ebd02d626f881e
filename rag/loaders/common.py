"""What the loaders share: titles, the limits on what a file may unpack to, and the loader signature."""

from __future__ import annotations

import io
import zipfile
from typing import Callable, Protocol

from rag.documents import Document
from rag.errors import RagError
from rag.settings import Settings

TITLE_MAX = 120
# A container may unpack to at most this much, and at most this many times its own size: an .xlsx or .docx
# of a few kilobytes that inflates to gigabytes is a zip bomb, refused before any library parses it.
MAX_UNPACKED = 512 * 1024 * 1024
MAX_RATIO = 200
MAX_MEMBERS = 20_000

PageProgress = Callable[[int, int], None]


class Loader(Protocol):
    def __call__(self, data: bytes, name: str, settings: Settings, progress: PageProgress) -> Document: ...


def no_progress(done: int, total: int) -> None:
    pass


def first_line_title(lines: list[str]) -> str:
    """The first of the opening lines that reads like a title: a few letters, not a paragraph, mostly letters
    (not a stamp such as "arXiv:2103.15348v2 [cs.CV] 21 Jun 2021", a date or a page number), and not a piece of
    a sentence running on to the next line ("GPO,")."""
    for line in lines[:5]:
        letters, marks = sum(c.isalpha() for c in line), sum(not c.isspace() for c in line)
        if letters >= 3 and len(line) <= TITLE_MAX and letters >= 0.5 * marks and not line.rstrip().endswith(","):
            return line
    return ""


def one_line(text: str) -> str:
    return " ".join(str(text or "").split())


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def is_ole(data: bytes) -> bool:
    """The OLE2 compound file of Office 97-2003 (and of an encrypted modern Office file)."""
    return data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def check_container(data: bytes, name: str, what: str) -> None:
    """Refuse a zip-based file that is not a zip, is an encrypted Office file, or would unpack too far."""
    if is_ole(data):
        raise RagError(f"{name} is encrypted or in the old binary format; save it unencrypted as {what} "
                       "and load it again.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise RagError(f"{name} could not be read as {what} (it is not a complete zip package); "
                       "check that the file is complete.") from None
    unpacked = sum(info.file_size for info in infos)
    if len(infos) > MAX_MEMBERS or unpacked > MAX_UNPACKED or unpacked > MAX_RATIO * max(len(data), 1):
        raise RagError(f"{name} would unpack to {unpacked / 1e6:.0f} MB in {len(infos)} parts from "
                       f"{len(data) / 1e6:.1f} MB (a zip bomb or a damaged file); it was not read.")


def join_blocks(blocks: list[str]) -> tuple[str, list[int]]:
    """Blocks joined by blank lines, with where each starts."""
    starts, offset = [], 0
    for block in blocks:
        starts.append(offset)
        offset += len(block) + 2
    return "\n\n".join(blocks), starts
