"""Detecting a generation that loops, so it can be stopped with what came before kept."""

from __future__ import annotations

from rag.text import WORD

NGRAM = 4      # a run of this many words ...
REPEATS = 3    # ... seen this many times is a loop
SAME_WORD = 6  # or one word this many times in a row


def loop_start(text: str) -> int | None:
    """Where the repeating part of `text` begins (the second occurrence of the loop), or None."""
    tokens = [(m.group().lower(), m.start()) for m in WORD.finditer(text)]
    run = 1
    for i in range(1, len(tokens)):
        run = run + 1 if tokens[i][0] == tokens[i - 1][0] else 1
        if run >= SAME_WORD:
            return tokens[i - run + 2][1]
    seen: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(tokens) - NGRAM + 1):
        starts = seen.setdefault(tuple(t for t, _ in tokens[i:i + NGRAM]), [])
        if starts and i - starts[-1] < NGRAM:
            continue  # overlapping with itself ("a a a a a"), counted by the same-word rule
        starts.append(i)
        if len(starts) >= REPEATS:
            return tokens[starts[1]][1]
    return None


class LoopGuard:
    """Fed the text so far as it streams; says when it loops and what to keep."""

    def __init__(self):
        self.cut: int | None = None

    def looping(self, text: str) -> bool:
        if self.cut is None:
            self.cut = loop_start(text)
        return self.cut is not None

    def kept(self, text: str) -> str:
        """The text before the repetition began, without a dangling half sentence of it."""
        return text if self.cut is None else text[: self.cut].rstrip(" ,;:-")
