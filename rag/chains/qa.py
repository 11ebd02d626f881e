"""QA: retrieve for the question, stuff what fits into the prompt, stream the answer, then ground it."""

from __future__ import annotations

import re
import time

from rag import limits
from rag import prompts as P
from rag.chains.base import QUOTED, Answer, ChainResult, Note, _Base, _embedder_of, _hit_dict, _sources
from rag.chains.candidates import candidates
from rag.chains.gate import KEY_RELEVANCE, RELEVANCE, Verdict, answerable
from rag.errors import RagError
from rag.evidence import Evidence, cited, find_support, key_sentence
from rag.generators.base import Generator
from rag.quote import Quotable, quotes_with
from rag.text import sentences


# Abstain without asking the model when the question names something, or holds a number, that no retrieved
# passage mentions, when the best chunk is less similar to it than RELEVANCE, or when the best source
# sentence scores less than KEY_RELEVANCE against it. The rule, its thresholds and their calibration are in
# rag/chains/gate.py (benchmarks/bench_answers.py --calibrate, benchmarks/bench_abstain.py).
# A question may take at most this share of the context; a longer one is cut, and the reader told.
QUESTION_SHARE = 0.25


class QAChain(_Base):
    """Retrieve for the question, stuff what fits into the QA prompt, stream the answer; then find each
    answer sentence's evidence in the sources, cite it, and abstain when the documents don't answer."""

    relevance = RELEVANCE
    key_relevance = KEY_RELEVANCE

    def __init__(self, search, generator: Generator, *, style: str = "auto", concise: bool = True, **kwargs):
        super().__init__(search, generator, **kwargs)
        self.concise = concise  # a small model's reply ends at a blank line outside a list
        self.quotes = quotes_with(generator, style)
        self.grammars = bool(getattr(generator, "supports_grammar", False))

    def reply_end(self, text: str) -> int | None:
        """A small model's answer ends at a blank line, unless a list goes on there: what follows is
        commentary. A capable model's goes on to its own end: paragraphs and lists are the answer."""
        return answer_end(text) if self.concise else None

    @property
    def system(self) -> str:
        return self.prompts.system

    def ask(self, question: str) -> Answer:
        return self._answer(question, question, time.perf_counter())

    def _answer(self, question: str, standalone: str, started: float, query: str | None = None,
                notes: list[str] | None = None, avoid: list[str] | None = None) -> Answer:
        """Answer `standalone` (shown as `question`), searching `query` if given; `avoid` holds earlier
        answers of the conversation, whose quoted sentences are not chosen again."""
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
        key = key_sentence(standalone, candidates([h.text for h in chosen], avoid or []),
                           _embedder_of(self.source)) if chosen else None
        verdict = self._relevant(standalone, hits, key)
        if not verdict.ok:
            return self._abstain(base, prompt, started, verdict.reason)
        pointed = self._point_out(prompt, standalone, chosen, key)
        if self.quotes and key is not None:
            base.style = "quote"
            # The key sentence only: offered the three best, SmolLM2 chose a wrong one more often than not.
            quotable = Quotable([key.text])
            check = lambda result: self._cite_quote(result, key, quotable)  # noqa: E731
            if self.grammars:
                return self._stream(pointed, base, started, grammar=quotable.grammar(), check=check)
            return self._stream(pointed, base, started, check=check)
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

    def _relevant(self, question: str, hits: list, key: Evidence | None) -> Verdict:
        """Whether retrieval found something that can answer the question (gate.answerable): its names and
        numbers in the passages, the best chunk and the best sentence close enough. With a plain search
        function (no embedder) only the chunk similarity is checked, as the gate was calibrated on a collection."""
        return answerable(question, hits, key, _embedder_of(self.source), self.relevance, self.key_relevance)

    def _cite_quote(self, result: ChainResult, key: Evidence, quotable: Quotable) -> None:
        """A quoted answer is the run of whole clauses of the key sentence the model chose, in quotation
        marks, citing the sentence, which is its evidence."""
        run = quotable.match(result.answer)
        if run is None and not self.grammars:
            run = quotable.closest(result.answer)
            result.notes.append(f"This backend cannot be held to a grammar: the model wrote \"{result.answer}\", and "
                                "the clauses of the source sentence it matches best are quoted.")
        elif run is None:  # the grammar allows nothing else, so only a changed reply lands here
            run = quotable.whole()
            result.notes.append("The model's reply was no run of the sentence's clauses; the sentence is quoted whole.")
        items = list_after(result.sources[key.n - 1].get("text", ""), key.end) if run.text.endswith(":") else []
        if items:  # a quote that introduces a list goes on with the list's items, each quoted in turn
            result.notes.append(f"The sentence introduces a list: its first {len(items)} item(s) follow it.")
        listed = "".join(f"; \"{item}\"" for item in items)
        result.answer = f"{run.quoted()}{listed} [{key.n}]"
        result.evidence = [{**key.to_dict(), "sentence": 0}]
        result.notes.append(Note(f"Quoted from source [{key.n}]: with a small model the answer is the sentence, or "
                                 "the clauses of it the model chose, that best matches the question (answer style: "
                                 "quote).", QUOTED))

    def _abstain(self, base: ChainResult, prompt: str, started: float, reason: str) -> Answer:
        base.prompt, base.prompt_tokens = self.generator.format_prompt(self.messages(prompt)), 0
        base.abstained = True
        base.notes.append(f"{reason} The model was not asked.")

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


_NO_ANSWER_OPENING = re.compile(
    r"^\W*(?:i\s+(?:don't|do not)\s+know|(?:the\s+)?(?:provided\s+|given\s+)?(?:documents?|sources?|context|text)"
    r"\s+(?:don't|do not|does not|doesn't)\s+(?:say|answer|contain|cover|mention|state|provide|include))",
    re.IGNORECASE)


def _says_no_answer(answer: str) -> bool:
    """Whether the answer says the documents don't cover the question: its first sentence says so, and nothing
    after it is cited. An answer that goes on to cite what the documents do say ("… don't say when, but they
    say where [1]") is an answer, and so is one that mentions "don't know" in passing."""
    text = answer.strip().replace("’", "'")
    if not _NO_ANSWER_OPENING.match(text):
        return False
    first = re.search(r"[.!?](?:\s*\[\d+\])*\s", text + " ")
    opening, rest = (text[:first.end()], text[first.end():]) if first else (text, "")
    # A short opening may carry a stray citation ("The documents don't say [1]."); a long one that cites
    # goes on to answer ("… don't say when, but it lies on the Seine [1].").
    return not cited(rest) and (len(opening.split()) <= 8 or not cited(opening))


_LIST_ITEM = re.compile(r"\s*(?:[-*•]|\d{1,2}[.)]|[a-z][.)])\s")


def answer_end(text: str) -> int | None:
    """The offset of the first blank line that ends the answer: one not inside a list (the paragraph
    before it introduces a list, with a colon, or is a list item, and the text after it is one); None
    while the text after a blank line is too short to tell, or there is none."""
    for match in re.finditer(r"\n[ \t]*\n\s*", text):
        after = text[match.end():]
        if len(after.strip()) < 3:
            return None
        before = text[:match.start()].rstrip()
        last_line = before.rsplit("\n", 1)[-1]
        in_list = before.endswith(":") or _LIST_ITEM.match(last_line) is not None
        if not (in_list and _LIST_ITEM.match(after)):
            return match.start()
    return None


_ITEM = re.compile(r"[ \t]*(?:[-*•‣◦▪–]|\(?\d{1,3}[.)]|\(?[a-z][.)])[ \t]+(\S[^\n]*)")
LIST_WORDS = 60  # the most words of list items a quote that introduces a list goes on with
ITEM_WORDS = 8   # an item is quoted to the end of its first sentence that brings it to this many words


def list_after(text: str, end: int, words: int = LIST_WORDS) -> list[str]:
    """The items of the list that follows offset `end` of `text` (each its first sentence, with "…" where it
    goes on), as many as fit in `words`: what a quoted "There are two types:" introduces."""
    items, used = [], 0
    for line in text[end:].lstrip("\n").splitlines():
        match = _ITEM.fullmatch(line)
        if match is None:
            break
        item = match.group(1).strip()
        spans = sentences(item) or [(0, len(item))]
        b = spans[0][1]
        for _, later in spans[1:]:  # a first sentence that is only a name ("Few-shot CoT.") takes the next
            if len(item[:b].split()) >= ITEM_WORDS:
                break
            b = later
        shown = item[:b] + (" …" if b < len(item) else "")
        if items and used + len(shown.split()) > words:
            break
        items.append(shown)
        used += len(shown.split())
    return items
