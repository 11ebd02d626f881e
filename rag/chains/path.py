"""The one answer path: the QA, chat and summary chains for a collection, built the same way for every caller.

The notebook, the CLI, Compare and the benchmarks all build their chains here, so what the benchmarks
measure is what a person reads: the collection's embedder (the sentence threshold, evidence and central
passages use it), the ticked documents filtered inside the store, the answer style and the prompts.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from rag.chains.chat import ChatChain
from rag.chains.qa import QAChain
from rag.chains.summary import SummarizeChain
from rag.collection import NO_SOURCES
from rag.errors import RagError
from rag.generators.base import Generator
from rag.prompts import Prompts
from rag.quote import is_small_model

class Scope:
    """A collection, limited to some of its documents (`sources`; None: all of them): what a chain searches.

    The filter runs inside the store, so a ticked document is searched however far down the whole
    collection's ranking its chunks are.
    """

    def __init__(self, collection, sources: Sequence[str] | None = None):
        if sources is not None and not list(sources):
            raise RagError(NO_SOURCES)
        self.collection = collection
        self.sources = None if sources is None else list(dict.fromkeys(sources))

    @property
    def embedder(self):
        return getattr(self.collection, "embedder", None)

    def search(self, query: str, k: int = 4, mode: str = "hybrid") -> list:
        if self.sources is None:
            return self.collection.search(query, k=k, mode=mode)
        return self.collection.search(query, k=k, mode=mode, sources=self.sources)

    def documents(self) -> list:
        documents = self.collection.documents()
        return documents if self.sources is None else [d for d in documents if d.source in self.sources]


class AnswerPath:
    """Builds the chains of one collection with one generator and one set of settings.

    `settings` is anything with k, mode, max_tokens and answer_style (the app's settings, a session's chat
    settings); `template` replaces the QA prompt where the reader wrote one, and the settings' `system` the
    system prompt. A small model gets the short-answer prompts and its reply ends at a blank line outside a
    list; a capable one is asked for a complete answer, cited claim by claim, and ends where it stops.
    """

    def __init__(self, collection, generator: Generator, settings, *, sources: Sequence[str] | None = None,
                 template: str = ""):
        self.scope = Scope(collection, sources)
        self.generator = generator
        self.k, self.mode = settings.k, settings.mode
        self.max_tokens = settings.max_tokens
        self.style = getattr(settings, "answer_style", "auto") or "auto"
        self.concise = is_small_model(generator)
        template = (template or getattr(settings, "template", "") or "").strip()
        system = (getattr(settings, "system", "") or "").strip()
        edits = {key: value for key, value in (("qa", template), ("system", system)) if value}
        self.prompts = dataclasses.replace(Prompts.for_model(self.concise), **edits)

    def _common(self) -> dict:
        return {"k": self.k, "mode": self.mode, "max_tokens": self.max_tokens, "prompts": self.prompts}

    def qa(self) -> QAChain:
        return QAChain(self.scope, self.generator, style=self.style, concise=self.concise, **self._common())

    def chat(self) -> ChatChain:
        return ChatChain(self.scope, self.generator, style=self.style, concise=self.concise, **self._common())

    def summary(self) -> SummarizeChain:
        return SummarizeChain(self.scope, self.generator, style=self.style, **self._common())
