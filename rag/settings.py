"""One typed settings object, built from defaults, environment variables and explicit overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rag import limits
from rag.chunking import CHUNK_OVERLAP, CHUNK_SIZE
from rag.errors import RagError
from rag.generators.base import GenerationParams
from rag.quote import check_style

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
    # Where collections live when not under index_dir: milvus://host:port, milvus+https://host or
    # milvus+lite:///path.db (rag/store/milvus_client.py). Conversations and uploads stay under index_dir.
    store: str = ""
    milvus_token: str = field(default="", repr=False)
    milvus_token_file: Path | None = None
    collection: str = "default"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_backend: str = "onnx-int8"  # or "torch"; int8 is 2.3x faster, same nDCG (bench_embedding_backends.py)
    # A server's OpenAI-style /v1/embeddings (rag/embedding_server.py); set, the backend is "server".
    embed_url: str = ""
    embedding_batch_size: int = 64
    chunk_size: int = CHUNK_SIZE
    chunk_overlap: int = CHUNK_OVERLAP
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
    # Sampling: GenerationParams holds the defaults, for a generator built with or without settings.
    temperature: float = GenerationParams.temperature
    top_p: float = GenerationParams.top_p
    max_tokens: int = GenerationParams.max_tokens
    seed: int = GenerationParams.seed
    stop: tuple[str, ...] = ()
    # How QA answers are written: "quote" (a run of words from the best-matching source sentence, held
    # to it by a grammar), "free", or "auto" (quote with small models; rag/quote.py)
    answer_style: str = "auto"
    # The openai backend: a server speaking the OpenAI Chat Completions API
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    api_key_file: Path | None = None
    request_timeout: float = 120.0  # seconds the server may take to send the first token
    # Set when the app is reachable by others: only offered models (catalogue, found on disk) may be chosen.
    models_offered_only: bool = False

    def __post_init__(self) -> None:
        check_bounds(self)

    def replace(self, **changes) -> "Settings":
        """A copy with `changes`, checked like any other settings (RagError naming a value out of range)."""
        return dataclasses.replace(self, **changes)


def check_bounds(settings: Settings) -> None:
    """RagError for the first setting outside its range in `rag.limits`."""
    for name, bound in limits.SETTINGS.items():
        bound.check(getattr(settings, name), name)
    check_style(settings.answer_style)
    most = int(settings.chunk_size * limits.MAX_OVERLAP_FRACTION)
    if settings.chunk_overlap > most:
        raise RagError(f"Chunk overlap (chunk_overlap) {settings.chunk_overlap} is more than half the chunk size "
                       f"({settings.chunk_size}); use at most {most}.")


_ENV = {
    "RAG_INDEX_DIR": ("index_dir", Path),
    "RAG_STORE": ("store", str),
    "RAG_MILVUS_TOKEN": ("milvus_token", str),
    "RAG_MILVUS_TOKEN_FILE": ("milvus_token_file", Path),
    "RAG_COLLECTION": ("collection", str),
    "RAG_EMBEDDING_MODEL": ("embedding_model", str),
    "RAG_EMBEDDING_BACKEND": ("embedding_backend", str),
    "RAG_EMBED_URL": ("embed_url", str),
    "RAG_BACKEND": ("backend", str),
    "RAG_MODEL": ("model", str),
    "RAG_MODELS_DIR": ("models_dir", Path),
    "RAG_N_CTX": ("n_ctx", int),
    "RAG_MAX_TOKENS": ("max_tokens", int),
    "RAG_TEMPERATURE": ("temperature", float),
    "RAG_K": ("k", int),
    "RAG_MODE": ("mode", str),
    "RAG_THREADS": ("n_threads", int),
    "RAG_GPU_LAYERS": ("n_gpu_layers", int),
    "RAG_BASE_URL": ("base_url", str),
    "RAG_OPENAI_API_KEY": ("api_key", str),
    "RAG_OPENAI_API_KEY_FILE": ("api_key_file", Path),
    "RAG_REQUEST_TIMEOUT": ("request_timeout", float),
    "RAG_ANSWER_STYLE": ("answer_style", str),
}


_KIND_NAMES = {int: "a whole number", float: "a number"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def env_value(environ, var: str, kind: type, default=None):
    """`var` from `environ` converted to `kind`, `default` when unset, or one sentence naming the variable."""
    raw = environ.get(var)
    if raw is None or (raw.strip() == "" and kind is not str):
        return default
    try:
        return kind(raw.strip() if kind in (int, float) else raw)
    except ValueError:
        what = _KIND_NAMES.get(kind, f"a valid {kind.__name__}")
        raise RagError(f"{var}={raw!r} is not {what}; fix or unset it.") from None


def env_flag(environ, var: str) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off; anything else is refused, never read as no."""
    raw = environ.get(var, "").strip().lower()
    if raw in _TRUE | _FALSE:
        return raw in _TRUE
    raise RagError(f"{var}={environ[var]!r} is neither yes nor no; set it to 1 or 0, or unset it.")


def load_settings(environ: dict | None = None, **overrides) -> Settings:
    """Defaults, then `RAG_*` environment variables, then the overrides that are not None.

    A value outside its range in `rag.limits` is refused with one sentence naming its variable or setting.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for var, (name, kind) in _ENV.items():
        value = env_value(environ, var, kind)
        if value is None or value == "":
            continue
        if name in limits.SETTINGS:
            limits.SETTINGS[name].check(value, var)
        values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RagError(f"Unknown setting(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}.")
    store = values.get("store") or ""
    if store and "://" not in store:  # a directory: the local store there, as --index would say
        values["index_dir"], values["store"] = store, ""
    if "index_dir" in values:
        values["index_dir"] = Path(values["index_dir"]).expanduser()
    if values.get("embed_url"):  # a server embeds: the collection records its model as such
        values["embedding_backend"] = "server"
    return Settings(**values)


def read_secret(value: str, file, what: str) -> str:
    """A secret given directly (`value`), else the first line of `file`, else none. `what` names it in
    the error, as "an API key" or "a Milvus token"."""
    if value:
        return value.strip()
    if not file:
        return ""
    path = Path(file).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError):
        noun = what.split()[-1]
        raise RagError(f"Cannot read {what} from {path}; put the {noun} on its first line.") from None
