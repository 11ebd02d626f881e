"""What every chain shares: the result and the streamed answer, packing sources into a prompt, streaming.

A chain takes a search function (or any object with `.search(query, k=, mode=)`) and a Generator,
so its logic is testable with a scripted generator and a list of hits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from rag import limits
from rag import prompts as P
from rag.errors import RagError
from rag.interrupt import checkpoint
from rag.evidence import Embed
from rag.generators.base import Generator
from rag.repetition import LoopGuard

Search = Callable[..., list]

# The kinds of a Note: a follow-up's rewrite that was not used, an answer quoted from a source, any other.
REWRITE, QUOTED, NOTE = "rewrite", "quoted", "note"


class Note(str):
    """A sentence for the reader about what the chain did, with its kind, so that a reader picks notes
    by kind and not by their words. It is a str: notes print and save as their sentences."""

    kind: str

    def __new__(cls, text: str, kind: str = NOTE) -> "Note":
        note = super().__new__(cls, text)
        note.kind = kind
        return note


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
    prompt_counted_by: str = ""  # GenerationStats.prompt_counted_by: "estimate" is an upper bound, not a count
    completion_tokens: int = 0
    timings: dict = field(default_factory=dict)
    strategy: str | None = None
    evidence: list[dict] = field(default_factory=list)    # {n, start, end, text, score, sentence}, offsets in chunk n
    unsupported: list[str] = field(default_factory=list)  # answer sentences no source sentence supports
    citations_added: list[int] = field(default_factory=list)
    abstained: bool = False                               # the chain said the documents don't answer
    stopped: bool = False                                 # the reader stopped the stream; the answer is partial
    notes: list[str] = field(default_factory=list)        # sentences for the reader: cuts, fallbacks, additions
    outline: list[str] = field(default_factory=list)      # a summarised document's own headings
    parts: list[dict] = field(default_factory=list)       # a whole-document summary's lines: {heading, text,
    # kind "quote" (the part's words) | "model" (the model's), n (document), start, end (offsets in it), cut}
    style: str = "free"                                   # "quote": the answer is a run of a source sentence

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
        parts, done = [], False
        try:
            for piece in self._pieces:
                checkpoint()
                parts.append(piece)
                yield piece
            done = True
        finally:
            if not done:  # the reader stopped: end the model's work now and keep what was written
                close = getattr(self._pieces, "close", None)
                if close:
                    close()
                if self.prepared is not None and not self.prepared.stopped:
                    self.prepared.stopped = True
                    self.prepared.notes.append("Stopped: the answer so far is kept.")
                try:
                    self.result = self._finish("".join(parts))
                except RagError:
                    self.result = self.prepared
        if done:
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


def _messages(prompt: str, system: str = "") -> list[dict]:
    head = [{"role": "system", "content": system}] if system.strip() else []
    return head + [{"role": "user", "content": prompt}]


def _embedder_of(search) -> Embed | None:
    """The collection's embedder, when the search object has one (a plain function has none)."""
    embedder = getattr(search, "embedder", None)
    return embedder.embed if embedder is not None and hasattr(embedder, "embed") else None


class _Base:
    system = ""  # the system message; QA chains use the prompts' one
    stop: tuple[str, ...] = ()  # where the reply ends, besides the model's own end

    def __init__(self, search, generator: Generator, *, k: int = 4, mode: str = "hybrid",
                 prompts: P.Prompts | None = None, max_tokens: int | None = None):
        limits.check_k(k)
        if max_tokens is not None:
            limits.SETTINGS["max_tokens"].check(max_tokens, "max_tokens")
        self.source = search
        self.search, self.generator, self.k, self.mode = _search_fn(search), generator, k, mode
        self.prompts = (prompts or P.Prompts()).check()
        self.max_tokens = max_tokens or generator.defaults.max_tokens

    def reply_end(self, text: str) -> int | None:
        """Where the reply written so far ends, when it has gone past its end (None: it goes on)."""
        return None

    def messages(self, prompt: str) -> list[dict]:
        return _messages(prompt, self.system)

    def prompt_tokens(self, prompt: str) -> int:
        return self.generator.count_tokens(self.generator.format_prompt(self.messages(prompt)))

    def _budget(self, skeleton: str, what: str, reply: int | None = None) -> int:
        """Tokens left for inserted text once the prompt without it and the reply are counted."""
        used, reply = self.prompt_tokens(skeleton), reply or self.max_tokens
        room = self.generator.context_size - used - reply
        if room < 0:
            raise RagError(f"The {what} takes {used} tokens with its prompt, which with a {reply}-token "
                           f"reply exceeds the {self.generator.context_size}-token context; shorten it.")
        return room

    def _text_tokens(self, text: str) -> int:
        # count_tokens includes BOS where the model adds one; inserted text carries none.
        return self.generator.count_tokens(text) - self.generator.count_tokens("")

    def _stream(self, prompt: str, base: ChainResult, started: float,
                check: Callable[[ChainResult], None] | None = None, **params) -> Answer:
        """Stream the reply to `prompt`; a loop is cut where it began, and `check` looks at the result."""
        gen, t0 = self.generator, time.perf_counter()
        messages = self.messages(prompt)
        base.prompt = gen.format_prompt(messages)
        base.prompt_tokens = gen.count_tokens(base.prompt)
        base.prompt_counted_by = getattr(gen, "counted_by", "") or "model"
        guard, written = LoopGuard(), []

        def pieces() -> Iterator[str]:
            stream = gen.stream(messages, max_tokens=self.max_tokens, stop=self.stop or None, **params)
            try:
                for piece in stream:
                    written.append(piece)
                    if guard.looping("".join(written)):
                        base.notes.append("Stopped early: the model began repeating itself; the text before "
                                          "the repetition is kept.")
                        return
                    yield piece
                    if self.reply_end("".join(written)) is not None:
                        return
            finally:
                stream.close()

        def finish(text: str) -> ChainResult:
            stats = gen.last_stats
            text = guard.kept("".join(written)) if guard.cut is not None else text
            end = self.reply_end(text)
            text = text[:end] if end is not None else text
            base.answer, base.completion_tokens = text.strip(), stats.completion_tokens
            if stats.prompt_tokens:  # what the backend counted as it read the prompt (a server's usage)
                base.prompt_tokens, base.prompt_counted_by = stats.prompt_tokens, stats.prompt_counted_by
            base.timings = {"ttft_s": stats.ttft_s, "prompt_tps": stats.prompt_tps, "gen_tps": stats.gen_tps,
                            "generate_s": time.perf_counter() - t0, "total_s": time.perf_counter() - started}
            if not base.answer and not base.stopped:
                raise RagError("The model returned no text; ask again, rephrase the question, or choose "
                               "another model.")
            if check and not base.stopped:
                check(base)
            return base

        return Answer(pieces(), finish, prepared=base)

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

