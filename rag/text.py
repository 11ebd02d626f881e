"""Words, stopwords and sentences: the text rules that evidence matching and follow-up checks share."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their then there "
    "these they this to was were which will with what when where who whom whose why how do does did not no can "
    "could would should may might i you he she we me him her us them my your our his one ones about also been "
    "being than so such if some any all more most other only just very much many".split()
)
# A sentence ends at . ! ? (and closing quotes or brackets) before whitespace, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


def words(text: str) -> list[str]:
    """Lower-case words of `text`."""
    return [w.lower() for w in WORD.findall(text or "")]


def content_words(text: str) -> list[str]:
    """Words that carry meaning: not stopwords, two characters or more (digits of any length)."""
    return [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def stem(word: str) -> str:
    """A light suffix strip, enough to match 'decomposition' with 'decompose' loosely, 'agents' with 'agent'."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


# A full stop after these (or after a single letter, as in "J. Smith" or "U.S.") ends no sentence.
_ABBREVIATIONS = frozenset("al e.g i.e etc vs fig figs no nos eq eqs approx ca cf dr mr mrs ms st jr sr prof inc ltd "
                           "co corp dept est vol pp ed eds".split())


def _abbreviation_before(text: str, end: int) -> bool:
    """Whether the word ending at `end` (just before a full stop) is an abbreviation."""
    word = text[:end].rsplit(None, 1)[-1].lstrip("([\"'").lower() if text[:end].strip() else ""
    return len(word) == 1 and word.isalpha() or word in _ABBREVIATIONS or word.rstrip(".") in _ABBREVIATIONS


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`, whitespace trimmed, empty ones dropped."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        stop = match.start()
        if text[stop - 1:stop] == "." and "\n" not in match.group() and _abbreviation_before(text, stop - 1):
            continue
        spans.append((start, match.start() if text[match.start()] in "\n \t\r" else match.end()))
        start = match.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out
