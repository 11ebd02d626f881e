"""What a summary's model calls cost: each call's stats, also for a reply cut short, and their sums."""

from __future__ import annotations

import time
from typing import Iterator

from rag.chains.base import ChainResult
from rag.generators.base import GenerationStats


class Calls:
    """The model calls of a summary made part by part: what they read and wrote, and how long they took."""

    def __init__(self):
        self.count = self.prompt_tokens = self.largest_prompt = self.completion_tokens = 0
        self.ttfts: list[float] = []
        self.writing_s = 0.0

    def add(self, stats) -> None:
        self.count += 1
        self.prompt_tokens += stats.prompt_tokens
        self.largest_prompt = max(self.largest_prompt, stats.prompt_tokens)
        self.completion_tokens += stats.completion_tokens
        if stats.completion_tokens:
            self.ttfts.append(stats.ttft_s)
            self.writing_s += max(0.0, stats.total_s - stats.ttft_s)

    def fill(self, result: ChainResult, started: float) -> None:
        """The result's token counts and timings, summed over the calls (none when every line is quoted)."""
        result.prompt_tokens, result.completion_tokens = self.largest_prompt, self.completion_tokens
        result.timings = {"total_s": time.perf_counter() - started, "model_calls": self.count}
        if self.count:
            reading = sum(self.ttfts)
            result.timings.update({
                "ttft_s": self.ttfts[0] if self.ttfts else None, "ttft_sum_s": reading,
                "prompt_tokens_sum": self.prompt_tokens,
                "prompt_tps": self.prompt_tokens / reading if reading else 0.0,
                "gen_tps": self.completion_tokens / self.writing_s if self.writing_s else 0.0})


class Metered:
    """A generator whose `last_stats` are always the last call's: the backend's where it recorded them, else
    measured here from what was streamed (a shared model's handle records none for a reply closed early, a
    loop cut or a Stop, and the last call's stats would claim 0 tokens, or another call's)."""

    def __init__(self, generator):
        self._inner = generator
        self.last_stats = GenerationStats()

    def __getattr__(self, name):
        if name == "_inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def stream(self, messages, **params) -> Iterator[str]:
        before, start, first, written = self._inner.last_stats, time.perf_counter(), None, []
        pieces = self._inner.stream(messages, **params)
        try:
            for piece in pieces:
                first = first or time.perf_counter()
                written.append(piece)
                yield piece
        finally:
            pieces.close()
            stats = self._inner.last_stats
            if stats is before or (written and not stats.completion_tokens):
                end, gen = time.perf_counter(), self._inner
                stats = GenerationStats(
                    prompt_tokens=gen.count_tokens(gen.format_prompt(messages)),
                    completion_tokens=gen.count_tokens("".join(written)) - gen.count_tokens("") if written else 0,
                    ttft_s=(first or end) - start, total_s=end - start, finish_reason="cancelled")
            self.last_stats = stats

    def generate(self, messages, **params) -> str:
        return "".join(self.stream(messages, **params))
