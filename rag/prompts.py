"""The recipe's prompts, and how retrieved chunks and chat history are written into them.

Every template puts its fixed text and the retrieved context first and the question last, so a
follow-up over the same context shares its whole beginning with the previous prompt and
llama.cpp only evaluates the new tail.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from rag.errors import RagError
from rag.locations import where

# Small instruct models follow a system message and a question placed right after the context best
# (benchmarks/bench_answers.py); the recipe's original prompt is kept as RECIPE_QA_PROMPT.
QA_SYSTEM = (
    "You answer questions using only the numbered sources given to you. Answer in one short sentence "
    "that states the fact asked for, and cite its source number like [1]. If the sources do not contain "
    "the answer, reply: The documents don't say."
)

QA_PROMPT = (
    "Sources:\n\n"
    "{context}\n\n"
    "Question: {question}\n"
    "Answer in a few words taken from the sources."
)

# A capable model (over 600M weights, or one a server runs) writes the answer the question needs: asked for
# "one short sentence" and "a few words", 1-8B models cut lists and explanations short.
FULL_QA_SYSTEM = (
    "You answer questions using only the numbered sources given to you. Write a complete answer, as long as "
    "the question needs: a sentence for a single fact, a short paragraph or a list for how, why or what are. "
    "Put the number of the source that supports each claim right after it, like [1] or [2][3]. Do not add "
    "facts the sources do not state. If the sources do not contain the answer, reply only: The documents "
    "don't say."
)

FULL_QA_PROMPT = (
    "Sources:\n\n"
    "{context}\n\n"
    "Question: {question}"
)

RECIPE_QA_PROMPT = (
    "Use the following pieces of context to answer the question at the end. If you don't know the "
    "answer, just say that you don't know, don't try to make up an answer.\n\n"
    "{context}\n\n"
    "Question: {question}\n"
    "Helpful Answer:"
)

# What the chain says, instead of an answer, when the documents hold nothing relevant.
NO_ANSWER = "The documents don't answer this question. The closest passages are listed below."

CONDENSE_PROMPT = (
    "Given the following conversation and a follow up question, rephrase the follow up question "
    "to be a standalone question, in its original language.\n\n"
    "Chat History:\n{chat_history}\n"
    "Follow Up Input: {question}\n"
    "Standalone question:"
)

SUMMARY_SYSTEM = (
    "You summarise documents faithfully: you use only the text given, name its main topics in the words "
    "it uses, and never add facts of your own."
)
# The recipe asked "Summarize the main themes in these retrieved docs: {docs}"; the instruction now
# follows the text, where a small model still has it in view.
SUMMARIZE_PROMPT = "{docs}\n\nSummarize the main themes of the text above in a few sentences."

MAP_PROMPT = (
    "{text}\n\n"
    "Write a concise summary of the text above in one or two sentences."
)

# One part of a whole-document summary: the part's text (or its most central passages), then the instruction.
# Asked for one sentence, SmolLM2-135M wrote fewer lines cut at the part's token limit and invented less than
# asked for one or two; told "the text above is the part ..." it often repeated the instruction instead.
PART_PROMPT = "{text}\n\nSummarize the section \"{heading}\" above in one sentence."

# The placeholders each template must contain.
REQUIRED = {
    "system": set(),
    "qa": {"context", "question"},
    "condense": {"chat_history", "question"},
    "summarize": {"docs"},
    "map": {"text"},
    "part": {"heading", "text"},
}


@dataclass(frozen=True)
class Prompts:
    """The templates a chain uses; any of them can be replaced (check() validates a new one)."""

    system: str = QA_SYSTEM
    qa: str = QA_PROMPT
    condense: str = CONDENSE_PROMPT
    summarize: str = SUMMARIZE_PROMPT
    map: str = MAP_PROMPT
    part: str = PART_PROMPT

    @classmethod
    def for_model(cls, small: bool) -> "Prompts":
        """The short-answer prompts for a small model, the complete-answer ones for a capable model."""
        return cls() if small else cls(system=FULL_QA_SYSTEM, qa=FULL_QA_PROMPT)

    def check(self) -> "Prompts":
        for kind, required in REQUIRED.items():
            check_template(getattr(self, kind), required, kind)
        return self


def placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise RagError(f"The prompt template is malformed ({exc}); double any literal braces as {{{{ }}}}.") from None


def check_template(template: str, required: set[str], kind: str = "prompt") -> None:
    """RagError unless `template` is short enough and uses exactly the required placeholders, each a plain `{name}`.

    Format specs and conversions are refused: `{context:>99999999}` would pad a prompt to 100 MB.
    """
    from rag.limits import MAX_TEMPLATE_CHARS

    if len(template) > MAX_TEMPLATE_CHARS:
        raise RagError(f"The {kind} prompt is {len(template):,} characters long; the limit is "
                       f"{MAX_TEMPLATE_CHARS:,}, so shorten it.")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise RagError(f"The {kind} prompt is malformed ({exc}); double any literal braces as {{{{ }}}}.") from None
    for name, spec, conv in fields:
        if spec or conv or not name.isidentifier():
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise RagError(f"The {kind} prompt has {shown}; only plain placeholders like {{question}} are allowed, "
                           "so remove any format spec, conversion, index or attribute.")
    found = {name for name, _, _ in fields}
    missing, unknown = required - found, found - required
    if missing or unknown:
        problem = f"lacks {{{', '.join(sorted(missing))}}}" if missing else \
            f"has unknown placeholder(s) {{{', '.join(sorted(unknown))}}}"
        raise RagError(f"The {kind} prompt {problem}; it must use exactly "
                       f"{', '.join('{' + r + '}' for r in sorted(required))}.")


def render(template: str, **values: str) -> str:
    """Fill a template; values are inserted literally (braces in documents are safe)."""
    check_template(template, set(values))
    return template.format(**values)


def format_source(number: int, hit) -> str:
    """One retrieved chunk as the model sees it: numbered so the answer can cite [n]."""
    label = getattr(hit, "title", "") or getattr(hit, "source", "")
    place = where(hit)
    label = f"{label}, {place}" if place else label
    return f"[{number}] ({label})\n{hit.text.strip()}" if label else f"[{number}]\n{hit.text.strip()}"


def join_sources(blocks: list[str]) -> str:
    return "\n\n".join(blocks)


def format_history(history: list[tuple[str, str]]) -> str:
    """(question, answer) turns as the condense prompt's chat history."""
    return "\n".join(f"Human: {q.strip()}" + (f"\nAssistant: {a.strip()}" if a and a.strip() else "")
                     for q, a in history)
