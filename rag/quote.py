"""Quoted answers: the model chooses a run of words from the source sentence that best matches the
question, and a grammar makes sure it writes nothing else.

A small model (the default SmolLM2-135M) reads the right passage but, writing freely, states the fact
asked for about one time in six on the shared SQuAD subset; held to the words of the best-matching
sentence it picks the right run about twice as often, and its answer can never say what the sources
don't (benchmarks/bench_answers.py). Larger models write better than they select, so the chain quotes
only where `quotes_by_default` says so or the reader asks for it.
"""

from __future__ import annotations

import re

from rag.errors import RagError

# The longest quote, in words: long enough for a name, a date with its event or a short list, and
# under the recipe's median answer (18 to 21 words). On the shared SQuAD subset 12 words gave accuracy 0.35,
# 16 words 0.50: the model mostly copies from the sentence's start and the answer often sits later.
MAX_WORDS = 16
# Models up to this file size quote by default: the smallest instruct models (SmolLM2-135M/360M,
# Qwen2.5-0.5B) at 4-5 bits.
SMALL_MODEL_BYTES = 600 << 20

STYLES = ("auto", "quote", "free")


def quote_words(sentence: str) -> list[str]:
    """The words (whitespace-separated, punctuation kept) a quote of `sentence` is made of."""
    return sentence.split()


def span_grammar(sentence: str, max_words: int = MAX_WORDS) -> str:
    """A GBNF grammar whose sentences are the runs of 1 to `max_words` consecutive words of `sentence`.

    Rule `w<i>-<d>` is word i followed, optionally, by a run from word i+1 of at most d more words;
    the root chooses the first word. The model stops when it likes after any word.
    """
    words = quote_words(sentence)
    if not words:
        raise ValueError("a quote needs a sentence with words")
    depth = min(max_words, len(words))
    rules = []
    for d in range(depth):
        for i in range(len(words)):
            more = f' (" " w{i + 1}-{d - 1})?' if d > 0 and i + 1 < len(words) else ""
            rules.append(f"w{i}-{d} ::= {_literal(words[i])}{more}")
    root = "root ::= " + " | ".join(f"w{i}-{depth - 1}" for i in range(len(words)))
    return "\n".join([root, *rules]) + "\n"


def _literal(word: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", word) + '"'


def check_style(style: str) -> str:
    """`style` when it is an answer style; a RagError naming the choices otherwise."""
    if style not in STYLES:
        raise RagError(f"Answer style {style!r} is not one of {', '.join(STYLES)}; choose one of them.")
    return style


def quotes_by_default(style: str, model_bytes: int | None, supports_grammar: bool) -> bool:
    """Whether a chain quotes: always for "quote" (where the backend can hold a model to a grammar),
    never for "free", and for "auto" when the model is small."""
    check_style(style)
    if not supports_grammar or style == "free":
        return False
    return style == "quote" or (model_bytes is not None and model_bytes <= SMALL_MODEL_BYTES)


def quotes_with(generator, style: str) -> bool:
    """Whether a chain over `generator` quotes (quotes_by_default, with the size of its model file);
    the QA chain and whole-document summaries decide the same way."""
    path = getattr(generator, "model_path", None)
    size = path.stat().st_size if path is not None and path.is_file() else None
    return quotes_by_default(style, size, bool(getattr(generator, "supports_grammar", False)))
