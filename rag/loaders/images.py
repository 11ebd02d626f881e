"""Images (png, jpg, tiff with every page, bmp, gif, webp) read by OCR, each frame a page."""

from __future__ import annotations

import io

from rag import ocr
from rag.documents import Document
from rag.errors import RagError
from rag.loaders.common import first_line_title, join_blocks, no_progress
from rag.settings import Settings

MAX_FRAMES = 1000


def image_file(data: bytes, name: str, settings: Settings, progress=no_progress) -> Document:
    """The text of every frame; `metadata["ocr_pages"]` says it was read by OCR."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        frames = getattr(image, "n_frames", 1)
        ocr.check_image_size(*image.size, name)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise RagError(f"{name} could not be read as an image ({type(exc).__name__}); "
                       "check that the file is complete.") from None
    if frames > MAX_FRAMES:
        raise RagError(f"{name} has {frames} pages, more than the {MAX_FRAMES} that are read; split it.")

    def render(i: int):
        try:
            image.seek(i)
            ocr.check_image_size(*image.size, f"Page {i + 1} of {name}")
            return _flatten(image)
        except (OSError, ValueError, EOFError) as exc:
            raise RagError(f"Page {i + 1} of {name} could not be decoded ({type(exc).__name__}).") from None

    texts = ocr.ocr_pages(frames, render, name, settings.n_threads, progress)
    numbered = [(n, text) for n, text in enumerate(texts, start=1) if text]
    if not numbered:
        raise RagError(f"{name} holds no text that OCR could read.")
    text, starts = join_blocks([t for _, t in numbered])
    pages = [(n, start) for (n, _), start in zip(numbered, starts)]
    metadata = {"ocr_pages": [n for n, _ in numbered], "page_count": frames, "ocr_engine": "tesseract"}
    if unreadable := [n for n, text in enumerate(texts, start=1) if text is None]:
        metadata["unreadable_pages"] = unreadable
    lines = [line.strip() for line in numbered[0][1].splitlines() if line.strip()]
    return Document(source=name, text=text, title=first_line_title(lines), metadata=metadata,
                    pages=pages if frames > 1 else [])


def _flatten(image):
    """A frame in RGB or grey, transparency laid on white (Tesseract reads a transparent page as black)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
