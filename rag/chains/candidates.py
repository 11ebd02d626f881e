"""Which source sentences may be an answer: not one an earlier answer of the conversation quoted, and
not an entry of a bibliography (a reference's title matches a question's words better than the text
that explains them)."""

from __future__ import annotations

import re

from rag.evidence import strip_citations
from rag.text import sentences, words

# "[7] Wei et al. “Chain of thought prompting elicits reasoning…” NeurIPS 2022": a line that is a numbered
# entry naming authors, or that holds a quoted title followed by a year.
_REFERENCE = re.compile(r"^[ \t]*\[\d{1,3}\][ \t]+\S+(?:[ \t]+\S+){0,3}[ \t]+(?:et al\.|and[ \t]).*$|"
                        r"^.*[“\"][^”\"\n]{8,}[”\"][^.\n]{0,60}\b(?:19|20)\d\d\b.*$", re.MULTILINE)


def candidates(texts: list[str], earlier: list[str]) -> list[str]:
    """`texts` with the sentences that may not answer blanked out (same length, so offsets hold). Where
    that would leave nothing, the texts are given as they are."""
    said = [_normal(part) for answer in earlier for part in _quoted_parts(answer)]
    said = [s for s in said if len(s.split()) >= 3]
    out = []
    for text in texts:
        text = _REFERENCE.sub(lambda m: " " * len(m.group()), text)
        for a, b in sentences(text):
            if any(part in _normal(text[a:b]) for part in said):
                text = text[:a] + " " * (b - a) + text[b:]
        out.append(text)
    return out if any(t.strip() for t in out) else list(texts)


def _quoted_parts(answer: str) -> list[str]:
    """The runs of source words an answer holds: its quotations' pieces between ellipses, or the whole
    answer without citations when it quotes nothing."""
    text = strip_citations(answer)
    quoted = re.findall(r"[\"“]([^\"”]+)[\"”]", text) or [text]
    return [piece for q in quoted for piece in re.split(r"…|\.\.\.", q) if piece.strip()]



def _normal(text: str) -> str:
    return " ".join(words(text))
