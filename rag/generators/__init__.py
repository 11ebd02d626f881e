"""Generators chosen by name, and a pool that keeps one loaded model per backend."""

from __future__ import annotations

import importlib
import threading
from dataclasses import asdict, fields
from pathlib import Path

from rag.errors import RagError
from rag.generators.base import GenerationParams, GenerationStats, Generator, Message, StopScanner

# name -> (module, class); modules import their library only when a generator is built.
_BACKENDS = {
    "llamacpp": ("rag.generators.llamacpp", "LlamaCppGenerator"),
    "gpt4all": ("rag.generators.gpt4all", "GPT4AllGenerator"),
    "openai": ("rag.generators.openai", "OpenAIGenerator"),
}
_LOAD_FIELDS = ("n_ctx", "n_threads", "n_batch", "n_gpu_layers")
_SAMPLING_FIELDS = tuple(f.name for f in fields(GenerationParams))
_SETTINGS_FIELDS = _LOAD_FIELDS + _SAMPLING_FIELDS

__all__ = ["Generator", "GenerationParams", "GenerationStats", "GeneratorPool", "Message", "SharedGenerator",
           "StopScanner", "available_backends", "get_generator"]


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
    cls = generator_class(name)
    if not cls.needs_model_file:
        return cls.from_settings(settings, **overrides)
    from rag.models import resolve_model

    path = Path(model_path) if model_path else resolve_model(
        settings.model, settings.models_dir, offered_only=getattr(settings, "models_offered_only", False))
    options = {f: getattr(settings, f) for f in _SETTINGS_FIELDS if hasattr(settings, f)}
    options.update(overrides)
    return cls(path, models_dir=settings.models_dir, **options)


def _sampling(settings) -> dict:
    return {f: getattr(settings, f) for f in _SAMPLING_FIELDS if getattr(settings, f, None) is not None}


class SharedGenerator:
    """One caller's handle on a model that several callers share: the caller's sampling settings and
    context size go with each call, and nothing is written onto the shared model."""

    def __init__(self, shared: Generator, defaults: GenerationParams, n_ctx: int | None = None):
        self.shared, self.defaults, self._n_ctx = shared, defaults, n_ctx
        self.last_stats = GenerationStats()

    def __getattr__(self, name):  # model_path, header, name, count_tokens, format_prompt, ...
        return getattr(self.shared, name)

    @property
    def context_size(self) -> int:
        return min(self.shared.context_size, self._n_ctx or self.shared.context_size)

    def params(self, **overrides) -> GenerationParams:
        values = asdict(self.defaults)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return self.shared.params(**values)

    def stream(self, messages: list[Message], **overrides):
        params = asdict(self.params(**overrides))
        if self.context_size < self.shared.context_size:  # the caller asked for less than is loaded
            prompt_tokens = self.count_tokens(self.format_prompt(messages))
            params["max_tokens"] = Generator.reply_budget(self, prompt_tokens, params["max_tokens"])
        return self._relay(self.shared.stream(messages, **params))

    def _relay(self, pieces):
        # A reply closed early (Stop, a loop cut, an answer ended) has its stats too: the shared model
        # records them when its stream closes, so they are read in `finally`.
        try:
            yield from pieces
        finally:
            self.last_stats = self.shared.stats_of(pieces)

    def generate(self, messages: list[Message], **overrides) -> str:
        return "".join(self.stream(messages, **overrides))

    def close(self) -> None:
        """The pool owns the shared model; a caller's handle has nothing of its own to free."""


class GeneratorPool:
    """Loaded models for a long-lived app, at most one per backend: asking for another model
    closes the one it replaces, and switching backend closes the other backend's model unless
    `keep_other_backends`. get() hands each caller a SharedGenerator carrying its own sampling
    settings, so one user's settings never change another's; a smaller context than the loaded one
    needs no reload. get() is serialised; each generator serialises its own calls."""

    def __init__(self, keep_other_backends: bool = False):
        self.keep_other_backends = keep_other_backends
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple, Generator]] = {}
        self.note = ""  # what the pool is doing now, for callers waiting on get()

    def get(self, settings, backend: str | None = None) -> SharedGenerator:
        """The generator for `backend` (default: settings.backend) loaded as the settings say."""
        backend = backend or settings.backend
        cls = generator_class(backend)  # unknown names fail before anything is closed
        identity, path = self._identity(cls, settings)
        key = identity + tuple(getattr(settings, f, None) for f in _LOAD_FIELDS if f != "n_ctx")
        n_ctx = getattr(settings, "n_ctx", None)
        with self._lock:
            held = self._loaded.get(backend)
            if held and held[0][:-1] == key and (n_ctx is None or held[0][-1] >= n_ctx):
                return SharedGenerator(held[1], held[1].params(**_sampling(settings)), n_ctx)
            for name in [n for n in self._loaded if n == backend or not self.keep_other_backends]:
                self._loaded.pop(name)[1].close()
            self.note = f"Loading the {backend} model with a {n_ctx}-token context…"
            try:
                generator = get_generator(backend, settings, model_path=path)
            finally:
                self.note = ""
            self._loaded[backend] = (key + (n_ctx,), generator)
            return SharedGenerator(generator, generator.params(**_sampling(settings)), n_ctx)

    @staticmethod
    def _identity(cls, settings) -> tuple[tuple, Path | None]:
        """What makes a loaded model a different one: its file, or its server, model name and key."""
        if not cls.needs_model_file:
            from rag.generators.openai import read_api_key

            return (cls.name, settings.base_url, settings.model, read_api_key(settings), settings.request_timeout), None
        from rag.models import resolve_model

        path = resolve_model(settings.model, settings.models_dir,
                             offered_only=getattr(settings, "models_offered_only", False))
        return (cls.name, str(path)), path

    def loaded(self) -> dict[str, Path | str]:
        """Backend name -> model file (or server model) currently held."""
        with self._lock:
            return {name: gen.model_path or f"{gen.model} at {gen.base_url}"
                    for name, (_, gen) in self._loaded.items()}

    def close(self) -> None:
        with self._lock:
            for _, generator in self._loaded.values():
                generator.close()
            self._loaded.clear()
