"""The wire of the openai backend: its address check, server-sent events, error bodies in the shapes servers
use, tokenize endpoints' counts, and a server's chat template in the shape a GGUF header gives it."""

from __future__ import annotations

import json
from typing import Iterator

from rag.errors import RagError

# Status codes meaning "this server has no such endpoint"; the next way of counting is tried.
NO_ENDPOINT = {400, 404, 405, 422, 501}


def check_base_url(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    if not url:
        raise RagError("The openai backend needs --base-url (RAG_BASE_URL), e.g. http://127.0.0.1:8080/v1 for "
                       "llama-server or http://127.0.0.1:11434/v1 for Ollama.")
    if not url.startswith(("http://", "https://")):
        raise RagError(f"--base-url {url!r} is not an http(s) address; give one such as http://127.0.0.1:8080/v1.")
    return url


def sse_events(lines: Iterator[str]) -> Iterator[dict | None]:
    """JSON objects from the `data:` lines of a server-sent event stream; None for [DONE]."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments (": ping"), event names and blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            yield None
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise RagError(f"The generation server sent a stream event that is not JSON ({data[:80]!r}).") from None
        if isinstance(event, dict):
            yield event


def error_text(body) -> str:
    """The message in an error body, in any of the shapes servers use."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", "")))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if isinstance(error, list) and error:
            return str(error[0].get("msg", error[0]) if isinstance(error[0], dict) else error[0])
        return str(error)
    return str(body)


class TemplateOnly:
    """A server's chat template in the shape format_prompt reads from a GGUF header."""

    def __init__(self, chat_template: str, special_tokens: dict):
        self.chat_template, self.special_tokens, self.adds_bos = chat_template, special_tokens, True


def json_or_none(response):
    if response is None or getattr(response, "status_code", 500) >= 400:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def token_count(response) -> int | None:
    """The count from a tokenize endpoint's answer; None when the endpoint is absent or refuses."""
    if response.status_code in NO_ENDPOINT:
        return None
    if response.status_code >= 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("count"), int):
        return body["count"]
    if isinstance(body, dict) and isinstance(body.get("tokens"), list):
        return len(body["tokens"])
    if isinstance(body, list):
        return len(body)
    return None


def reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text[:100] or type(exc).__name__).rstrip(".")
