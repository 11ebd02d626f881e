"""Evidence for an answer: for each of its sentences, the source sentence that supports it best.

A source sentence supports an answer sentence when they mean the same (embedding cosine) and share its
words (the share of the answer sentence's content words found in the source sentence). Both count half;
an answer sentence whose best score is under SUPPORT is unsupported. The threshold was set from answers
of the default model on the shared SQuAD subset (benchmarks/bench_answers.py --rows keeps them).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from rag.text import content_words, is_fragment, sentences, stem

# Combined score from which a source sentence supports an answer sentence. On 48 answers of the shared
# SQuAD subset every right answer scored 0.506 or more, and everything under 0.45 was wrong.
SUPPORT = 0.45
EMBED_WEIGHT = 0.5     # share of the embedding cosine in the combined score; the rest is word overlap
CITATION = re.compile(r"\s*\[(\d{1,3})\]")

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> normalised vectors, one row each


@dataclass
class Evidence:
    """One supporting source sentence: source number n, offsets into that source's chunk text."""

    n: int
    start: int
    end: int
    text: str
    score: float
    sentence: int  # which answer sentence it supports (0-based)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Support:
    """Evidence for every answer sentence, and which sentences have none."""

    sentences: list[str]
    evidence: list[Evidence]      # the best source sentence for each supported answer sentence
    unsupported: list[int]        # answer sentences with no source sentence over the threshold
    best: Evidence | None         # the strongest match overall, supported or not

    @property
    def supported(self) -> bool:
        return bool(self.evidence)

    def sources(self) -> list[int]:
        """Source numbers that hold evidence, strongest first, each once."""
        ranked = sorted(self.evidence, key=lambda e: -e.score)
        return list(dict.fromkeys(e.n for e in ranked))


def cited(answer: str) -> list[int]:
    """The [n] numbers an answer cites, in order, each once."""
    return list(dict.fromkeys(int(n) for n in CITATION.findall(answer)))


def strip_citations(text: str) -> str:
    return CITATION.sub("", text).strip()


def answer_sentences(answer: str) -> list[str]:
    return [s for s in (strip_citations(answer[a:b]) for a, b in sentences(answer)) if content_words(s)]


def overlap(claim: str, source: str) -> float:
    """Share of the claim's content words (lightly stemmed) that the source sentence holds."""
    wanted = {stem(w) for w in content_words(claim)}
    if not wanted:
        return 0.0
    return len(wanted & {stem(w) for w in content_words(source)}) / len(wanted)


def find_support(answer: str, sources: Sequence[str], embed: Embed | None = None,
                 threshold: float = SUPPORT) -> Support:
    """Match each sentence of `answer` with its best sentence among `sources` (numbered from 1)."""
    claims = answer_sentences(answer)
    spans = [(n, a, b) for n, text in enumerate(sources, 1) for a, b in sentences(text)]
    if not claims or not spans:
        return Support(claims, [], list(range(len(claims))), None)
    texts = [sources[n - 1][a:b] for n, a, b in spans]
    scores = np.array([[overlap(c, t) for t in texts] for c in claims], dtype=np.float32)
    if embed is not None:
        vectors = embed(claims + texts)
        cosine = vectors[: len(claims)] @ vectors[len(claims):].T
        scores = EMBED_WEIGHT * np.clip(cosine, 0.0, 1.0) + (1 - EMBED_WEIGHT) * scores
    evidence, unsupported, best = [], [], None
    for i, row in enumerate(scores):
        j = int(row.argmax())
        n, a, b = spans[j]
        match = Evidence(n=n, start=a, end=b, text=texts[j], score=round(float(row[j]), 4), sentence=i)
        if best is None or match.score > best.score:
            best = match
        (evidence.append(match) if match.score >= threshold else unsupported.append(i))
    return Support(claims, evidence, unsupported, best)


def key_sentence(question: str, sources: Sequence[str], embed: Embed | None = None) -> Evidence | None:
    """The source sentence that best matches the question, scored as support is: a small model answers
    better when this sentence is pointed out to it (benchmarks/bench_answers.py). A heading or a bare list
    item ("- Memory") is no answer, so it is chosen only where nothing else matches."""
    spans = [(n, a, b) for n, text in enumerate(sources, 1) for a, b in sentences(text)]
    spans = [(n, a, b) for n, a, b in spans if content_words(sources[n - 1][a:b])]
    if not spans or not content_words(question):
        return None
    texts = [sources[n - 1][a:b] for n, a, b in spans]
    scores = np.array([overlap(question, t) for t in texts], dtype=np.float32)
    if embed is not None:
        vectors = embed([question] + texts)
        scores = EMBED_WEIGHT * np.clip(vectors[1:] @ vectors[0], 0.0, 1.0) + (1 - EMBED_WEIGHT) * scores
    j = min(range(len(texts)), key=lambda i: (is_fragment(texts[i]), -scores[i], i))
    n, a, b = spans[j]
    return Evidence(n=n, start=a, end=b, text=texts[j], score=round(float(scores[j]), 4), sentence=-1)
