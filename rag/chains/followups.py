"""Follow-up questions: whether one leans on the conversation, and whether a model's rewrite of it can stand in."""

from __future__ import annotations

import re

from rag.text import content_words, stem, words

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
    """Whether the question has a word that points at an earlier turn ("that", "one") before it names a
    thing of its own (a capitalised word after the first, or a hyphenated term): in "What is Toolformer and
    how is it trained?", "it" is Toolformer; in "How many people live there?", "there" is the last turn's."""
    for i, word in enumerate(re.findall(r"[A-Za-z'][\w'-]*", question)):
        if word.lower() in _REFERRING:
            return True
        if own_subject(word) and (i > 0 and word[0].isupper() or "-" in word.strip("-")):
            return False
    return False


def leans_on_history(question: str) -> bool:
    """Whether a follow-up needs the previous turn to be understood: it refers back ("that", "one"), or
    says too little (two content words or fewer) to be searched on its own."""
    return _refers_back(question) or len(content_words(question)) <= 2


def rewrite_problem(question: str, rewrite: str, previous: str | None = None,
                    last_turn: str | None = None) -> str | None:
    """Why a follow-up's rewrite can't stand in for it, or None when it can: it must be a question, keep
    the user's key terms, not be the previous question (`previous`) over again, and, for a follow-up
    that leans on the conversation, bring something from it: from the last turn (`last_turn`, its
    question and answer), where given, not from an older one."""
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
    own = {stem(w) for w in content_words(question)}
    if _elliptical(question) and kept <= own:
        return "it adds nothing from the conversation"
    recent = {stem(w) for w in content_words(last_turn or "")}
    if last_turn is not None and needs_subject(question) and not (kept - own) & recent:
        return "it takes its subject from an earlier turn, not the last one"
    return None


_ABOUT = re.compile(r"^\W*(?:and\s+)?(?:what|how)\s+about\b", re.IGNORECASE)


def _elliptical(question: str) -> bool:
    """A follow-up that cannot mean anything without the previous turn: it refers back ("that", "one"),
    is "what about X?", or has one content word or none ("Why?")."""
    return _refers_back(question) or bool(_ABOUT.match(question)) or len(content_words(question)) <= 1


def _normal(text: str) -> str:
    return " ".join(words(text))




# Words that ask for more about the subject already on the table, and name no subject of their own.
_ASKING_MORE = frozenset(
    "tell explain elaborate example examples detail details detailed mean means meant else again further work "
    "works happen happens matter important instance say said give".split()
)
_FOLLOWING = re.compile(r'\(following "(.+)"\)$')


def own_subject(question: str) -> list[str]:
    """The follow-up's own content words, less those that only ask for more ("explain", "example")."""
    return [w for w in content_words(question) if w not in _ASKING_MORE]


def needs_subject(question: str) -> bool:
    """Whether a follow-up takes its subject from the conversation: it points back ("that", "one") or
    names none of its own ("Why?", "Tell me more."). "What about memory?" names its own: memory."""
    return _refers_back(question) or not own_subject(question)


def subject_of(standalone: str) -> str:
    """The question a follow-up continues: the standalone question itself, or the one a built follow-up
    carried ('Why? (following "X")' continues X)."""
    carried = _FOLLOWING.search(standalone.strip())
    return carried.group(1) if carried else standalone.strip()


def with_subject(question: str, previous: str) -> str:
    """The follow-up made standalone by hand: its own words, and the question it follows, whole (a subject
    cut out of a question by rule reads as broken English)."""
    subject = subject_of(previous)
    return f'{question.strip()} (following "{subject}")' if subject else question.strip()

