"""Summaries of retrieved chunks or whole documents."""

from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import numpy as np

from rag import limits
from rag import prompts as P
from rag.chains.base import Answer, ChainResult, _Base, _embedder_of, _hit_dict, _sources
from rag.chains.metering import Calls, Metered
from rag.chains.outline import PASSAGE_CHARS, Part, by_headings, by_passages, heading_lines, headings
from rag.chunking import split_text
from rag.errors import RagError
from rag.evidence import Embed, overlap
from rag.interrupt import checkpoint
from rag.quote import check_style, quotes_with
from rag.repetition import LoopGuard
from rag.text import content_words, sentences, stem

STRATEGIES = ("parts", "central", "map_reduce")
QUOTED = "quoted from the document"
ECHO = 0.7  # a line whose content words are this much the instruction's repeats the instruction
WRITTEN = "written by the model"
KINDS = {"quote": QUOTED, "model": WRITTEN}  # what a summary line says of its text


class SummarizeChain(_Base):
    """The recipe's summary over retrieved chunks or whole documents.

    A whole document is summarised part by part ("parts", the default): its top-level sections (its own
    headings; runs of alike passages where it has none), one line each, labelled with the heading. With a
    small model (the answer style's choice, as for answers: `rag.quote.quotes_with`) a line is the part's
    most central sentence, quoted; otherwise the model writes it, one short bounded call per part, each
    inside the stream so Stop ends it. Each line says which it is.

    Retrieved chunks, and documents summarised with "central" or "map_reduce", are one text: whatever fits
    the context is stuffed into one prompt. A longer one is not read whole: its chunks most central to it
    (closest to the mean of its chunk vectors, each new one also unlike those already chosen) are chosen
    until the context is full and given in document order; one pass of the model reads them ("central").
    The recipe's map-reduce remains as `strategy="map_reduce"`, bounded to `max_pieces` short map
    summaries, run lazily inside the stream."""

    system = P.SUMMARY_SYSTEM
    map_max_tokens = 64
    part_max_tokens = 64
    max_pieces = 8
    max_parts = 12
    diversity = 0.3  # MMR: weight of being unlike the chunks already chosen

    def __init__(self, search, generator, *, style: str = "auto", **kwargs):
        # Measured here: a shared model's handle records no stats for a reply closed early (a loop cut).
        super().__init__(search, Metered(generator), **kwargs)
        self.style = check_style(style)

    @property
    def quotes(self) -> bool:
        """Whether whole-document summaries quote each part instead of asking the model."""
        return quotes_with(self.generator, self.style)

    def summarize(self, query: str | None = None, documents: Sequence | None = None, strategy: str = "parts",
                  progress: Callable[[str, int, int], None] | None = None) -> Answer:
        """Summarise `documents` (Documents, or (label, text) pairs) if given, else the chunks retrieved for
        `query`. `progress(stage, done, total)` hears each step of the longer strategies."""
        if strategy not in STRATEGIES:
            raise RagError(f"Unknown summary strategy {strategy!r}; available: {', '.join(STRATEGIES)}.")
        started = time.perf_counter()
        progress = progress or (lambda stage, done, total: None)
        if query:
            limits.check_text("query", query)
        docs = [_as_document(d) for d in documents or []]
        hits = [] if docs else self.search(query or "main themes", k=self.k, mode=self.mode)
        texts = [(label, text) for label, text, _ in docs] or \
                [(getattr(h, "title", "") or h.source, h.text) for h in hits]
        texts = [(label, text.strip()) for label, text in texts if text and text.strip()]
        if not texts:
            raise RagError("There is nothing to summarise; ingest documents or name a source that exists.")
        base = ChainResult(question=query or "", standalone_question=query or "",
                           sources=_sources(hits) if hits else
                           [{"n": i, "source": label} for i, (label, _) in enumerate(texts, 1)],
                           retrieved=[_hit_dict(h) for h in hits])
        if docs and strategy == "parts":
            return self._by_parts([d for d in docs if d[1].strip()], base, started, progress)
        joined = self._join(texts)
        budget = self._budget(P.render(self.prompts.summarize, docs=""), "summary prompt")
        if self._text_tokens(joined) <= budget:
            base.strategy = "stuff"
            return self._stream(P.render(self.prompts.summarize, docs=joined), base, started)
        base.strategy = "map_reduce" if strategy == "map_reduce" else "central"
        if base.strategy == "central":
            joined = self._central(texts, budget, base, progress)
            return self._stream(P.render(self.prompts.summarize, docs=joined), base, started)
        return self._map_reduce(texts, budget, base, started, progress)

    @staticmethod
    def _join(texts: list[tuple[str, str]]) -> str:
        return "\n\n".join(f"[{i}] {label}\n{text}" if label else text for i, (label, text) in enumerate(texts, 1))

    # ---- parts: one labelled line per main part of each document

    def _by_parts(self, docs: list[tuple[str, str, list]], base: ChainResult, started: float, progress) -> Answer:
        embed, quotes = _embedder_of(self.source), self.quotes
        plan = self._plan(docs, embed)
        base.strategy, base.style = "parts", "quote" if quotes else "free"
        base.outline = [heading for _, heading, _ in plan]
        base.notes.append("Each line is one main part of the document, labelled with its heading; " + (
            "its text is the part's most central sentence, quoted word for word (with a small model the answer "
            "style quotes: the model wrote none of it)." if quotes else
            "the model wrote it from that part alone."))
        if any(not part.from_heading for _, _, part in plan):
            base.notes.append("Without headings, the parts are runs of alike passages, labelled with their own words.")
        calls = Calls()

        def lines() -> Iterator[str]:
            for i, (n, heading, part) in enumerate(plan, 1):
                progress("part", i, len(plan))
                text = docs[n - 1][1]
                line = {"heading": heading, "text": "", "kind": "quote", "n": n, "start": part.start,
                        "end": part.end, "cut": False}
                if quotes:
                    self._quote(line, text, part, embed)
                    if line["text"]:
                        base.parts.append(line)
                        yield render_parts([line]) + "\n"
                    continue
                base.parts.append(line)
                yield f"**{heading}** — "
                line["kind"] = "model"
                yield from self._write(line, text[part.start:part.end], calls, base, embed)
                if line["kind"] == "quote":  # the model wrote nothing
                    self._quote(line, text, part, embed)
                    yield f"“{line['text']}”"
                yield f" ({KINDS[line['kind']]})\n"

        def finish(text: str) -> ChainResult:
            base.parts[:] = [p for p in base.parts if p["text"]]
            base.answer = render_parts(base.parts)
            calls.fill(base, started)
            if not base.answer and not base.stopped:
                raise RagError("Nothing in the documents could be summarised: no part holds a sentence to quote"
                               + ("." if quotes else " and the model wrote nothing; choose another model."))
            return base

        return Answer(lines(), finish, prepared=base)

    def _plan(self, docs: list[tuple[str, str, list]], embed: Embed | None) -> list[tuple[int, str, Part]]:
        """(document number, label, part) for every main part of every document, at most max_parts in all."""
        share = max(1, self.max_parts // len(docs))
        plan = []
        for n, (label, text, found) in enumerate(docs, 1):
            parts = by_headings(text, found or heading_lines(text), label, share) or by_passages(text, embed, share)
            for part in parts:
                heading = part.heading or label or "The document"
                plan.append((n, f"{label} › {heading}" if len(docs) > 1 and heading != label else heading, part))
        return plan

    def _quote(self, line: dict, text: str, part: Part, embed: Embed | None) -> None:
        """The part's most central sentence, as the line's text and offsets."""
        spans = _candidates(text, part)
        if not spans:
            return
        checkpoint()  # embedding a long part's sentences takes a moment: the work may stop here
        a, b = spans[_most_central([text[a:b] for a, b in spans], embed)]
        line.update(text=" ".join(text[a:b].split()), start=a, end=b, kind="quote")

    def _write(self, line: dict, text: str, calls: Calls, base: ChainResult, embed: Embed | None) -> Iterator[str]:
        """Stream the model's line for one part; a part the model says nothing about is quoted instead."""
        limit = min(self.part_max_tokens, self.max_tokens)
        skeleton = P.render(self.prompts.part, text="", heading=line["heading"])
        body = self._fit(text, self._budget(skeleton, "part prompt", limit), embed)
        messages = self.messages(P.render(self.prompts.part, text=body, heading=line["heading"]))
        guard, written = LoopGuard(), []
        stream = self.generator.stream(messages, max_tokens=limit, stop=("\n\n",))
        try:
            for piece in stream:
                written.append(piece)
                if guard.looping("".join(written)):
                    base.notes.append(f"The model began repeating itself on “{line['heading']}”; the text before "
                                      "the repetition is kept.")
                    break
                shown = piece.replace("\n", " ") if line["text"] else piece.lstrip()  # the line stays one line
                line["text"] = " ".join("".join(written).split())
                if shown:
                    yield shown
        finally:
            stream.close()
            stats = self.generator.last_stats
            calls.add(stats)
            line["text"] = " ".join(guard.kept("".join(written)).split())
        echoed = bool(line["text"]) and overlap(line["text"], skeleton) >= ECHO
        if echoed or not line["text"]:
            line.update(kind="quote", text="")
            base.notes.append(f"The model {'repeated its instruction' if echoed else 'wrote nothing'} for "
                              f"“{line['heading']}”; the part's most central sentence is quoted instead.")
        elif stats.finish_reason == "length" or stats.completion_tokens >= limit:
            line["cut"] = True
            base.notes.append(f"The line for “{line['heading']}” reached the {limit}-token limit of a part and "
                              "was cut there (marked …).")
            yield " …"

    def _fit(self, text: str, budget: int, embed: Embed | None) -> str:
        """`text`, or where it is over `budget` tokens its most central passages that fit, in document order."""
        if self._text_tokens(text) <= budget:
            return text
        spans = split_text(text, PASSAGE_CHARS, 0)
        chosen, used = [], 0
        for i in self._mmr([text[a:b] for a, b in spans], embed):
            cost = self._text_tokens(text[spans[i][0]:spans[i][1]] + "\n\n")
            if used + cost <= budget:
                chosen.append(i)
                used += cost
        # Passages counted one by one can come to more together; the least central go until they fit.
        while len(chosen) > 1 and self._text_tokens(_in_order(text, spans, chosen)) > budget:
            chosen.pop()
        return _in_order(text, spans, chosen) if chosen else self._split(text, budget)[0]

    # ---- central: the chunks that best represent each document, read once

    def _central(self, texts: list[tuple[str, str]], budget: int, base: ChainResult, progress) -> str:
        embed = _embedder_of(self.source)
        parts = []  # (document index, start, text)
        for d, (_, text) in enumerate(texts):
            parts += [(d, a, text[a:b]) for a, b in split_text(text, PASSAGE_CHARS, 0)]
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


def render_parts(parts: list[dict]) -> str:
    """The summary's lines as text: `**Heading** — “quoted sentence” (quoted from the document)` or
    `**Heading** — model text (written by the model)`."""
    lines = []
    for p in parts:
        body = f"“{p['text']}”" if p["kind"] == "quote" else p["text"] + (" …" if p.get("cut") else "")
        lines.append(f"**{p['heading']}** — {body} ({KINDS[p['kind']]})")
    return "\n".join(lines)


def _as_document(doc) -> tuple[str, str, list]:
    """(label, text, headings) of a Document or a (label, text) pair."""
    if hasattr(doc, "text"):
        return doc.title or doc.source, doc.text, list((doc.metadata or {}).get("headings") or [])
    label, text = doc
    return label, text, []


# A sentence that starts with one of these leans on the one before it, and reads wrongly alone.
_LEANS_BACK = frozenset("it its this these those they their them he she and but or so then thus also however "
                        "such here there that moreover furthermore".split())


def _candidates(text: str, part: Part) -> list[tuple[int, int]]:
    """The part's sentences (offsets in `text`) fit to quote: prose of 6 to 60 words that ends a sentence and
    reads alone (not a list item, not leaning on the sentence before); else any sentence of 3 words or more."""
    spans = [(part.start + a, part.start + b) for a, b in sentences(text[part.start:part.end])]
    prose = [(a, b) for a, b in spans if 6 <= len(text[a:b].split()) <= 60 and text[b - 1] in ".!?\"”')"
             and not text[a:b].startswith(("-", "[", "•"))]
    alone = [(a, b) for a, b in prose if text[a:b].split()[0].strip(",;:").lower() not in _LEANS_BACK]
    return alone or prose or [(a, b) for a, b in spans if len(text[a:b].split()) >= 3]


def _most_central(texts: list[str], embed: Embed | None) -> int:
    """Which of `texts` is closest to their mean (embedding cosine); without an embedder, the one whose
    words are most common among them."""
    if len(texts) == 1:
        return 0
    if embed is not None:
        vectors = embed(texts)
        return int(np.argmax(vectors @ vectors.mean(axis=0)))
    counts = [set(stem(w) for w in content_words(t)) for t in texts]
    common = {w: sum(w in c for c in counts) for c in counts for w in c}
    return max(range(len(texts)), key=lambda i: sum(common[w] for w in counts[i]) / (len(counts[i]) or 1))


def _in_order(text: str, spans: list[tuple[int, int]], chosen: list[int]) -> str:
    return "\n\n".join(text[spans[i][0]:spans[i][1]] for i in sorted(chosen))
