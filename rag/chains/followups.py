"""Follow-up questions: whether one leans on the conversation, and whether a model's rewrite of it can stand in."""

from __future__ import annotations

import re

from rag.text import content_words, stem

_QUESTION_WORDS = frozenset(
    "what who whom whose which when where why how is are was were do does did can could should would will "
    "may might has have had name list explain describe tell give compare define".split()
)



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


