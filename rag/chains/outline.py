"""A document's outline: its headings, and the parts a whole-document summary reads one by one.

Parts come from the document's own headings (the extractor's, a PDF's outline, Word heading styles,
Markdown `#` lines; kept in `Document.metadata["headings"]`), else from heading-like lines of its text,
else from runs of neighbouring passages that are alike (cut where one passage is least like the next).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from rag.chunking import CHUNK_SIZE, split_text
from rag.evidence import Embed
from rag.text import content_words

BOILERPLATE = frozenset({"citation", "citations", "references", "useful resources", "acknowledgements",
                         "acknowledgments", "contents", "table of contents", "share", "comments"})
PASSAGE_CHARS = CHUNK_SIZE  # clusters, and a summary's central passages, are made of passages this long
PASSAGES_PER_PART = 3  # a document without headings has about one part per this many passages


@dataclass
class Part:
    """One main part of a document: its label, and where its text (after the heading line) lies."""

    heading: str
    start: int
    end: int
    from_heading: bool = True  # False: a run of passages, labelled by its words


def heading_lines(text: str) -> list[dict]:
    """Lines that look like section headings ({text, level 1, start}): short, capitalised, without a final
    stop, followed by a longer line that ends a sentence. Extracted articles keep their headings as such lines."""
    found, offset = [], 0
    lines = text.split("\n")
    for line, after in zip(lines, lines[1:] + [""]):
        head, after = line.strip().lstrip("#").strip(), after.strip()
        start, offset = offset + len(line) - len(line.lstrip()), offset + len(line) + 1
        if not (3 <= len(head) <= 60) or len(head.split()) > 8 or head[-1] in ".,;:!?)]" or not head[0].isupper():
            continue
        if head.count(":") and len(head.split(":")[1].split()) < 2:
            continue
        if len(after) > len(head) and after[-1:] in ".:!?)\"" and head not in (h["text"] for h in found):
            found.append({"text": head, "level": 1, "start": start})
    return found


def headings(text: str, limit: int = 16) -> list[str]:
    """The heading-like lines of `text` (see heading_lines) but boilerplate ones (references), at most `limit`."""
    return [h["text"] for h in heading_lines(text) if h["text"].lower() not in BOILERPLATE][:limit]


def by_headings(text: str, found: list[dict], title: str = "", limit: int = 12) -> list[Part]:
    """The document's top-level sections, each with its subsections, in order; the text before the first
    one is a part labelled with the title. Boilerplate sections (references, citation) are left out, and
    more than `limit` sections are joined with their neighbours so there are `limit`."""
    found = [h for h in found if 0 <= h.get("start", -1) < len(text) and str(h.get("text", "")).strip()]
    if not found:
        return []
    counts = Counter(h["level"] for h in found)
    top = min((level for level, n in counts.items() if n >= 2), default=min(counts))
    cuts = sorted((h for h in found if h["level"] <= top), key=lambda h: h["start"])
    parts = [Part(title.strip() or "Opening", 0, cuts[0]["start"])]
    for head, after in zip(cuts, cuts[1:] + [None]):
        line_end = text.find("\n", head["start"])
        body = len(text) if line_end < 0 else line_end + 1
        parts.append(Part(" ".join(head["text"].split()), body, after["start"] if after else len(text)))
    parts = [p for p in parts if p.heading.lower() not in BOILERPLATE and len(content_words(text[p.start:p.end])) >= 3]
    return _joined(parts, limit)


def _joined(parts: list[Part], limit: int) -> list[Part]:
    """`parts` as at most `limit` parts, neighbours joined evenly."""
    if len(parts) <= limit:
        return parts
    bounds = [round(i * len(parts) / limit) for i in range(limit + 1)]
    return [Part("; ".join(p.heading for p in parts[a:b]), parts[a].start, parts[b - 1].end, parts[a].from_heading)
            for a, b in zip(bounds, bounds[1:])]


def by_passages(text: str, embed: Embed | None, limit: int = 12) -> list[Part]:
    """Runs of neighbouring passages, about one part per PASSAGES_PER_PART passages (at most `limit`), cut
    where a passage is least like the next (embedding cosine; evenly without an embedder); each labelled
    with the words most its own."""
    spans = split_text(text, PASSAGE_CHARS, 0)
    if not spans:
        return []
    n = max(1, min(limit, round(len(spans) / PASSAGES_PER_PART)))
    if n == 1:
        return [Part("", spans[0][0], spans[-1][1], from_heading=False)]
    if embed is not None:
        vectors = embed([text[a:b] for a, b in spans])
        alike = (vectors[:-1] * vectors[1:]).sum(axis=1)
        cuts = sorted(int(i) + 1 for i in np.argsort(alike, kind="stable")[: n - 1])
    else:
        cuts = [round(i * len(spans) / n) for i in range(1, n)]
    runs = [(spans[a][0], spans[b - 1][1]) for a, b in zip([0, *cuts], [*cuts, len(spans)])]
    words = _own_words([text[a:b] for a, b in runs])
    return [Part(f"Part {i} of {len(runs)}: {', '.join(w)}", a, b, from_heading=False)
            for i, ((a, b), w) in enumerate(zip(runs, words), 1)]


def _own_words(texts: list[str], k: int = 3) -> list[list[str]]:
    """For each text, the `k` words most frequent in it and least found in the others (tf-idf)."""
    counts = [Counter(w for w in content_words(t) if len(w) > 3 and not w.isdigit()) for t in texts]
    spread = Counter(w for c in counts for w in c)
    return [[w for w, _ in sorted(c.items(), key=lambda kv: (-kv[1] * math.log(1 + len(texts) / spread[kv[0]]),
                                                               kv[0]))[:k]] for c in counts]
