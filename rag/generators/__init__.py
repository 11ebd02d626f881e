"""Generators chosen by name, and a pool that keeps one loaded model per backend."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from rag.errors import RagError
from rag.generators.base import GenerationParams, GenerationStats, Generator, Message, StopScanner

# name -> (module, class); modules import their library only when a generator is built.
_BACKENDS = {
    "llamacpp": ("rag.generators.llamacpp", "LlamaCppGenerator"),
    "gpt4all": ("rag.generators.gpt4all", "GPT4AllGenerator"),
}
_LOAD_FIELDS = ("n_ctx", "n_threads", "n_batch", "n_gpu_layers")
_SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "seed", "stop")
_SETTINGS_FIELDS = _LOAD_FIELDS + _SAMPLING_FIELDS

__all__ = ["Generator", "GenerationParams", "GenerationStats", "GeneratorPool", "Message", "StopScanner",
           "available_backends", "get_generator"]


def available_backends() -> list[str]:
    """Names accepted by get_generator (whether or not their package is installed)."""
    return list(_BACKENDS)


def generator_class(name: str) -> type[Generator]:
    if name not in _BACKENDS:
        raise RagError(f"Unknown backend {name!r}; available: {', '.join(_BACKENDS)}.")
    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def get_generator(name: str, settings, model_path: str | Path | None = None, **overrides) -> Generator:
    """Load the settings' model (or `model_path`) in backend `name`, with the settings' parameters."""
    from rag.models import resolve_model

    cls = generator_class(name)
    path = Path(model_path) if model_path else resolve_model(settings.model, settings.models_dir)
    options = {f: getattr(settings, f) for f in _SETTINGS_FIELDS if hasattr(settings, f)}
    options.update(overrides)
    return cls(path, models_dir=settings.models_dir, **options)


class GeneratorPool:
    """Loaded models for a long-lived app, at most one per backend: asking for another model
    closes the one it replaces, and switching backend closes the other backend's model unless
    `keep_other_backends`. get() is serialised; each generator serialises its own calls."""

    def __init__(self, keep_other_backends: bool = False):
        self.keep_other_backends = keep_other_backends
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple, Generator]] = {}

    def get(self, settings, backend: str | None = None) -> Generator:
        """The generator for `backend` (default: settings.backend) loaded as the settings say."""
        from rag.models import resolve_model

        backend = backend or settings.backend
        generator_class(backend)  # unknown names fail before anything is closed
        path = resolve_model(settings.model, settings.models_dir)
        key = (str(path),) + tuple(getattr(settings, f, None) for f in _LOAD_FIELDS)
        with self._lock:
            held = self._loaded.get(backend)
            if held and held[0] == key:
                # Sampling settings need no reload; they become the generator's new defaults.
                held[1].defaults = held[1].params(**{f: getattr(settings, f, None) for f in _SAMPLING_FIELDS})
                return held[1]
            for name in [n for n in self._loaded if n == backend or not self.keep_other_backends]:
                self._loaded.pop(name)[1].close()
            generator = get_generator(backend, settings, model_path=path)
            self._loaded[backend] = (key, generator)
            return generator

    def loaded(self) -> dict[str, Path]:
        """Backend name -> model file currently held."""
        with self._lock:
            return {name: gen.model_path for name, (_, gen) in self._loaded.items()}

    def close(self) -> None:
        with self._lock:
            for _, generator in self._loaded.values():
                generator.close()
            self._loaded.clear()
