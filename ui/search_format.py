"""The Search step's hits as HTML: a card per hit with its scores, and the legend of what they mean."""

from __future__ import annotations

from typing import Sequence

from rag.locations import is_ocr, where
from rag.retrieval import SCORE_LEGEND, scores_for
from ui.escaping import escape_html, highlight, one_line, query_terms, source_html
from ui.formatting import fmt_score


def hit_card_html(hit, terms: Sequence[str], mode: str = "hybrid") -> str:
    """One search hit as a card: rank, the mode's score first, the other retrievers' scores, title, text."""
    badges = []
    for i, (name, attr) in enumerate(scores_for(mode)):
        value = getattr(hit, attr)
        if value is None:
            continue
        css = "score main" if i == 0 else "score"
        badges.append(f'<span class="{css}" title="{escape_html(SCORE_LEGEND[name])}">{name} {fmt_score(value)}</span>')
    return (
        '<div class="hit">'
        f'<div class="hit-head"><span class="rank">#{int(hit.rank)}</span>'
        f'<span class="hit-title">{escape_html(one_line(hit.title) or "(untitled)")}</span>{"".join(badges)}</div>'
        f'<div class="hit-source">{source_html(hit.source, where(hit), is_ocr(hit))}</div>'
        f'<div class="hit-text">{highlight(hit.text, terms)}</div>'
        "</div>"
    )


def scores_legend_html(mode: str) -> str:
    items = "".join(f"<li>{escape_html(SCORE_LEGEND[name])}</li>" for name, _ in scores_for(mode))
    return f'<ul class="legend">{items}</ul>'


def hits_html(hits: Sequence, query: str, mode: str = "hybrid") -> str:
    """The list of hits with a legend of their scores, or a sentence saying nothing matched."""
    if not hits:
        return '<div class="empty">No chunks matched. Try another wording, or the hybrid mode.</div>'
    terms = query_terms(query)
    cards = "".join(hit_card_html(h, terms, mode) for h in hits)
    return f'<div class="hits">{cards}</div>{scores_legend_html(mode)}'
