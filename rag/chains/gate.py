"""Whether the retrieved passages can answer a question: the gate the QA chain passes before it asks the model.

The question is refused, with a reason for the reader, when
  1. it names something (a run of capitalised words) that no retrieved passage mentions as a run,
  2. it holds a number (two digits or more) that no retrieved passage holds,
  3. the best chunk is less similar to it than RELEVANCE (cosine), or
  4. the best source sentence scores less than KEY_RELEVANCE against it (evidence.key_sentence).
Without an embedder (a plain search function rather than a collection) only check 3 applies: the others
were set on a collection's retrieval, and the sentence threshold on scores with the embedding.

Checks 3 and 4 catch questions about another subject. Their thresholds were calibrated together on the shared
SQuAD 1.1 subset, with some of its articles left out (benchmarks/bench_answers.py --calibrate): 75% abstention
on the left-out articles' questions, 6.2% on answerable ones. The sentence does most of the work: a chunk
threshold of 0.40 gave 77% / 6.5%, but it refused a short page's plain answer (chunk 0.394, sentence 0.50).

Checks 1 and 2 catch questions about the right subject and a detail the text lacks. SQuAD 2.0's crowd workers
wrote such questions by swapping an entity, a title or a number for one the paragraph does not hold. The checks
were chosen on half of the SQuAD 2.0 articles, the calibration half of benchmarks/bench_abstain.py (Beyoncé,
Sino-Tibetan relations, Twilight Princess, the Sichuan earthquake, To Kill a Mockingbird). On that half they
raise abstention on the 160 unanswerable questions from 31.9% to 46.3%, and wrong abstention on the 2,007
answerable ones from 5.2% to 6.5%. That half also kept 0.36 and 0.42: a sentence threshold of 0.44 gains
6.8 points of unanswerable questions for 1.7 points of answerable ones, while the word checks gain 14.4 for 1.3.
The held-out half's figures and the SQuAD 1.1 set's are in the README.

A name matches across one slip in a word of five letters or more: readers make typos ("Beichaun"). On the
calibration half, strict matching refused 0.6 points more answerable questions and caught 2.5 points more
unanswerable ones.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from rag.evidence import Embed, Evidence
from rag.text import STOPWORDS, stem

RELEVANCE = 0.36       # best chunk cosine (MiniLM) under this: nothing retrieved is about the question
KEY_RELEVANCE = 0.42   # best sentence score under this: no sentence answers it
FUZZY_MIN = 5          # words this long or longer match across one slip (Damerau distance 1)
_TOKEN = re.compile(r"\w+(?:['’]\w+)*")
_POSSESSIVE = re.compile(r"['’]s?$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")
# Between two words: the second starts a sentence, or the question a built follow-up quotes (chains.followups).
_SENTENCE_START = re.compile(r'(?:[?!][\s"“(]*|\(following ")$')


@dataclass(frozen=True)
class Verdict:
    """Whether to ask the model; when not, a sentence that tells the reader why."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class _Token:
    key: str    # folded: no accents, lower case, no possessive, lightly stemmed
    text: str   # as written
    start: int
    end: int


def fold(word: str) -> str:
    """A word as the name and number checks compare it: 'Beyoncé's' and 'beyonce' are the same."""
    word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)).lower()
    return stem(re.sub(r"['’]s$", "", word).replace("'", "").replace("’", ""))


def _tokens(text: str) -> list[_Token]:
    return [_Token(fold(m.group()), m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _is_name_word(token: _Token) -> bool:
    """A capitalised word that is no stopword, acronym (NYC, TV: passages often spell them out) or number."""
    word = token.text
    return (word[0].isupper() and token.key not in STOPWORDS and len(token.key) > 1
            and not word.isupper() and not any(c.isdigit() for c in word))


def names(question: str) -> list[str]:
    """The names a question uses: runs of capitalised words joined by a space or a hyphen, as written.

    The first word of the question, of a sentence after a question or exclamation mark, and of the question a
    follow-up made standalone quotes ('Why? (following "Tell me …")') is left out (it is capitalised anyway),
    and a possessive ends a run: "Estonia's Navy" is two names.
    """
    tokens = _tokens(question)
    runs: list[list[_Token]] = []
    for i, token in enumerate(tokens[1:], 1):
        if not _is_name_word(token) or _SENTENCE_START.search(question, max(0, token.start - 16), token.start):
            continue
        previous = tokens[i - 1]
        joined = (runs and runs[-1][-1] is previous and question[previous.end:token.start] in (" ", "-")
                  and not _POSSESSIVE.search(previous.text))
        runs[-1].append(token) if joined else runs.append([token])
    return [_POSSESSIVE.sub("", question[run[0].start:run[-1].end]) for run in runs]


def _close(a: str, b: str) -> bool:
    """Equal, or one slip apart (a letter added, dropped, changed or swapped) when both are long enough."""
    if a == b:
        return True
    if min(len(a), len(b)) < FUZZY_MIN or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _mentions(words: list[str], run: list[str]) -> bool:
    n = len(run)
    return any(all(_close(w, r) for w, r in zip(words[i:i + n], run)) for i in range(len(words) - n + 1))


def missing_names(question: str, texts: Sequence[str]) -> list[str]:
    """The question's names that none of `texts` mentions as a run of the same words."""
    folded = [[t.key for t in _tokens(text)] for text in texts]
    return [name for name in names(question)
            if not any(_mentions(words, [t.key for t in _tokens(name)]) for words in folded)]


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+", _THOUSANDS.sub("", text))


def missing_numbers(question: str, texts: Sequence[str]) -> list[str]:
    """The question's numbers of two digits or more that none of `texts` holds ('1,500' is '1500')."""
    held = {n for text in texts for n in _numbers(text)}
    return list(dict.fromkeys(n for n in _numbers(question) if len(n) >= 2 and n not in held))


def _quoted(items: list[str]) -> str:
    items = [f"'{i}'" for i in items[:3]]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def passages(hits: list) -> list[str]:
    """What the name and number checks read: each hit's text, and each document's title once."""
    titles = dict.fromkeys(getattr(h, "title", "") or "" for h in hits)
    return [h.text for h in hits] + [t for t in titles if t]


def answerable(question: str, hits: list, key: Evidence | None, embed: Embed | None,
               relevance: float = RELEVANCE, key_relevance: float = KEY_RELEVANCE) -> Verdict:
    """Whether `hits` (with their text, title and dense_score where computed) and the key sentence found
    for them can answer `question`; the first check that fails gives the reason.

    Without `embed` (a plain search function, not a collection) only the chunk similarity is checked:
    the other checks were calibrated on a collection's retrieval and the key sentence's embedding scores.
    """
    if not hits:
        return Verdict(False, "Nothing was retrieved for the question.")
    if embed is not None:
        reason = _missing(question, passages(hits))
        if reason:
            return Verdict(False, reason)
    scores = [h.dense_score for h in hits if getattr(h, "dense_score", None) is not None]
    if scores and max(scores) < relevance:
        return Verdict(False, f"No retrieved passage is close in meaning to the question (best similarity "
                              f"{max(scores):.3f}, under {relevance}).")
    if key is not None and embed is not None and key.score < key_relevance:
        return Verdict(False, f"No sentence of the retrieved passages matches the question closely enough "
                              f"(best {key.score:.3f}, under {key_relevance}).")
    return Verdict(True)


def _missing(question: str, texts: list[str]) -> str:
    """The sentence that says which of the question's names or numbers no passage holds; empty if none."""
    absent = missing_names(question, texts)
    if absent:
        return f"No retrieved passage mentions {_quoted(absent)}, which the question names."
    absent = missing_numbers(question, texts)
    if absent:
        return f"No retrieved passage holds the number {_quoted(absent)}, which the question names."
    return ""
