"""The generator interface: stream text for a list of chat messages. Adapters write `stream`."""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

from rag.errors import RagError
from rag.models import GGUFHeader, read_header

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

# Used when a model file carries no chat template (base models such as stories260K).
_PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass
class GenerationParams:
    """Sampling settings for one call; stream() takes overrides of the generator's defaults. Its defaults
    are the sampling defaults: Settings and the notebook's settings panel start from them."""

    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()
    top_k: int = 40
    repeat_penalty: float = 1.1
    grammar: str | None = None  # GBNF the reply must match; only where supports_grammar


@dataclass
class GenerationStats:
    """What the last call cost: token counts and timings measured around the library call.

    prompt_tps is prompt tokens over the time to first token; when llama.cpp reuses a cached
    prefix it is the effective rate, higher than the rate at which tokens are evaluated.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    prompt_tps: float = 0.0
    gen_tps: float = 0.0
    finish_reason: str = ""
    # Who counted prompt_tokens: "model" (the loaded model's tokenizer), "server" (a server's usage or its
    # tokenize endpoint), "model file" (the served model's GGUF here) or "estimate" (no tokenizer: an upper bound).
    prompt_counted_by: str = "model"

    def to_dict(self) -> dict:
        return asdict(self)


class StatsTimer:
    """Records first and last token times while a stream is consumed, then fills GenerationStats."""

    def __init__(self, prompt_tokens: int):
        self.stats = GenerationStats(prompt_tokens=prompt_tokens)
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None

    def token(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now

    def finish(self, completion_tokens: int, finish_reason: str) -> GenerationStats:
        s = self.stats
        end = time.perf_counter()
        s.completion_tokens, s.finish_reason, s.total_s = completion_tokens, finish_reason, end - self.start
        first = self.first if self.first is not None else end
        s.ttft_s = first - self.start
        s.prompt_tps = s.prompt_tokens / s.ttft_s if s.ttft_s > 0 else 0.0
        span = (self.last or first) - first
        s.gen_tps = (completion_tokens - 1) / span if completion_tokens > 1 and span > 0 else 0.0
        return s


class Generator(ABC):
    """A loaded chat model. Calls into it are serialised by a lock; close() frees it."""

    name: ClassVar[str] = ""
    # Whether the backend loads a GGUF file here (False for a model served elsewhere).
    needs_model_file: ClassVar[bool] = True
    # Whether stream() can hold the reply to a grammar (GenerationParams.grammar).
    supports_grammar: ClassVar[bool] = False

    def __init__(self, model_path: str | os.PathLike | None, *, n_ctx: int = 2048, n_threads: int | None = None,
                 n_batch: int = 512, n_gpu_layers: int = 0, models_dir: str | os.PathLike | None = None,
                 **defaults):
        if n_ctx < 16:
            raise RagError(f"Context size {n_ctx} is too small; use at least 2048.")
        self.model_path = Path(model_path) if model_path is not None else None
        self.header: GGUFHeader | None = read_header(self.model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_batch = n_batch
        self.n_gpu_layers = n_gpu_layers
        self.models_dir = Path(models_dir) if models_dir else (self.model_path.parent if self.model_path else None)
        self.defaults = GenerationParams(**{k: v for k, v in defaults.items() if v is not None})
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()
        self._template = None

    # ---- what adapters write
    @abstractmethod
    def stream(self, messages: list[Message], **params) -> Iterator[str]:
        """Yield the reply to `messages` piece by piece; record `last_stats` when done."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in a prompt (special tokens parsed, BOS counted where the model adds it)."""

    @property
    @abstractmethod
    def context_size(self) -> int:
        """The context window in tokens, prompt and reply together."""

    @abstractmethod
    def close(self) -> None:
        """Free the model; the generator cannot be used afterwards."""

    # ---- shared behaviour
    def stats_of(self, pieces) -> GenerationStats:
        """What the call that returned `pieces` cost, once consumed (calls are serialised here, so
        the last call's; a backend that runs calls at once keeps them per call)."""
        return self.last_stats

    def generate(self, messages: list[Message], **params) -> str:
        """The whole reply as one string."""
        return "".join(self.stream(messages, **params))

    def params(self, **overrides) -> GenerationParams:
        """The generator's defaults with the given non-None overrides applied."""
        values = asdict(self.defaults)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(asdict(self.defaults))
        if unknown:
            raise RagError(f"Unknown generation parameter(s) {', '.join(sorted(unknown))}; "
                           f"available: {', '.join(asdict(self.defaults))}.")
        values["stop"] = tuple(values["stop"] or ())
        if values["grammar"] and not self.supports_grammar:
            raise RagError(f"The {self.name} backend cannot hold a reply to a grammar; choose the free answer "
                           "style or the llamacpp backend.")
        return GenerationParams(**values)

    def format_prompt(self, messages: list[Message]) -> str:
        """Render messages with the model file's chat template (a plain one when it has none)."""
        _check_messages(messages)
        if self._template is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _template_error
            self._template = env.from_string((self.header and self.header.chat_template) or _PLAIN_TEMPLATE)
        special = self.header.special_tokens if self.header else {}
        text = self._template.render(messages=messages, add_generation_prompt=True, **special)
        bos = special.get("bos_token")
        if bos and self.header.adds_bos and text.startswith(bos):
            text = text[len(bos):]  # the tokenizer adds BOS itself; a second one hurts some models
        return text

    def reply_budget(self, prompt_tokens: int, max_tokens: int) -> int:
        """Tokens left for the reply: max_tokens, cut to what the context holds; RagError if none."""
        room = self.context_size - prompt_tokens
        if room < 1:
            raise RagError(f"The prompt is {prompt_tokens} tokens, more than the {self.context_size}-token "
                           "context holds; shorten the input or raise the context size.")
        return min(max_tokens, room)

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _template_error(message: str):
    raise RagError(f"The model's chat template refused the messages: {message}.")


def _check_messages(messages: Iterable[Message]) -> None:
    messages = list(messages)
    if not messages:
        raise RagError("No messages to answer; give at least one user message.")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise RagError(f"Bad chat message {m!r}; each needs a role (system, user or assistant) "
                           "and text content.")


class StopScanner:
    """Cuts streamed text at the first stop string, holding back text that may begin one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Text that is safe to emit now; sets `stopped` once a stop string appears."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        self.pending += piece
        hits = [self.pending.index(s) for s in self.stops if s in self.pending]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[:min(hits)], ""
            return out
        hold = max((i for s in self.stops for i in range(len(s) - 1, 0, -1)
                    if self.pending.endswith(s[:i])), default=0)
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out
