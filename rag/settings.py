"""One typed settings object, built from defaults, environment variables and explicit overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import RagError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _default_index_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("local-rag", appauthor=False)) / "indexes"


def _default_models_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("local-rag", appauthor=False)) / "models"


@dataclass
class Settings:
    """Everything configurable, passed down explicitly; never a module-level singleton."""

    index_dir: Path = field(default_factory=_default_index_dir)
    collection: str = "default"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_backend: str = "onnx-int8"  # or "torch"; int8 is 2.3x faster, same nDCG (bench_embedding_backends.py)
    embedding_batch_size: int = 64
    chunk_size: int = 500
    chunk_overlap: int = 0
    k: int = 4
    mode: str = "hybrid"
    # Loading
    fetch_timeout: float = 15.0
    max_fetch_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    allow_private_urls: bool = True
    extractor: str = "auto"  # trafilatura, newspaper3k when it finds nothing (benchmarks/bench_extraction.py)
    # Generation
    backend: str = "llamacpp"
    model: str = ""
    models_dir: Path = field(default_factory=_default_models_dir)
    n_ctx: int = 2048
    n_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    n_batch: int = 512
    n_gpu_layers: int = 0
    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()
    # The openai backend: a server speaking the OpenAI Chat Completions API
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    api_key_file: Path | None = None
    request_timeout: float = 120.0  # seconds the server may take to send the first token
    # Set when the app is reachable by others: only offered models (catalogue, found on disk) may be chosen.
    models_offered_only: bool = False

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


_ENV = {
    "RAG_INDEX_DIR": ("index_dir", Path),
    "RAG_COLLECTION": ("collection", str),
    "RAG_EMBEDDING_MODEL": ("embedding_model", str),
    "RAG_EMBEDDING_BACKEND": ("embedding_backend", str),
    "RAG_BACKEND": ("backend", str),
    "RAG_MODEL": ("model", str),
    "RAG_MODELS_DIR": ("models_dir", Path),
    "RAG_N_CTX": ("n_ctx", int),
    "RAG_THREADS": ("n_threads", int),
    "RAG_GPU_LAYERS": ("n_gpu_layers", int),
    "RAG_BASE_URL": ("base_url", str),
    "RAG_OPENAI_API_KEY": ("api_key", str),
    "RAG_OPENAI_API_KEY_FILE": ("api_key_file", Path),
    "RAG_REQUEST_TIMEOUT": ("request_timeout", float),
}


def load_settings(environ: dict | None = None, **overrides) -> Settings:
    """Defaults, then `RAG_*` environment variables, then the overrides that are not None."""
    environ = os.environ if environ is None else environ
    values = {}
    for var, (name, kind) in _ENV.items():
        raw = environ.get(var)
        if raw:
            try:
                values[name] = kind(raw)
            except ValueError:
                raise RagError(f"{var}={raw!r} is not a valid {kind.__name__}; fix or unset it.") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RagError(f"Unknown setting(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}.")
    if "index_dir" in values:
        values["index_dir"] = Path(values["index_dir"]).expanduser()
    return Settings(**values)
