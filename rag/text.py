"""Words, stopwords and sentences: the text rules that evidence matching, follow-up checks, keyword
search and term highlighting share."""

from __future__ import annotations

import functools
import re

from rag.errors import RagError

WORD = re.compile(r"\w+", re.UNICODE)
# Two lists, for two purposes. QUERY_STOPWORDS are dropped from keyword queries (tantivy, and the BM25
# analyzer of a Milvus collection, which keeps the list it was created with) and left unmarked in a hit:
# they match nearly every chunk and add nothing to BM25. STOPWORDS adds pronouns, modals and quantifiers,
# words that say nothing about what a sentence is about, to decide which words an answer, a source
# sentence or a follow-up must share; a keyword search still ranks by them ("most", "why").
QUERY_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their then there "
    "these they this to was were which will with what when where who how do does did not no can".split()
)
STOPWORDS = QUERY_STOPWORDS | frozenset(
    "whom whose why could would should may might i you he she we me him her us them my your our his one ones "
    "about also been being than so such if some any all more most other only just very much many".split()
)


def words(text: str) -> list[str]:
    """Lower-case words of `text`."""
    return [w.lower() for w in WORD.findall(text or "")]


def content_words(text: str) -> list[str]:
    """Words that carry meaning: not stopwords, two characters or more (digits of any length)."""
    return [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def stem(word: str) -> str:
    """A light suffix strip, enough to match 'decomposition' with 'decompose' loosely, 'agents' with 'agent'.

    Keyword search stems with tantivy's Snowball stemmer instead, inside the index. This one decides
    which words of an answer, a source sentence or a follow-up count as the same, and the evidence and
    relevance thresholds (`rag.chains.gate`, `rag.evidence`) were calibrated with it."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


# A line that starts a list item: a bullet, "1." or "1)", "a)" or "(a)", or a reference "[1]", then a space.
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*•‣◦▪–]|\(?\d{1,3}[.)]|\(?[a-z][.)]|\(?[A-Z]\)|\[\d{1,3}\])[ \t]+(?=\S)")
_LINE = re.compile(r"[^\n]*\S[^\n]*")  # a line with something on it
# Characters the splitter reads as spaces: line breaks (wrapped lines are joined) and control characters.
_FLAT = re.compile(r"[\x00-\x1f\x7f]")
# A heading or a title is a line of at most this many words with no final punctuation.
HEADING_WORDS = 8
_NOT_FINAL = ".!?,;:-–—(["
# A full stop after these never ends a sentence; the splitter sometimes thinks it does ("Dr.", "e.g.").
_NEVER_FINAL = frozenset("dr mr mrs ms prof e.g i.e cf vs viz".split())


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`, whitespace trimmed, empty ones dropped.

    A blank line, a list item, a heading and a title end a sentence; a single line break inside a
    paragraph does not (a PDF wraps its lines). Within a paragraph, Bling Fire's model splits."""
    out = []
    for a, b in _blocks(text):
        cuts = _cuts(text[a:b])
        for start, end in zip([0, *cuts], [*cuts, b - a]):
            start, end = a + start, a + end
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            if end > start:
                out.append((start, end))
    return out


def is_fragment(sentence: str) -> bool:
    """Whether a sentence is a heading or a bare list item: a few words, no final punctuation. A sentence
    of three words or more that ends in a colon introduces what follows ("Two main types of CoT:"), and a
    quote of it goes on with its list (`rag.chains.qa.list_after`)."""
    s = sentence.strip().rstrip("\"')]”’")
    if s.endswith(":") and len(s.split()) >= 3:
        return False
    return not s or (s[-1] not in ".!?" and len(s.split()) <= HEADING_WORDS)


def _blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of the paragraphs, list items (without their marker) and headings of `text`."""
    lines = [(m.start(), m.end()) for m in _LINE.finditer(text)]
    blocks: list[list[int]] = []
    for i, (a, b) in enumerate(lines):
        line = text[a:b]
        following = text[lines[i + 1][0]:lines[i + 1][1]] if i + 1 < len(lines) else None
        previous = text[lines[i - 1][0]:lines[i - 1][1]] if i else None
        item = _LIST_ITEM.match(line)
        blank_before = i > 0 and text.count("\n", lines[i - 1][1], a) > 1
        if not blocks or item or blank_before or _heading(previous, line) or _heading(line, following):
            blocks.append([a + (item.end() if item else 0), b])
        else:
            blocks[-1][1] = b
    return [(a, b) for a, b in blocks]


def _heading(line: str, following: str | None) -> bool:
    """Whether `line` stands alone before a line that starts upper-case or a list: a heading ('#' first, or
    a few words with no final punctuation, not ending in a word such as 'the') or a lead-in ending in ':'."""
    s = line.strip()
    if s.startswith("#"):
        return True
    if following is None or not (following.lstrip()[:1].isupper() or _LIST_ITEM.match(following)):
        return False
    words = s.split()
    if s.endswith(":"):  # a lead-in before a paragraph of its own (an example's label, say)
        return True
    return (len(words) <= HEADING_WORDS and s[-1] not in _NOT_FINAL and (s[0].isupper() or s[0].isdigit())
            and words[-1].lower() not in STOPWORDS)


def _cuts(paragraph: str) -> list[int]:
    """Where the sentences of one paragraph end (offsets into it), the last end left out."""
    flat = _FLAT.sub(" ", paragraph)
    _, spans = _splitter()(flat)
    ends = sorted({e for _, e in spans if 0 < e < len(flat.rstrip())})
    cuts = []
    for end in ends:
        before, after = flat[cuts[-1] if cuts else 0:end], flat[end:end + 80].lstrip()
        last = before.split()[-1].lower().strip("([\"'.") if before.split() else ""
        # A sentence starts upper-case, and "Dr." or an initial ("J.") is followed by more of a name.
        joined = after[:1].islower() or last in _NEVER_FINAL or all(_initial(w) for w in before.split())
        if not joined:
            cuts.append(end)
    return cuts


def _initial(word: str) -> bool:
    w = word.lower().rstrip(".")
    return w in _NEVER_FINAL or (len(w) == 1 and w.isalpha() and word.endswith("."))


@functools.cache
def _splitter():
    """Bling Fire's sentence splitter (text -> (sentences, offsets)), imported on first use."""
    try:
        import blingfire
    except (ImportError, OSError) as exc:  # OSError: its native library does not load on this platform
        raise RagError(f"Sentence splitting needs the blingfire2 package ({exc}); install it with "
                       "`pip install blingfire2==0.2.1`.") from None
    return blingfire.text_to_sentences_and_offsets
