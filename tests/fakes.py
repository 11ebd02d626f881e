"""The scripted fakes the tests share: a generator that records what it is asked, hits and a search.

A fake stands in only where a test is about the logic around a component; the tests of the components
themselves run the real ones.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from rag.generators.base import GenerationParams, GenerationStats, Generator


class ScriptedGenerator(Generator):
    """One word is one token; replies come from a script: one text for every call, a list (one reply per
    call, in turn) or a function of the prompt. Records every prompt and the parameters it was sent, and
    refuses a prompt that leaves no room for the reply."""

    name = "scripted"

    def __init__(self, script, n_ctx: int = 200, max_tokens: int = 20):
        self.script, self.n_ctx = script, n_ctx
        self.defaults = GenerationParams(max_tokens=max_tokens)
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()
        self.prompts: list[str] = []
        self.params_seen: list[dict] = []

    def format_prompt(self, messages) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    @property
    def context_size(self) -> int:
        return self.n_ctx

    def next_reply(self, prompt: str) -> str:
        """The script's next reply to `prompt`."""
        if isinstance(self.script, str):
            return self.script
        return self.script(prompt) if callable(self.script) else self.script.pop(0)

    def stream(self, messages, **params):
        prompt = self.format_prompt(messages)
        self.prompts.append(prompt)
        self.params_seen.append(params)
        assert self.count_tokens(prompt) + params.get("max_tokens", self.defaults.max_tokens) <= self.n_ctx, \
            "a chain sent a prompt that leaves no room for the reply"
        words = self.next_reply(prompt).split(" ")
        for i, w in enumerate(words):
            yield w if i == 0 else " " + w
        self.last_stats = GenerationStats(prompt_tokens=self.count_tokens(prompt), completion_tokens=len(words),
                                          ttft_s=0.1, prompt_tps=10.0, gen_tps=5.0, finish_reason="stop")

    def close(self) -> None:
        pass


@dataclass
class Hit:
    """A search hit as a chain reads one."""

    rank: int
    score: float
    source: str
    text: str
    title: str = ""
    page: int | None = None
    dense_score: float | None = None
    bm25_score: float | None = None
    start: int = 0
    end: int = 0
    chunk_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class RecordingSearch:
    """Fixed hits, the first k of them for any query; records each (query, k, mode) it is asked."""

    def __init__(self, hits):
        self.hits, self.queries = hits, []

    def search(self, query, k, mode):
        self.queries.append((query, k, mode))
        return self.hits[:k]
