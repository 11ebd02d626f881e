"""QA, chat and summarise chains: retrieve, pack what fits into the prompt, stream the reply.

A chain takes a search function (or any object with `.search(query, k=, mode=)`) and a Generator,
so its logic is testable with a scripted generator and a list of hits.
"""

from __future__ import annotations

import re
import time

import numpy as np
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from rag import limits
from rag import prompts as P
from rag.interrupt import checkpoint
from rag.errors import RagError
from rag.evidence import Embed, Evidence, cited, find_support, key_sentence
from rag.generators.base import Generator
from rag.quote import quotes_by_default, span_grammar
from rag.repetition import LoopGuard
from rag.text import content_words, stem

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
    evidence: list[dict] = field(default_factory=list)    # {n, start, end, text, score, sentence}, offsets in chunk n
    unsupported: list[str] = field(default_factory=list)  # answer sentences no source sentence supports
    citations_added: list[int] = field(default_factory=list)
    abstained: bool = False                               # the chain said the documents don't answer
    stopped: bool = False                                 # the reader stopped the stream; the answer is partial
    notes: list[str] = field(default_factory=list)        # sentences for the reader: cuts, fallbacks, additions
    outline: list[str] = field(default_factory=list)      # a summarised document's own headings
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
        limits.SETTINGS["k"].check(k, "k")
        if max_tokens is not None:
            limits.SETTINGS["max_tokens"].check(max_tokens, "max_tokens")
        self.source = search
        self.search, self.generator, self.k, self.mode = _search_fn(search), generator, k, mode
        self.prompts = (prompts or P.Prompts()).check()
        self.max_tokens = max_tokens or generator.defaults.max_tokens

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
            finally:
                stream.close()

        def finish(text: str) -> ChainResult:
            stats = gen.last_stats
            text = guard.kept("".join(written)) if guard.cut is not None else text
            base.answer, base.completion_tokens = text.strip(), stats.completion_tokens
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


# Abstain without asking the model when the best retrieved chunk is less similar than this to the
# question (cosine, MiniLM), or when the best source sentence scores less than KEY_RELEVANCE against it
# (evidence.key_sentence). Calibrated together on the shared SQuAD subset, retrieval only
# (benchmarks/bench_answers.py --calibrate): 75% abstention on unanswerable questions, 6.2% on answerable.
# The sentence does most of the work: a chunk threshold of 0.40 gives 77% / 6.5%, but it refused a
# short page's plain answer (chunk 0.394, sentence 0.50).
RELEVANCE = 0.36
KEY_RELEVANCE = 0.42
# A question may take at most this share of the context; a longer one is cut, and the reader told.
QUESTION_SHARE = 0.25


class QAChain(_Base):
    """Retrieve for the question, stuff what fits into the QA prompt, stream the answer; then find each
    answer sentence's evidence in the sources, cite it, and abstain when the documents don't answer."""

    relevance = RELEVANCE
    key_relevance = KEY_RELEVANCE
    stop = ("\n\n",)  # an answer is one short paragraph; what follows a blank line is commentary

    def __init__(self, search, generator: Generator, *, style: str = "auto", **kwargs):
        super().__init__(search, generator, **kwargs)
        path = getattr(generator, "model_path", None)
        size = path.stat().st_size if path is not None and path.is_file() else None
        self.quotes = quotes_by_default(style, size, bool(getattr(generator, "supports_grammar", False)))

    @property
    def system(self) -> str:
        return self.prompts.system

    def ask(self, question: str) -> Answer:
        return self._answer(question, question, time.perf_counter())

    def _answer(self, question: str, standalone: str, started: float, query: str | None = None,
                notes: list[str] | None = None) -> Answer:
        standalone = standalone.strip()
        if not standalone:
            raise RagError("The question is empty; type a question.")
        notes = list(notes or [])
        standalone = self._fit_question(standalone, notes)
        hits = self.search(query or standalone, k=self.k, mode=self.mode)
        if not hits and self._is_empty():
            raise RagError("This collection has no documents yet; ingest a URL or a file, then ask again.")
        prompt, chosen = self._pack(self.prompts.qa, hits, question=standalone)
        base = ChainResult(question=question, standalone_question=standalone, sources=_sources(chosen),
                           retrieved=[_hit_dict(h) for h in hits], notes=notes)
        key = key_sentence(standalone, [h.text for h in chosen], _embedder_of(self.source)) if chosen else None
        if not self._relevant(hits, key):
            return self._abstain(base, prompt, started)
        pointed = self._point_out(prompt, standalone, chosen, key)
        if self.quotes and key is not None:
            base.style = "quote"
            return self._stream(pointed, base, started, check=lambda result: self._cite_quote(result, key),
                                grammar=span_grammar(key.text))
        return self._stream(pointed, base, started, check=self._ground)

    def _point_out(self, prompt: str, question: str, chosen: list, key: Evidence | None) -> str:
        """The prompt with the source sentence that best matches the question marked in bold inside its
        source (a small model answers from it more often), when that still fits the context."""
        if key is None:
            return prompt
        blocks = []
        for i, hit in enumerate(chosen, 1):
            block = P.format_source(i, hit)
            if i == key.n:
                block = block.replace(key.text, f"**{key.text}**", 1)
            blocks.append(block)
        pointed = P.render(self.prompts.qa, context=P.join_sources(blocks), question=question)
        fits = self.prompt_tokens(pointed) + self.max_tokens <= self.generator.context_size
        return pointed if fits else prompt

    def _fit_question(self, question: str, notes: list[str]) -> str:
        """The question, cut at a word boundary when it is longer than the question limit or takes more
        than its share of the context."""
        limit = int(self.generator.context_size * QUESTION_SHARE)
        if len(question) <= limits.MAX_QUESTION_CHARS and self._text_tokens(question) <= limit:
            return question
        low, high = 0, min(len(question), limits.MAX_QUESTION_CHARS)
        while low < high:  # the longest prefix that fits
            mid = (low + high + 1) // 2
            low, high = (mid, high) if self._text_tokens(question[:mid]) <= limit else (low, mid - 1)
        cut = question[:low].rsplit(" ", 1)[0] if " " in question[:low] else question[:low]
        notes.append(f"The question was cut to its first {len(cut):,} of {len(question):,} characters to fit "
                     f"the model's {self.generator.context_size}-token context.")
        return cut.strip()

    def _is_empty(self) -> bool:
        documents = getattr(self.source, "documents", None)
        return callable(documents) and not documents()

    def _relevant(self, hits: list, key: Evidence | None) -> bool:
        """Whether retrieval found something close enough to the question to answer from: the best
        chunk by cosine, and the best sentence by cosine and shared words (where the question has words)."""
        if not hits:
            return False
        scores = [h.dense_score for h in hits if getattr(h, "dense_score", None) is not None]
        if scores and max(scores) < self.relevance:
            return False
        # The sentence threshold was calibrated on scores with the embedding; word overlap alone is not it.
        calibrated = key is not None and _embedder_of(self.source) is not None
        return not calibrated or key.score >= self.key_relevance

    def _cite_quote(self, result: ChainResult, key: Evidence) -> None:
        """A quoted answer cites the sentence it was taken from, which is its evidence."""
        quoted = result.answer.strip()
        result.answer = f"{quoted} [{key.n}]"
        result.evidence = [{**key.to_dict(), "sentence": 0}]
        result.notes.append(f"Quoted from source [{key.n}]: with a small model the answer is the words it chose "
                            "from the source sentence that best matches the question (answer style: quote).")

    def _abstain(self, base: ChainResult, prompt: str, started: float) -> Answer:
        base.prompt, base.prompt_tokens = self.generator.format_prompt(self.messages(prompt)), 0
        base.abstained = True
        base.notes.append("Nothing retrieved is close enough to the question to answer it; the model was not asked.")

        def finish(text: str) -> ChainResult:
            base.answer = text
            base.timings = {"total_s": time.perf_counter() - started}
            return base

        return Answer(iter([P.NO_ANSWER]), finish, prepared=base)

    def _ground(self, result: ChainResult) -> None:
        """Evidence for each answer sentence; the citation added when the model gave none; abstention
        when nothing supports the answer."""
        result.answer = result.answer.replace("**", "").strip()  # the bold that marked the key sentence, copied
        if _says_no_answer(result.answer):
            result.abstained = True
            return
        texts = [s.get("text", "") for s in result.sources]
        support = find_support(result.answer, texts, _embedder_of(self.source))
        result.evidence = [e.to_dict() for e in support.evidence]
        result.unsupported = [support.sentences[i] for i in support.unsupported]
        if not support.supported:
            result.abstained = True
            result.notes.append(f"The model answered \"{result.answer}\", but no source sentence supports it.")
            result.answer = P.NO_ANSWER
            return
        numbers = cited(result.answer)
        wrong = [n for n in numbers if not 1 <= n <= len(texts)]
        if wrong:  # a citation of a source that was not given is removed, and the reader told
            result.answer = re.sub(r"\s*\[(" + "|".join(map(str, wrong)) + r")\]", "", result.answer).strip()
            result.notes.append(f"The citation {', '.join(f'[{n}]' for n in wrong)} named no source given to "
                                "the model and was removed.")
        valid = [n for n in numbers if 1 <= n <= len(texts)]
        if not valid:
            n = support.sources()[0]
            result.answer = f"{result.answer.rstrip()} [{n}]"
            result.citations_added.append(n)
            result.notes.append(f"The citation [{n}] was added: the answer's evidence is in source {n}.")


_QUESTION_WORDS = frozenset(
    "what who whom whose which when where why how is are was were do does did can could should would will "
    "may might has have had name list explain describe tell give compare define".split()
)


def _says_no_answer(answer: str) -> bool:
    text = answer.lower()
    return any(p in text for p in ("documents don't", "documents do not", "don't know", "do not know",
                                   "sources do not", "sources don't"))


# Words by which a follow-up points back at the conversation ("Which one needs it?", "And those?").
_REFERRING = frozenset(
    "it its it's they them their theirs this that these those one ones he him his she her hers former latter "
    "above same other others such also then there".split()
)


def _refers_back(question: str) -> bool:
    """Whether the question has a word that points at an earlier turn ("that", "one")."""
    return bool({w.lower() for w in re.findall(r"[A-Za-z']+", question)} & _REFERRING)


def leans_on_history(question: str) -> bool:
    """Whether a follow-up needs the previous turn to be understood: it refers back ("that", "one"), or
    says too little (two content words or fewer) to be searched on its own."""
    return _refers_back(question) or len(content_words(question)) <= 2


def rewrite_problem(question: str, rewrite: str, previous: str | None = None) -> str | None:
    """Why a follow-up's rewrite can't stand in for it, or None when it can: it must be a question, keep
    the user's key terms, not be the previous question (`previous`) over again, and, for a follow-up
    that leans on the conversation, bring something from it."""
    words = rewrite.split()
    if not words:
        return "it is empty"
    if not rewrite.rstrip().endswith("?") and words[0].lower().strip("\"'") not in _QUESTION_WORDS:
        return "it is not a question"
    if len(words) > 3 * len(question.split()) + 30:
        return "it is far longer than the question"
    kept = {stem(w) for w in content_words(rewrite)}
    lost = [w for w in dict.fromkeys(content_words(question)) if stem(w) not in kept]
    if lost:
        return f"it drops {', '.join(repr(w) for w in lost[:3])}"
    if previous is not None and _normal(rewrite) == _normal(previous) != _normal(question):
        return "it is the previous question over again"
    if _elliptical(question) and kept <= {stem(w) for w in content_words(question)}:
        return "it adds nothing from the conversation"
    return None


_ABOUT = re.compile(r"^\W*(?:and\s+)?(?:what|how)\s+about\b", re.IGNORECASE)


def _elliptical(question: str) -> bool:
    """A follow-up that cannot mean anything without the previous turn: it refers back ("that", "one"),
    is "what about X?", or has one content word or none ("Why?")."""
    return _refers_back(question) or bool(_ABOUT.match(question)) or len(content_words(question)) <= 1


def _normal(text: str) -> str:
    return " ".join(w.lower() for w in re.findall(r"\w+", text))


class ChatChain(QAChain):
    """QA over a conversation: a follow-up is first rewritten, with the history, into a standalone
    question; that question drives retrieval and the answer. A rewrite that is not a question or loses
    the user's key terms is discarded: the user's own words are used, with the previous question added to
    the search. History holds the user's own questions, so a bad rewrite never reaches the next turn."""

    condense_max_tokens = 96

    def ask(self, question: str, history: list[tuple[str, str]] | None = None) -> Answer:
        started = time.perf_counter()
        question = question.strip()
        if not question:
            raise RagError("The question is empty; type a question.")
        history = history or []
        rewrite = self.condense(question, history)
        previous = history[-1][0] if history else None
        problem = rewrite_problem(question, rewrite, previous) if rewrite != question else None
        if problem is None:
            return self._answer(question, rewrite, started)
        if not leans_on_history(question):
            note = (f"The follow-up's rewrite \"{rewrite}\" was not used ({problem}); your question was searched "
                    "as you wrote it.")
            return self._answer(question, question, started, notes=[note])
        note = (f"The follow-up's rewrite \"{rewrite}\" was not used ({problem}); your question was searched "
                "together with the previous one.")
        query = f"{history[-1][0]} {question}"[-limits.MAX_QUESTION_CHARS:]
        return self._answer(question, question, started, query=query, notes=[note])

    def condense(self, question: str, history: list[tuple[str, str]]) -> str:
        """The follow-up as the model rewrites it (the question itself when there is no history)."""
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


OUTLINE_LEAD = "Sections of the document: "

_BOILERPLATE = frozenset({"citation", "citations", "references", "useful resources", "acknowledgements",
                          "acknowledgments", "contents", "table of contents", "share", "comments"})


def headings(text: str, limit: int = 16) -> list[str]:
    """Lines that look like section headings: short, capitalised, without a final stop, followed by a
    paragraph. Extracted articles keep their headings as such lines."""
    lines = [line.strip().lstrip("#").strip() for line in text.splitlines()]
    found: list[str] = []
    for line, after in zip(lines, lines[1:] + [""]):
        if not (3 <= len(line) <= 60) or len(line.split()) > 8 or line[-1] in ".,;:!?)]" or not line[0].isupper():
            continue
        if line.lower() in _BOILERPLATE or line.count(":") and len(line.split(":")[1].split()) < 2:
            continue
        if len(after) > len(line) and after[-1:] in ".:!?)\"" and line not in found:
            found.append(line)
    return found[:limit]
