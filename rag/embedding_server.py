"""Embeddings from a server's OpenAI-style `/v1/embeddings`: text-embeddings-inference, vLLM, Ollama and
llama.cpp's server all speak it (`--embed-url`, `RAG_EMBED_URL`).

The model is named as the server names it (`--embedding-model`); a collection records it with the suffix
`#server`, so a collection built by another model, here or on a server, refuses this one in one sentence.
Batches are retried like generation's requests: a refused connection, a 429 or a 5xx is tried again after
short pauses, then said in one sentence.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from rag.embedder import Embedder
from rag.errors import RagError

SUFFIX = "#server"
BACKOFF = (0.5, 1.5, 4.0)  # pauses between tries of one batch: four tries in all
_RETRY_STATUS = {429, 500, 502, 503, 504}


def server_model_id(model: str) -> str:
    """What a collection embedded through a server records as its embedding model."""
    return model + SUFFIX


class ServerEmbedder(Embedder):
    """Vectors for texts from `url`'s `/embeddings`, normalised here (not every server does)."""

    def __init__(self, model: str, url: str, api_key: str = "", timeout: float = 60.0):
        import httpx

        from rag.generators.openai_http import check_base_url

        self._httpx = httpx
        self.url = check_base_url(url)
        self.name, self.model_id = model, server_model_id(model)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))
        self._one_at_a_time = False  # set for a server that does not pool (see _vectors)
        self._check_model()
        self.dimension = int(self._vectors(["dimension"]).shape[1])

    def _check_model(self) -> None:
        """The server must serve `name`, where it lists what it serves (a one-model server may not)."""
        try:
            response = self._http.get(self.url + "/models")
            listed = [m.get("id") for m in response.json().get("data", [])] if response.status_code == 200 else []
        except (self._httpx.HTTPError, ValueError, AttributeError):
            listed = []  # said by the first embedding request, with its reason
        if listed and self.name not in listed:
            raise RagError(f"The embedding server at {self.url} serves {', '.join(map(str, listed))}, not "
                           f"{self.name!r}; set --embedding-model (RAG_EMBEDDING_MODEL) to one of them.")

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._vectors(list(texts))
        if vectors.shape[1] != self.dimension:
            raise RagError(f"The embedding server at {self.url} returned {vectors.shape[1]}-d vectors after "
                           f"{self.dimension}-d ones; it changed models, so use a new collection.")
        return vectors

    def _vectors(self, texts: list[str]) -> np.ndarray:
        if self._one_at_a_time and len(texts) > 1:
            return np.concatenate([self._vectors([text]) for text in texts])
        data = self._post({"model": self.name, "input": texts})
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            if any(np.ndim(row["embedding"]) == 2 for row in rows):
                # Per-token vectors: a server that does not pool. llama-cpp-python's then mixes up every
                # text of a batch after the first, so this server gets one text per request from now on
                # (the dimension probe, one text, finds this out before the first batch is sent).
                self._one_at_a_time = True
                if len(texts) > 1:
                    return self._vectors(texts)
            vectors = np.stack([_pooled(row["embedding"]) for row in rows]) if rows else np.zeros((0, 0))
        except (KeyError, TypeError, ValueError):
            raise RagError(f"The embedding server at {self.url} answered without embeddings; check that it runs "
                           "an embedding model (llama.cpp's server needs --embedding).") from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise RagError(f"The embedding server at {self.url} returned {len(vectors)} vectors for {len(texts)} "
                           "texts; check its batch limits.")
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors

    def _post(self, body: dict) -> dict:
        httpx, pauses = self._httpx, list(BACKOFF)
        while True:
            try:
                response = self._http.post(self.url + "/embeddings", json=body)
                if response.status_code not in _RETRY_STATUS:
                    break
                reason = f"HTTP {response.status_code}"
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as exc:
                reason = type(exc).__name__
            if not pauses:
                raise RagError(f"The embedding server at {self.url} did not answer ({reason}) after "
                               f"{len(BACKOFF) + 1} tries; check that it is running, then try again.")
            time.sleep(pauses.pop(0))
        if response.status_code in (401, 403):
            raise RagError(f"The embedding server at {self.url} refused the API key (HTTP {response.status_code}); "
                           "check RAG_OPENAI_API_KEY.")
        if response.status_code >= 400:
            detail = " ".join(response.text.split())[:160]
            raise RagError(f"The embedding server at {self.url} answered HTTP {response.status_code} ({detail}).")
        try:
            return response.json()
        except ValueError:
            raise RagError(f"The embedding server at {self.url} answered something other than JSON; check the "
                           "address (it ends in /v1).") from None

    def close(self) -> None:
        self._http.close()


def _pooled(embedding) -> np.ndarray:
    """One vector per text. A server without pooling (llama.cpp's for a model that names none) returns one
    vector per token: their mean, as sentence-transformers pools."""
    vector = np.asarray(embedding, dtype=np.float32)
    return vector.mean(axis=0) if vector.ndim == 2 else vector
