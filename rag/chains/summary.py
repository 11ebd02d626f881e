"""Summaries of retrieved chunks or whole documents."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np

from rag import limits
from rag import prompts as P
from rag.chains.base import Answer, ChainResult, _Base, _embedder_of, _hit_dict, _sources
from rag.chains.outline import OUTLINE_LEAD, headings
from rag.errors import RagError
from rag.evidence import Embed
from rag.interrupt import checkpoint

class SummarizeChain(_Base):
    """The recipe's summary over retrieved chunks or whole documents.

    Whatever fits the context is stuffed into one prompt. A longer document is not read whole: its
    chunks most central to it (closest to the mean of its chunk vectors, each new one also unlike those
    already chosen, so every part of the document is represented) are chosen until the context is full
    and given in document order, with the document's headings; one pass of the model reads them
    ("central"). The recipe's map-reduce remains as `strategy="map_reduce"`, bounded to `max_pieces`
    short map summaries, run lazily inside the stream so Stop ends it."""

    system = P.SUMMARY_SYSTEM
    map_max_tokens = 64
    max_pieces = 8
    diversity = 0.3  # MMR: weight of being unlike the chunks already chosen

    def summarize(self, query: str | None = None, documents: list[tuple[str, str]] | None = None,
                  strategy: str = "central", progress: Callable[[str, int, int], None] | None = None) -> Answer:
        """Summarise `documents` ((label, text) pairs) if given, else the chunks retrieved for `query`.
        `progress(stage, done, total)` hears each step of the longer strategies."""
        if strategy not in ("central", "map_reduce"):
            raise RagError(f"Unknown summary strategy {strategy!r}; available: central, map_reduce.")
        started = time.perf_counter()
        progress = progress or (lambda stage, done, total: None)
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
        if documents:  # whole documents: their own headings follow the summary, as an outline
            base.outline = [h for _, text in texts for h in headings(text)]
        if self._text_tokens(docs) <= budget:
            base.strategy = "stuff"
            return self._stream(P.render(self.prompts.summarize, docs=docs), base, started, check=_add_outline)
        base.strategy = strategy
        if strategy == "central":
            docs = self._central(texts, budget, base, progress)
            return self._stream(P.render(self.prompts.summarize, docs=docs), base, started, check=_add_outline)
        return self._map_reduce(texts, budget, base, started, progress)

    @staticmethod
    def _join(texts: list[tuple[str, str]]) -> str:
        return "\n\n".join(f"[{i}] {label}\n{text}" if label else text for i, (label, text) in enumerate(texts, 1))

    # ---- central: the chunks that best represent each document, read once

    def _central(self, texts: list[tuple[str, str]], budget: int, base: ChainResult, progress) -> str:
        from rag.chunking import split_text

        embed = _embedder_of(self.source)
        parts = []  # (document index, start, text)
        for d, (_, text) in enumerate(texts):
            parts += [(d, a, text[a:b]) for a, b in split_text(text, 500, 0)]
        progress("embed", 0, len(parts))
        order = self._mmr([t for _, _, t in parts], embed)
        progress("embed", len(parts), len(parts))
        heads = {d: headings(text) for d, (_, text) in enumerate(texts)}
        used = sum(self._text_tokens(self._doc_header(texts[d][0], heads[d])) for d in heads)
        chosen = []  # most central first
        for i in order:
            cost = self._text_tokens(parts[i][2] + "\n\n")
            if used + cost <= budget:
                chosen.append(i)
                used += cost

        def assemble(ids: list[int]) -> str:
            blocks = []
            for d, (label, _) in enumerate(texts):
                body = "\n\n".join(parts[i][2] for i in sorted(ids, key=lambda i: parts[i][1]) if parts[i][0] == d)
                if body:
                    blocks.append(self._doc_header(label, heads[d]) + body)
            return "\n\n".join(blocks)

        # Passages counted one by one can come to a few tokens less than the prompt they make together;
        # the least central go until the whole prompt leaves the full reply its room.
        docs = assemble(chosen)
        room = self.generator.context_size - self.max_tokens
        while len(chosen) > 1 and self.prompt_tokens(P.render(self.prompts.summarize, docs=docs)) > room:
            chosen.pop()
            docs = assemble(chosen)
        base.notes.append(f"Read the {len(chosen)} most central of {len(parts)} passages, in document order.")
        return docs

    @staticmethod
    def _doc_header(label: str, heads: list[str]) -> str:
        sections = f"Sections: {'; '.join(heads)}\n\n" if heads else ""
        return (f"Document: {label}\n" if label else "") + sections

    def _mmr(self, passages: list[str], embed: Embed | None) -> list[int]:
        """Passages from most to least central, each also unlike those before it (maximal marginal relevance)."""
        if embed is None or len(passages) < 2:
            return list(range(len(passages)))
        vectors = embed(passages)
        centre = vectors.mean(axis=0)
        centrality = vectors @ (centre / (float((centre ** 2).sum()) ** 0.5 or 1.0))
        order, closest = [], None
        remaining = list(range(len(passages)))
        while remaining:
            if closest is None:
                pick = max(remaining, key=lambda i: centrality[i])
            else:
                pick = max(remaining, key=lambda i: (1 - self.diversity) * centrality[i] - self.diversity * closest[i])
            order.append(pick)
            remaining.remove(pick)
            sims = vectors @ vectors[pick]
            closest = sims if closest is None else np.maximum(closest, sims)
        return order

    # ---- map-reduce: bounded, short map summaries, each step inside the stream

    def _map_reduce(self, texts, budget: int, base: ChainResult, started: float, progress) -> Answer:
        map_budget = self._budget(P.render(self.prompts.map, text=""), "map prompt", self._map_tokens)
        pieces = [p for _, text in texts for p in self._split(text, map_budget)]
        if len(pieces) > self.max_pieces:  # bounded: merge neighbours' text evenly into max_pieces groups
            step = len(pieces) / self.max_pieces
            pieces = [pieces[int(i * step)] for i in range(self.max_pieces)]
            base.notes.append(f"Read {self.max_pieces} evenly spread pieces of the document(s).")
        self.map_calls = 0
        summaries: list[str] = []

        def mapped() -> Iterator[str]:
            for i, piece in enumerate(pieces, 1):
                progress("map", i, len(pieces))
                summaries.append(self._map(piece))
            joined = "\n\n".join(summaries)
            if self._text_tokens(joined) > budget:
                joined = self._split(joined, budget)[0]
            progress("reduce", 1, 1)
            answer = self._stream(P.render(self.prompts.summarize, docs=joined), base, started)
            final.append(answer)
            yield from answer

        def finish(text: str) -> ChainResult:
            return final[0].result if final and final[0].result is not None else base

        final: list[Answer] = []
        return Answer(mapped(), finish, prepared=base)

    @property
    def _map_tokens(self) -> int:
        return min(self.map_max_tokens, self.max_tokens)

    def _map(self, text: str) -> str:
        checkpoint()  # a long document makes many map calls: each is a point where the work may stop
        self.map_calls += 1
        reply = self.generator.generate(self.messages(P.render(self.prompts.map, text=text)),
                                        max_tokens=self._map_tokens)
        return reply.strip() or text[:200]

    def _split(self, text: str, budget: int) -> list[str]:
        """Cut text at whitespace into pieces of at most `budget` tokens."""
        if self._text_tokens(text) <= budget or len(text) < 2:
            return [text]
        cut = text.rfind(" ", 0, len(text) // 2 + 1)
        cut = cut if cut > 0 else len(text) // 2
        return self._split(text[:cut].strip(), budget) + self._split(text[cut:].strip(), budget)


def _add_outline(result: ChainResult) -> None:
    """The document's headings after the model's summary, said to be the document's own."""
    if result.outline:
        result.answer = f"{result.answer}\n\n{OUTLINE_LEAD}{'; '.join(result.outline)}."
        result.notes.append("The list of sections is the document's own headings, not the model's words.")


