"""GGUF models already on this machine: the models dir, GPT4All, LM Studio, the Hugging Face cache
and Ollama (whose blobs are named through its manifests as `model:tag`). Nothing is copied."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.errors import RagError
from rag.models.catalogue import CATALOGUE, default_model_path
from rag.models.compat import COMPAT_SUFFIX
from rag.models.gguf import read_header

_OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"


@dataclass
class FoundModel:
    """A GGUF file found on disk, with what a person needs to choose it."""

    name: str
    source: str  # models dir, default, gpt4all, lm studio, hugging face, ollama
    path: Path
    quantisation: str
    size_mb: int
    context_length: int | None
    ram_mb: int

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def memory_mb() -> tuple[int | None, int | None]:
    """(total, available) memory in MB, from /proc/meminfo or sysconf; None where unknown."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return int(info["MemTotal"].split()[0]) // 1024, int(info["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES") >> 20, page * os.sysconf("SC_AVPHYS_PAGES") >> 20
    except (ValueError, OSError, AttributeError):
        return None, None


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def gpt4all_dirs() -> list[Path]:
    home = _home()
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support" / "nomic.ai" / "GPT4All"]
    if sys.platform == "win32":
        return [Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "nomic.ai" / "GPT4All"]
    return [Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "nomic.ai" / "GPT4All"]


def lm_studio_dirs() -> list[Path]:
    home = _home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or _home() / ".cache") / "huggingface"
    return Path(hf_home) / "hub"


def ollama_dirs() -> list[Path]:
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"])]
    return [_home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def _plain(directory: Path, pattern: str, source: str) -> list[tuple[str, str, Path]]:
    found = []
    for path in sorted(directory.glob(pattern)) if directory.is_dir() else []:
        if path.is_file() and not path.name.endswith(COMPAT_SUFFIX):
            found.append((path.name.removesuffix(".gguf"), source, path))
    return found


def _models_dir(directory: Path) -> list[tuple[str, str, Path]]:
    """The models dir's files; one downloaded from the catalogue goes by its catalogue name."""
    names = {entry.filename: entry.name for entry in CATALOGUE.values()}
    return [(names.get(path.name, name), source, path) for name, source, path in _plain(directory, "*.gguf",
                                                                                         "models dir")]


def _lm_studio() -> list[tuple[str, str, Path]]:
    found = []
    for root in lm_studio_dirs():  # <root>/<publisher>/<repository>/<file>.gguf
        for name, source, path in _plain(root, "*/*/*.gguf", "lm studio"):
            found.append((f"{path.parent.parent.name}/{path.parent.name}/{name}", source, path))
    return found


def _hf_cache() -> list[tuple[str, str, Path]]:
    found = []
    root = hf_cache_dir()  # models--<org>--<repo>/snapshots/<revision>/<file>.gguf (links into blobs/)
    for name, source, path in _plain(root, "models--*/snapshots/*/**/*.gguf", "hugging face"):
        repo = path.relative_to(root).parts[0].removeprefix("models--").replace("--", "/")
        found.append((f"{repo}/{name}", source, path))
    return found


def _ollama() -> list[tuple[str, str, Path]]:
    found = []
    for root in ollama_dirs():
        manifests = root / "manifests"
        # manifests/<registry>/<namespace>/<model>/<tag>: a JSON list of layers, the model one a blob digest
        for manifest in sorted(manifests.glob("*/*/*/*")) if manifests.is_dir() else []:
            try:
                layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
                digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == _OLLAMA_MODEL_LAYER)
            except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
                continue
            blob = root / "blobs" / digest.replace(":", "-")
            registry, namespace, model, tag = manifest.relative_to(manifests).parts
            name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
            if registry != "registry.ollama.ai":
                name = f"{registry}/{name}"
            found.append((name, "ollama", blob))
    return found


def discover(models_dir: str | os.PathLike, n_ctx: int | None = None) -> list[FoundModel]:
    """Every readable GGUF model in the places above, each once (the first place that has it wins)."""
    candidates = _models_dir(Path(models_dir))
    if (default := default_model_path()) is not None:
        candidates.insert(0, (default.name.removesuffix(".gguf"), "default", default))
    for directory in gpt4all_dirs():
        candidates += _plain(directory, "*.gguf", "gpt4all")
    candidates += _lm_studio() + _hf_cache() + _ollama()
    models, seen = [], set()
    for name, source, path in candidates:
        try:
            real = path.resolve()
            if real in seen or not real.is_file():
                continue
            header = read_header(path)
        except (RagError, OSError):
            continue  # partial downloads and other tools' non-model files are not listed
        seen.add(real)
        models.append(FoundModel(name, source, path, header.quantisation, path.stat().st_size >> 20,
                                 header.context_length, header.ram_bytes(n_ctx) >> 20))
    return models


def find_discovered(name: str, models_dir: str | os.PathLike) -> Path | None:
    """The file of a discovered model called `name` (as `python -m rag models` lists it), or None."""
    for model in discover(models_dir):
        if model.name == name:
            return model.path
    return None


def list_local_models(models_dir: str | os.PathLike) -> list[Path]:
    """GGUF files in the models dir (copies made for GPT4All excluded), plus the installed default."""
    found = sorted(p for p in Path(models_dir).glob("*.gguf") if not p.name.endswith(COMPAT_SUFFIX))
    default = default_model_path()
    return ([default] if default else []) + found
