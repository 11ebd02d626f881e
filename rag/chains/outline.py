"""A document's outline: the lines of its text that are section headings."""

from __future__ import annotations

OUTLINE_LEAD = "Sections of the document: "

_BOILERPLATE = frozenset({"citation", "citations", "references", "useful resources", "acknowledgements",
                          "acknowledgments", "contents", "table of contents", "share", "comments"})


def headings(text: str, limit: int = 16) -> list[str]:
    """Lines that look like section headings: short, capitalised, without a final stop, followed by a
    paragraph. Extracted articles keep their headings as such lines."""
    lines = [line.strip().lstrip("#").strip() for line in text.splitlines()]
    found: list[str] = []
    for line, after in zip(lines, lines[1:] + [""]):
        if not (3 <= len(line) <= 60) or len(line.split()) > 8 or line[-1] in ".,;:!?)]" or not line[0].isupper():
            continue
        if line.lower() in _BOILERPLATE or line.count(":") and len(line.split(":")[1].split()) < 2:
            continue
        if len(after) > len(line) and after[-1:] in ".:!?)\"" and line not in found:
            found.append(line)
    return found[:limit]
