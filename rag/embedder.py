"""The embedding interface: an adapter writes `embed_batch`; batching by length and queries are shared here.
Adapters live in rag/embedding.py (sentence-transformers, int8 ONNX) and rag/embedding_server.py (a server)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors."""

    model_id: str
    dimension: int
    max_tokens: int | None = None  # word pieces the model reads; longer texts are cut

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
        if progress and texts:  # said before the first batch, the longest texts: it may take a while
            progress(0, len(texts))
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.embed_batch([texts[i] for i in idx])
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_batch([text])[0]

    def token_counts(self, texts: Sequence[str]) -> list[int] | None:
        """Word pieces per text, special tokens included, before any cut; None when unknown."""
        return None
