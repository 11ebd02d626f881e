"""The openai backend: a model served elsewhere, reached through the OpenAI Chat Completions API.

It speaks to llama.cpp's llama-server, llama-cpp-python's server, vLLM, Ollama's /v1, LM Studio and
TGI. Every fault of the server becomes one RagError sentence; a stream cut midway keeps the text
that arrived and ends with a note saying it was cut.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from pathlib import Path
from typing import Callable, Iterator

from rag.errors import RagError
from rag.generators.base import GenerationStats, Generator, Message, StatsTimer, _check_messages
from rag.generators.openai_http import (TemplateOnly, check_base_url, error_text, json_or_none, reason,
                                        sse_events, token_count)
from rag.settings import read_secret

# ChatML: used only to count a prompt's tokens, since the server applies its own template; the
# context margin below covers the difference between the two.
_COUNT_TEMPLATE = "<|im_start|>{role}\n{content}<|im_end|>\n"
_COUNT_CACHE_MAX = 512

_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "stop", "top_k", "repeat_penalty")
_LOADING = ("n_ctx", "n_threads", "n_batch", "n_gpu_layers")


def read_api_key(settings) -> str:
    """The key from RAG_OPENAI_API_KEY, else the first line of the key file, else none."""
    return read_secret(settings.api_key, settings.api_key_file, "an API key")


def estimate_tokens(text: str) -> int:
    """A count no real tokenizer exceeds on ordinary text: three ASCII characters or one other
    character per token (English averages four or more characters per token)."""
    ascii_chars = sum(1 for c in text if c < "\x80")
    return math.ceil(ascii_chars / 3) + (len(text) - ascii_chars) + 1


class OpenAIGenerator(Generator):
    """A model on an OpenAI-compatible server. Calls are not serialised here: the server queues them."""

    name = "openai"
    needs_model_file = False

    def __init__(self, model_path=None, *, base_url: str, model: str = "", api_key: str = "",
                 timeout: float = 120.0, tokenizer: str | os.PathLike | None = None, **kwargs):
        super().__init__(None, **kwargs)
        try:
            import httpx
        except ImportError:
            raise RagError("The openai backend needs httpx; run `pip install httpx`.") from None
        self._httpx = httpx
        self.base_url = check_base_url(base_url)
        self.root = self.base_url.removesuffix("/v1")
        self.timeout = float(timeout)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)))
        self._tokenizer_path = tokenizer
        self._counter: Callable[[str], int] | None = None
        self.token_counter = ""  # how tokens are counted: server, local or estimate
        self.template_source: str | None = None  # how format_prompt renders (found on first use)
        self._parameters: int | None = None  # the served model's weights, where its file is here
        self._counts: dict[str, int] = {}
        self._vocab = None
        self._count_lock = threading.Lock()
        self._stats: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        try:
            self.served = self._served_models()
            self.model = self._choose_model(model.strip())
            self.server_context = self._server_context()
        except RagError:
            self._http.close()
            raise

    @classmethod
    def from_settings(cls, settings, **overrides) -> "OpenAIGenerator":
        """The generator the settings describe: base_url, model, key, timeout and sampling defaults."""
        options = {f: getattr(settings, f) for f in _SAMPLING + _LOADING if hasattr(settings, f)}
        options.update(overrides)
        return cls(base_url=settings.base_url, model=settings.model, api_key=read_api_key(settings),
                   timeout=settings.request_timeout, models_dir=settings.models_dir, **options)

    # ---- the server's models and context

    def _served_models(self) -> list[str] | None:
        """Model ids from GET /models; None when the server has no such endpoint."""
        response = self._request("GET", self.base_url + "/models")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._status_error(response)
        try:
            return [str(m["id"]) for m in response.json().get("data", [])]
        except (ValueError, TypeError, KeyError, AttributeError):
            raise RagError(f"{self.base_url}/models did not answer with a model list; check that --base-url "
                           "points at an OpenAI-compatible API (usually ending in /v1).") from None

    def _choose_model(self, wanted: str) -> str:
        if self.served is None:
            if not wanted:
                raise RagError(f"The server at {self.base_url} lists no models (no /models endpoint); name one "
                               "with --model, or check that --base-url ends in /v1.")
            return wanted
        if not wanted:
            if not self.served:
                raise RagError(f"The server at {self.base_url} serves no models; load one on the server first.")
            return self.served[0]
        if wanted not in self.served:
            raise RagError(f"The server at {self.base_url} has no model {wanted!r}; it serves: "
                           f"{', '.join(self.served) or 'nothing'}.")
        return wanted

    def _server_context(self) -> int | None:
        """The context the server runs with, where it says (llama-server's /props, vLLM's max_model_len)."""
        try:
            response = self._http.get(self.root + "/props")
            if response.status_code == 200:
                props = response.json()
                n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
                if isinstance(n_ctx, int) and n_ctx > 0:
                    return n_ctx
            response = self._http.get(self.base_url + "/models")
            for m in response.json().get("data", []) if response.status_code == 200 else []:
                if m.get("id") == self.model and isinstance(m.get("max_model_len"), int):
                    return m["max_model_len"]
        except (self._httpx.HTTPError, ValueError, AttributeError):
            pass
        return None

    @property
    def context_size(self) -> int:
        """The server's context (or --n-ctx) less a margin for the server's own chat template."""
        n_ctx = self.server_context or self.n_ctx
        return n_ctx - (16 + n_ctx // 50)

    # ---- counting tokens

    def format_prompt(self, messages: list[Message]) -> str:
        """The messages as the server templates them: with the chat template the server reports (llama.cpp's
        `/props`) or the served model's own GGUF here; ChatML only when neither is known (`template_source`)."""
        _check_messages(messages)
        if self.template_source is None:
            self._find_template()
        if self.header is None:
            return "".join(_COUNT_TEMPLATE.format(**m) for m in messages) + "<|im_start|>assistant\n"
        return super().format_prompt(messages)

    def _find_template(self) -> None:
        """Where the prompt inspector's rendering comes from: "server", "model file", or "ChatML (…)"."""
        from rag.models import read_header

        served = json_or_none(self._request("GET", self.root + "/props"))
        template = served.get("chat_template") if isinstance(served, dict) else None
        if isinstance(template, str) and template.strip():
            self.header = TemplateOnly(template, {k: served[k] for k in ("bos_token", "eos_token")
                                                   if isinstance(served.get(k), str)})
            self.template_source = "server"
            return
        path = self._local_tokenizer()
        if path is not None:
            self.header, self.template_source = read_header(path), "model file"
            if self.header.chat_template:
                return
        self.header, self.template_source = None, "ChatML (the server's own template is not known here)"

    def count_tokens(self, text: str) -> int:
        """The server's tokenizer where it has an endpoint, else the model file's, else an estimate."""
        with self._count_lock:
            if self._counter is None:
                self._counter = self._choose_counter()
            if text not in self._counts:
                if len(self._counts) >= _COUNT_CACHE_MAX:
                    self._counts.clear()
                self._counts[text] = self._counter(text)
            return self._counts[text]

    @property
    def served_parameters(self) -> int | None:
        """The served model's weights, from its GGUF header where the file is on this machine (the configured
        tokenizer, the server's model id as a path, or a model found under its name); None otherwise."""
        from rag.quote import model_parameters

        if self._parameters is None:
            path = self._local_tokenizer()
            self._parameters = model_parameters(path) if path is not None else 0
        return self._parameters or None

    @property
    def counted_by(self) -> str:
        """Who counts this backend's prompts before they are sent (GenerationStats.prompt_counted_by)."""
        return {"server": "server", "local": "model file", "estimate": "estimate"}.get(self.token_counter or "", "")

    def _choose_counter(self) -> Callable[[str], int]:
        for counter in (self._count_llama_server, self._count_llama_cpp_python):
            if counter("Hello") is not None:
                self.token_counter = "server"
                return counter
        path = self._local_tokenizer()
        if path is not None:
            import llama_cpp

            self._vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
            self.token_counter = "local"
            return lambda text: len(self._vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True))
        self.token_counter = "estimate"
        return estimate_tokens

    def _count_llama_server(self, text: str) -> int | None:
        """POST /tokenize, whose body differs by server: llama-server's `content`, vLLM's `prompt`
        (with the model) and TGI's `inputs`; each ignores the others' fields."""
        body = {"content": text, "add_special": True, "model": self.model, "prompt": text, "inputs": text}
        return token_count(self._request("POST", self.root + "/tokenize", json=body))

    def _count_llama_cpp_python(self, text: str) -> int | None:
        body = {"input": text, "model": self.model}
        return token_count(self._request("POST", self.root + "/extras/tokenize/count", json=body))

    def _local_tokenizer(self) -> Path | None:
        """A GGUF file of the served model on this machine: the configured one, the server's model id
        when it is a path (llama-cpp-python's default id), or a model found on disk under the same
        name (an Ollama `model:tag`); None when llama-cpp-python is absent."""
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return None
        from rag.models import find_discovered, read_header

        for candidate in (self._tokenizer_path, self.model):
            if candidate and str(candidate).endswith(".gguf") and Path(candidate).is_file():
                try:
                    read_header(candidate)
                    return Path(candidate)
                except RagError:
                    continue
        return find_discovered(self.model, self.models_dir) if self.models_dir else None

    # ---- generation

    def stream(self, messages: list[Message], **params) -> Iterator[str]:
        p = self.params(**params)
        n_prompt = self.count_tokens(self.format_prompt(messages))
        max_tokens = self.reply_budget(n_prompt, p.max_tokens)
        body = {"model": self.model, "messages": list(messages), "stream": True, "max_tokens": max_tokens,
                "temperature": p.temperature, "top_p": p.top_p, "seed": p.seed,
                # llama.cpp's names; vLLM, Ollama and LM Studio ignore what they do not know.
                "top_k": p.top_k, "repeat_penalty": p.repeat_penalty,
                "stream_options": {"include_usage": True}}
        if p.stop:
            body["stop"] = list(p.stop)
        timer = StatsTimer(n_prompt)
        pieces = self._stream(body, timer, max_tokens)
        self._stats[pieces] = timer.stats  # calls run at once here, so last_stats may be another's
        return pieces

    def stats_of(self, pieces) -> GenerationStats:
        """What the call that returned `pieces` cost, once they are consumed."""
        return self._stats.get(pieces, self.last_stats)

    def _stream(self, body: dict, timer: StatsTimer, max_tokens: int) -> Iterator[str]:
        httpx, started, finish, pieces, usage = self._httpx, False, "cancelled", 0, None
        cut: str | None = None
        try:
            with self._http.stream("POST", self.base_url + "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response)
                for event in sse_events(response.iter_lines()):
                    if event is None:  # [DONE]
                        break
                    if "error" in event:
                        raise RagError(self._error_sentence(500, error_text(event)))
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            timer.token()
                            started, pieces = True, pieces + 1
                            yield text
                        finish = choice.get("finish_reason") or finish
                else:
                    if not started:
                        raise RagError(f"The generation server at {self.base_url} closed the stream before "
                                       "answering; check its log, then try again.")
                    if finish not in ("stop", "length"):
                        cut = "the server closed the stream before it ended"
        except RagError as exc:
            if not started:
                raise
            cut = str(exc).rstrip(".")
        except httpx.HTTPError as exc:
            if not started:
                raise self._transport_error(exc) from None
            cut = f"the connection broke ({reason(exc)})"
        finally:
            usage = usage or {}
            timer.stats.prompt_tokens = usage.get("prompt_tokens") or timer.stats.prompt_tokens
            timer.stats.prompt_counted_by = "server" if usage.get("prompt_tokens") else self.counted_by
            completion = usage.get("completion_tokens", pieces)  # each streamed piece is a token where unsaid
            self.last_stats = timer.finish(min(completion, max_tokens), "cut" if cut else finish)
        if cut:
            yield (f"\n\n[This answer was cut off midway: {cut}. The text above is what arrived; "
                   "ask again for a complete answer.]")

    # ---- HTTP and its faults

    def _request(self, method: str, url: str, **kwargs):
        try:
            return self._http.request(method, url, **kwargs)
        except self._httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: Exception) -> RagError:
        httpx = self._httpx
        if isinstance(exc, httpx.ConnectTimeout):
            return RagError(f"The generation server at {self.base_url} did not accept a connection within "
                            f"{min(10.0, self.timeout):g} s; check that it is running and reachable.")
        if isinstance(exc, httpx.ConnectError):
            return RagError(f"Could not connect to the generation server at {self.base_url} (nothing answers "
                            "there); start the server or fix --base-url.")
        if isinstance(exc, httpx.TimeoutException):
            return RagError(f"The generation server at {self.base_url} sent nothing for {self.timeout:g} s; it may "
                            "be busy or still loading the model, so try again or raise RAG_REQUEST_TIMEOUT.")
        return RagError(f"The connection to the generation server at {self.base_url} broke ({reason(exc)}); "
                        "check that the server is still running, then try again.")

    def _status_error(self, response) -> RagError:
        try:
            detail = error_text(response.json())
        except ValueError:
            detail = response.text
        return RagError(self._error_sentence(response.status_code, detail, str(response.url)))

    def _error_sentence(self, status: int, detail: str, url: str = "") -> str:
        detail = " ".join(str(detail).split())[:160].rstrip(".") or "no detail"
        where = f"The generation server at {self.base_url}"
        if status in (401, 403):
            return (f"{where} refused the API key ({status}: {detail}); set RAG_OPENAI_API_KEY or "
                    "--api-key-file to a key it accepts.")
        if status == 404:
            if "model" in detail.lower():
                return f"{where} has no model {self.model!r} (404: {detail}); pick one the server serves."
            return (f"{where} has no endpoint {url or 'for this request'} (404); check that --base-url is the "
                    "API root, usually ending in /v1.")
        if status == 400 and any(w in detail.lower() for w in ("context", "too long", "maximum", "exceed")):
            return (f"{where} says the prompt does not fit its context (400: {detail}); shorten the input or set "
                    "--n-ctx to the server's context size.")
        if status >= 500:
            return f"{where} failed with an internal error ({status}: {detail}); check its log, then try again."
        return f"{where} refused the request ({status}: {detail})."

    def close(self) -> None:
        self._http.close()
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None
