"""Quoted answers: the model chooses a run of whole clauses of the source sentence that best matches the
question, and a grammar makes sure it writes nothing else; the reader sees them in quotation marks, with
an ellipsis where the sentence goes on, never a phrase cut in the middle.

A small model (the default SmolLM2-135M) reads the right passage but, writing freely, states the fact
asked for about one time in six on the shared SQuAD subset. Held to whole clauses of the best-matching
sentence it states it far more often, and its answer can never say what the sources don't
(benchmarks/bench_answers.py). Offered the clauses of the three best sentences, it chose a wrong sentence
more often than not, so the chain offers one. Larger models write better than they select, so the chain
quotes only where `quotes_by_default` says so or the reader asks for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.errors import RagError
from rag.text import content_words, stem

# The longest quote, in words, unless one clause is longer: a whole sentence of a Wikipedia article
# mostly fits (median about 25 words), and the median answer stays under twice the recipe's (18 to 21).
MAX_WORDS = 40
# A clause shorter than this joins the one before it (or after it, at a sentence's start): "unfaithful,"
# or "Sichuan." is not something a reader can take on its own.
MIN_CLAUSE_WORDS = 4
# Models of up to this many weights quote by default: the smallest instruct models (SmolLM2-135M/360M,
# Qwen2.5-0.5B), whatever their quantisation (a 360M model in F16 is 720 MB, a 1B model in IQ2 400 MB).
SMALL_MODEL_PARAMETERS = 600_000_000
ELLIPSIS = "…"

STYLES = ("auto", "quote", "free")

# A clause ends after , ; : or a dash (" – ", " — ", " - ", or "—" set between words: "away—where").
# Not at a parenthesis: "80 kilometres (50 mi) west of Chengdu" would end mid-phrase.
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|(?<=\s[–—-])\s+|(?<=\w[–—])(?=\w)")
# A word broken at a line's end, as PDF text has it: "im-\nportant".
_BROKEN_WORD = re.compile(r"(?<=[a-z])-[ \t]*\r?\n\s*(?=[a-z])")


def clauses(sentence: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the clauses of `sentence`, none under MIN_CLAUSE_WORDS words unless the
    whole sentence is; together they cover it, whitespace between them left out."""
    cuts = [0] + [m.end() for m in _CLAUSE_END.finditer(sentence)] + [len(sentence)]
    pieces = [(a, b) for a, b in zip(cuts, cuts[1:]) if sentence[a:b].strip()]
    merged: list[list[int]] = []
    for a, b in pieces:
        short = len(sentence[a:b].split()) < MIN_CLAUSE_WORDS
        if merged and (short or len(sentence[merged[-1][0]:merged[-1][1]].split()) < MIN_CLAUSE_WORDS):
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, len(sentence[:b].rstrip())) for a, b in merged]


def display(text: str) -> str:
    """Source text as a quote shows it: broken words joined, white space one space."""
    return " ".join(_BROKEN_WORD.sub("", text).split())


@dataclass
class Run:
    """A run of whole clauses of one candidate sentence: clauses first..last (inclusive)."""

    sentence: int
    first: int
    last: int
    text: str
    clauses: int  # how many the sentence has

    def quoted(self) -> str:
        """The run in quotation marks, with an ellipsis where the sentence was shortened."""
        head = ELLIPSIS + " " if self.first > 0 else ""
        tail = " " + ELLIPSIS if self.last < self.clauses - 1 else ""
        return f'"{head}{self.text}{tail}"'


class Quotable:
    """The candidate sentences, split into clauses: the grammar of their runs, and which run a reply is."""

    def __init__(self, sentences: Sequence[str], max_words: int = MAX_WORDS):
        if not sentences or not all(s.strip() for s in sentences):
            raise ValueError("a quote needs sentences with words")
        self.max_words = max_words
        # For each sentence: its clauses as shown, and the separator before each one ("" after a dash).
        self.parts = []
        for s in sentences:
            spans = clauses(s)
            texts = [display(s[a:b]) for a, b in spans]
            seps = [""] + [" " if a > end else "" for (_, end), (a, _) in zip(spans, spans[1:])]
            self.parts.append((texts, seps))

    def run_text(self, j: int, first: int, last: int) -> str:
        texts, seps = self.parts[j]
        return texts[first] + "".join(seps[k] + texts[k] for k in range(first + 1, last + 1))

    def last_clause(self, j: int, first: int) -> int:
        """The last clause a run from `first` may reach: MAX_WORDS in all, and at least its first clause."""
        texts, _ = self.parts[j]
        last, count = first, len(texts[first].split())
        while last + 1 < len(texts) and count + len(texts[last + 1].split()) <= self.max_words:
            last += 1
            count += len(texts[last].split())
        return last

    def grammar(self) -> str:
        """A GBNF grammar whose sentences are the runs of consecutive whole clauses of the candidates.

        Rule `c<j>-<i>-<e>` is clause i of sentence j followed, optionally, by the run from clause i+1
        that ends by clause e; the root chooses the sentence and the first clause, and the model stops
        when it likes after any clause. Runs share their rules, so the grammar grows with the clauses,
        not with the runs."""
        rules: dict[str, str] = {}
        roots = []
        for j, (texts, seps) in enumerate(self.parts):
            for first in range(len(texts)):
                end = self.last_clause(j, first)
                roots.append(f"c{j}-{first}-{end}")
                for i in range(first, end + 1):
                    body = _literal(texts[i])
                    if i < end:
                        sep = f'"{seps[i + 1]}" ' if seps[i + 1] else ""
                        body += f" ({sep}c{j}-{i + 1}-{end})?"
                    rules.setdefault(f"c{j}-{i}-{end}", body)
        lines = ["root ::= " + " | ".join(dict.fromkeys(roots))]
        lines += [f"{name} ::= {body}" for name, body in rules.items()]
        return "\n".join(lines) + "\n"

    def match(self, reply: str) -> Run | None:
        """The run the model wrote; a reply cut inside a clause (out of tokens) is that clause completed.
        None when the reply is no run's beginning."""
        reply = " ".join(reply.split())
        if not reply:
            return None
        cut = None
        for j, (texts, _) in enumerate(self.parts):
            for first in range(len(texts)):
                for last in range(first, len(texts)):
                    text = self.run_text(j, first, last)
                    if text == reply:
                        return Run(j, first, last, text, len(texts))
                    if cut is None and text.startswith(reply):
                        cut = Run(j, first, last, text, len(texts))
                    if not reply.startswith(text):
                        break
        return cut

    def closest(self, reply: str) -> Run:
        """The run whose words a free reply shares most (F1 over content words; the shorter on a tie), for a
        backend that cannot be held to a grammar; the first sentence whole when the reply shares none."""
        wanted = {stem(w) for w in content_words(reply)}
        best, best_score = self.whole(0), 0.0
        for j, (texts, _) in enumerate(self.parts):
            for first in range(len(texts)):
                for last in range(first, self.last_clause(j, first) + 1):
                    text = self.run_text(j, first, last)
                    words = {stem(w) for w in content_words(text)}
                    shared = len(wanted & words)
                    score = 2 * shared / (len(wanted) + len(words)) if shared else 0.0
                    if score > best_score:
                        best, best_score = Run(j, first, last, text, len(texts)), score
        return best

    def whole(self, j: int = 0) -> Run:
        texts, _ = self.parts[j]
        return Run(j, 0, len(texts) - 1, self.run_text(j, 0, len(texts) - 1), len(texts))


def _literal(text: str) -> str:
    escaped = re.sub(r'["\\]', lambda m: "\\" + m.group(), text)
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", escaped) + '"'


def check_style(style: str) -> str:
    """`style` when it is an answer style; a RagError naming the choices otherwise."""
    if style not in STYLES:
        raise RagError(f"Answer style {style!r} is not one of {', '.join(STYLES)}; choose one of them.")
    return style


def quotes_by_default(style: str, parameters: int | None) -> bool:
    """Whether a chain quotes: always for "quote", never for "free", and for "auto" when the model is small
    (its weights counted in its GGUF header; unknown for a model served elsewhere). How it quotes depends
    on the backend: a grammar where it takes one, else the reply mapped onto the clauses it matches
    (`Quotable.closest`)."""
    check_style(style)
    if style != "auto":
        return style == "quote"
    return parameters is not None and 0 < parameters <= SMALL_MODEL_PARAMETERS


def model_parameters(path) -> int | None:
    """How many weights the GGUF file at `path` holds, from its header (None when it can't be read)."""
    from rag.models import read_header

    try:
        return read_header(path).parameters if path is not None and Path(path).is_file() else None
    except (OSError, ValueError, RagError):  # a damaged file is said when it is loaded, not here
        return None


def generator_parameters(generator) -> int | None:
    """The weights of `generator`'s model: its GGUF file's, or for a server the served model's file where it
    is on this machine (`served_parameters`); None when unknown."""
    path = getattr(generator, "model_path", None)
    if path is not None:
        return model_parameters(path)
    return getattr(generator, "served_parameters", None)


def quotes_with(generator, style: str) -> bool:
    """Whether a chain over `generator` quotes (quotes_by_default, with its model's weights); the QA chain
    and whole-document summaries decide the same way."""
    return quotes_by_default(style, generator_parameters(generator))


def is_small_model(generator) -> bool:
    """Whether `generator`'s model is small (up to SMALL_MODEL_PARAMETERS weights in its GGUF header): it gets
    the short-answer prompts. A served model whose file is not on this machine, of unknown size, is not."""
    parameters = generator_parameters(generator)
    return parameters is not None and 0 < parameters <= SMALL_MODEL_PARAMETERS
