"""QA, chat and summarise chains: retrieve, pack what fits into the prompt, stream the reply.

A chain takes a search function (or any object with `.search(query, k=, mode=)`) and a Generator,
so its logic is testable with a scripted generator and a list of hits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from rag import limits
from rag import prompts as P
from rag.interrupt import checkpoint
from rag.errors import RagError
from rag.generators.base import Generator

Search = Callable[..., list]


@dataclass
class ChainResult:
    """Everything a caller may show or log about one answer."""

    answer: str = ""
    question: str = ""
    standalone_question: str = ""
    sources: list[dict] = field(default_factory=list)     # the chunks given to the model, numbered
    retrieved: list[dict] = field(default_factory=list)   # every hit retrieval returned, with scores
    prompt: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict = field(default_factory=dict)
    strategy: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.strategy is None:
            data.pop("strategy")
        return data


class Answer:
    """A reply being streamed: iterate for text pieces; `result` is complete once iteration ends.

    `prepared` holds what is known before the first token (question, sources, prompt and its token
    count), so a caller can show the retrieval step before the answer, in the recipe's order.
    """

    def __init__(self, pieces: Iterator[str], finish: Callable[[str], ChainResult],
                 prepared: ChainResult | None = None):
        self._pieces, self._finish = pieces, finish
        self.prepared = prepared
        self.result: ChainResult | None = None

    def __iter__(self) -> Iterator[str]:
        parts = []
        for piece in self._pieces:
            checkpoint()
            parts.append(piece)
            yield piece
        self.result = self._finish("".join(parts))

    def run(self) -> ChainResult:
        """Consume the stream and return the result."""
        for _ in self:
            pass
        return self.result


def _search_fn(search) -> Search:
    return search.search if hasattr(search, "search") else search


def _hit_dict(hit) -> dict:
    return hit.to_dict() if hasattr(hit, "to_dict") else dict(vars(hit))


def _messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


class _Base:
    def __init__(self, search, generator: Generator, *, k: int = 4, mode: str = "hybrid",
                 prompts: P.Prompts | None = None, max_tokens: int | None = None):
        limits.SETTINGS["k"].check(k, "k")
        if max_tokens is not None:
            limits.SETTINGS["max_tokens"].check(max_tokens, "max_tokens")
        self.search, self.generator, self.k, self.mode = _search_fn(search), generator, k, mode
        self.prompts = (prompts or P.Prompts()).check()
        self.max_tokens = max_tokens or generator.defaults.max_tokens

    def prompt_tokens(self, prompt: str) -> int:
        return self.generator.count_tokens(self.generator.format_prompt(_messages(prompt)))

    def _budget(self, skeleton: str, what: str) -> int:
        """Tokens left for inserted text once the prompt without it and the reply are counted."""
        used = self.prompt_tokens(skeleton)
        room = self.generator.context_size - used - self.max_tokens
        if room < 0:
            raise RagError(f"The {what} takes {used} tokens with its prompt, which with a {self.max_tokens}-token "
                           f"reply exceeds the {self.generator.context_size}-token context; shorten it.")
        return room

    def _text_tokens(self, text: str) -> int:
        # count_tokens includes BOS where the model adds one; inserted text carries none.
        return self.generator.count_tokens(text) - self.generator.count_tokens("")

    def _stream(self, prompt: str, base: ChainResult, started: float) -> Answer:
        gen, t0 = self.generator, time.perf_counter()
        base.prompt, base.prompt_tokens = prompt, self.prompt_tokens(prompt)

        def finish(text: str) -> ChainResult:
            stats = gen.last_stats
            base.answer, base.completion_tokens = text.strip(), stats.completion_tokens
            base.timings = {"ttft_s": stats.ttft_s, "prompt_tps": stats.prompt_tps, "gen_tps": stats.gen_tps,
                            "generate_s": time.perf_counter() - t0, "total_s": time.perf_counter() - started}
            return base

        return Answer(gen.stream(_messages(prompt), max_tokens=self.max_tokens), finish, prepared=base)

    def _pack(self, template: str, hits: list, **values) -> tuple[str, list]:
        """Render `template` with as many hits (in rank order) as fit the token budget; never more."""
        budget = self._budget(P.render(template, context="", **values), "question")
        chosen, blocks, used = [], [], 0
        for hit in hits:
            block = P.format_source(len(chosen) + 1, hit)
            cost = self._text_tokens(block + "\n\n")
            if used + cost <= budget:
                chosen.append(hit)
                blocks.append(block)
                used += cost
        prompt = P.render(template, context=P.join_sources(blocks), **values)
        # Tokens can merge across block joins; drop from the end until the real count fits.
        while chosen and self.prompt_tokens(prompt) + self.max_tokens > self.generator.context_size:
            chosen.pop()
            blocks.pop()
            prompt = P.render(template, context=P.join_sources(blocks), **values)
        return prompt, chosen


def _sources(chosen: list) -> list[dict]:
    return [{"n": i, **_hit_dict(hit)} for i, hit in enumerate(chosen, 1)]


class QAChain(_Base):
    """Retrieve for the question, stuff what fits into the QA prompt, stream the answer."""

    def ask(self, question: str) -> Answer:
        limits.check_text("question", question)
        return self._answer(question, question, time.perf_counter())

    def _answer(self, question: str, standalone: str, started: float) -> Answer:
        standalone = standalone.strip()
        if not standalone:
            raise RagError("The question is empty; type a question.")
        self._budget(P.render(self.prompts.qa, context="", question=standalone), "question")
        hits = self.search(standalone, k=self.k, mode=self.mode)
        prompt, chosen = self._pack(self.prompts.qa, hits, question=standalone)
        base = ChainResult(question=question, standalone_question=standalone, sources=_sources(chosen),
                           retrieved=[_hit_dict(h) for h in hits])
        return self._stream(prompt, base, started)


class ChatChain(QAChain):
    """QA over a conversation: a follow-up is first rewritten, with the history, into a standalone
    question; that question drives retrieval and the answer."""

    condense_max_tokens = 96

    def ask(self, question: str, history: list[tuple[str, str]] | None = None) -> Answer:
        started = time.perf_counter()
        question = limits.check_text("question", question.strip())
        if not question:
            raise RagError("The question is empty; type a question.")
        standalone = self.condense(question, history or [])
        return self._answer(question, standalone, started)

    def condense(self, question: str, history: list[tuple[str, str]]) -> str:
        """The follow-up as a standalone question (the question itself when there is no history)."""
        if not history:
            return question
        turns = list(history)
        prompt = P.render(self.prompts.condense, chat_history=P.format_history(turns), question=question)
        # Oldest turns go first when the history is too long for the context.
        while turns and self.prompt_tokens(prompt) + self.condense_max_tokens > self.generator.context_size:
            turns.pop(0)
            prompt = P.render(self.prompts.condense, chat_history=P.format_history(turns), question=question)
        checkpoint()
        text = self.generator.generate(_messages(prompt), max_tokens=self.condense_max_tokens)
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[0] if lines else question


class SummarizeChain(_Base):
    """The recipe's summary over retrieved chunks or whole documents; map-reduce when they do not fit."""

    def summarize(self, query: str | None = None, documents: list[tuple[str, str]] | None = None) -> Answer:
        """Summarise `documents` ((label, text) pairs) if given, else the chunks retrieved for `query`."""
        started = time.perf_counter()
        if query:
            limits.check_text("query", query)
        hits = [] if documents else self.search(query or "main themes", k=self.k, mode=self.mode)
        texts = [(label, text) for label, text in (documents or [])] or \
                [(getattr(h, "title", "") or h.source, h.text) for h in hits]
        texts = [(label, text.strip()) for label, text in texts if text and text.strip()]
        if not texts:
            raise RagError("There is nothing to summarise; ingest documents or name a source that exists.")
        base = ChainResult(question=query or "", standalone_question=query or "",
                           sources=_sources(hits) if hits else
                           [{"n": i, "source": label} for i, (label, _) in enumerate(texts, 1)],
                           retrieved=[_hit_dict(h) for h in hits])
        docs = self._join(texts)
        budget = self._budget(P.render(self.prompts.summarize, docs=""), "summary prompt")
        if self._text_tokens(docs) <= budget:
            base.strategy = "stuff"
        else:
            base.strategy = "map_reduce"
            docs = self._map_reduce(texts, budget)
        return self._stream(P.render(self.prompts.summarize, docs=docs), base, started)

    @staticmethod
    def _join(texts: list[tuple[str, str]]) -> str:
        return "\n\n".join(f"[{i}] {label}\n{text}" if label else text for i, (label, text) in enumerate(texts, 1))

    def _map_reduce(self, texts: list[tuple[str, str]], budget: int) -> str:
        """Summarise pieces that fit, then summaries of summaries, until they fit `budget`."""
        map_budget = self._budget(P.render(self.prompts.map, text=""), "map prompt")
        pieces = [p for _, text in texts for p in self._split(text, map_budget)]
        self.map_calls = 0
        while True:
            summaries = [self._map(p) for p in pieces]
            joined = "\n\n".join(summaries)
            if self._text_tokens(joined) <= budget:
                return joined
            grouped = self._group(summaries, map_budget)
            if len(grouped) >= len(pieces):
                # No progress (the context is too small for two summaries): keep what fits.
                return self._split(joined, budget)[0]
            pieces = grouped

    def _map(self, text: str) -> str:
        checkpoint()  # a long document makes many map calls: each is a point where the work may stop
        self.map_calls += 1
        reply = self.generator.generate(_messages(P.render(self.prompts.map, text=text)), max_tokens=self.max_tokens)
        return reply.strip() or text[:200]

    def _group(self, summaries: list[str], budget: int) -> list[str]:
        groups, current = [], ""
        for s in summaries:
            candidate = f"{current}\n\n{s}" if current else s
            if current and self._text_tokens(candidate) > budget:
                groups.append(current)
                candidate = s
            current = candidate
        return groups + [current]

    def _split(self, text: str, budget: int) -> list[str]:
        """Cut text at whitespace into pieces of at most `budget` tokens."""
        if self._text_tokens(text) <= budget or len(text) < 2:
            return [text]
        cut = text.rfind(" ", 0, len(text) // 2 + 1)
        cut = cut if cut > 0 else len(text) // 2
        return self._split(text[:cut].strip(), budget) + self._split(text[cut:].strip(), budget)
