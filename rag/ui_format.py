"""Formatting for the browser notebook: pure functions from service results to display values.

Text that came from the web or a file is untrusted. Everything here that builds HTML escapes it,
and everything that builds Markdown neutralises Markdown and HTML syntax, so a document can never
put live markup, a script, a remote image or a link of its choosing into the page.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Iterable, Sequence
from urllib.parse import urlparse

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|>~$])")
# Line starts that Markdown would turn into a list item or a heading rule ("1." "-" "+" "=").
_MD_LINE_START = re.compile(r"^(\s*)(\d+)([.)])|^(\s*)([-+=])", re.MULTILINE)
_URL = re.compile(r"https?://[^\s<>\"'`\[\]]+")
_WORD = re.compile(r"\w{2,}", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are as at be by do for from has have how in is it its of on or that the this to was "
    "what when where which who why will with does did can".split()
)


# ---------------------------------------------------------------- escaping


def escape_html(text: object) -> str:
    """Text made safe to place inside HTML (element content or a quoted attribute)."""
    return html.escape("" if text is None else str(text), quote=True)


def escape_markdown(text: object) -> str:
    """Text shown literally by a Markdown renderer: no HTML, images, emphasis, headings or maths.

    http(s) URLs are left as they are (only HTML-escaped), so the renderer shows them as plain links.
    """
    text = "" if text is None else str(text)
    out, cursor = [], 0
    for match in _URL.finditer(text):
        out.append(_escape_md_span(text[cursor : match.start()]))
        out.append(html.escape(match.group(0), quote=False))
        cursor = match.end()
    out.append(_escape_md_span(text[cursor:]))
    return "".join(out)


def _escape_md_span(text: str) -> str:
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _MD_LINE_START.sub(lambda m: f"{m[1]}{m[2]}\\{m[3]}" if m[2] else f"{m[4]}\\{m[5]}", escaped)


_UPLOAD = re.compile(r"^.*[/\\]_uploads[/\\][^/\\]+[/\\]")
UPLOAD_PREFIX = "upload: "


def display_source(source: str) -> str:
    """A source as people read it: uploads by their file name, not the server folder they sit in."""
    source = source or ""
    return source if "://" in source else _UPLOAD.sub(UPLOAD_PREFIX, source)


def safe_href(url: str) -> str | None:
    """The URL if it is an http(s) link, else None (no javascript:, data: or file: links)."""
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def query_terms(query: str) -> list[str]:
    """Words of a query worth marking in a hit: two letters or more, not stopwords."""
    terms = {w.lower() for w in _WORD.findall(query or "") if w.lower() not in _STOPWORDS}
    return sorted(terms, key=len, reverse=True)


def highlight(text: str, terms: Sequence[str]) -> str:
    """Escaped `text` with whole-word, case-insensitive matches of `terms` wrapped in <mark>."""
    if not terms:
        return escape_html(text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\b", re.IGNORECASE)
    out, cursor = [], 0
    for match in pattern.finditer(text):
        out.append(escape_html(text[cursor : match.start()]))
        out.append(f"<mark>{escape_html(match.group(0))}</mark>")
        cursor = match.end()
    out.append(escape_html(text[cursor:]))
    return "".join(out)


# ---------------------------------------------------------------- numbers


def fmt_score(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# ---------------------------------------------------------------- ingest


_STATUS_ICON = {"added": "✓", "unchanged": "=", "replaced": "↻", "failed": "✗"}


def ingest_summary_md(report) -> str:
    """The Ingest step's headline: how many documents and splits were made, and how long it took."""
    failed = len(getattr(report, "errors", []) or [])
    parts = [
        f"**{report.documents_added}** added",
        f"**{report.documents_replaced}** replaced",
        f"**{report.documents_unchanged}** unchanged",
        f"**{failed}** failed",
    ]
    return (
        f"{' · '.join(parts)} → **{report.chunks_added}** new splits "
        f"in {fmt_seconds(getattr(report, 'seconds', None))}"
    )


def ingest_result_lines_md(report) -> str:
    """One Markdown line per source: its status, title and chunk count, or why it failed."""
    lines = []
    for result in report.results:
        icon = _STATUS_ICON.get(result.status, "•")
        name = escape_markdown(result.title or display_source(result.source))
        source = escape_markdown(display_source(result.source))
        if result.status == "failed":
            lines.append(f"- {icon} **failed** — {source}: {escape_markdown(result.error)}")
        else:
            chunks = f"{result.chunks} split{'s' if result.chunks != 1 else ''}"
            lines.append(f"- {icon} **{result.status}** — {name} ({chunks}) · {source}")
    return "\n".join(lines) or "_No sources were given._"


def documents_rows(documents: Iterable) -> list[list]:
    """Rows for the documents table: title, source, chunks, added."""
    rows = []
    for doc in documents:
        added = getattr(doc, "added_at", None)
        if isinstance(added, (int, float)):
            added = datetime.fromtimestamp(added).strftime("%Y-%m-%d %H:%M")
        rows.append([doc.title or "(untitled)", display_source(doc.source), int(doc.chunks), str(added or "")])
    return rows


DOCUMENT_HEADERS = ["Title", "Source", "Splits", "Added"]


# ---------------------------------------------------------------- search


def _source_html(source: str, page: int | None) -> str:
    href = safe_href(source)
    label = escape_html(display_source(source))
    link = (
        f'<a href="{escape_html(href)}" target="_blank" rel="noopener noreferrer nofollow">{label}</a>'
        if href
        else f"<code>{label}</code>"
    )
    return link + (f" · page {int(page)}" if page is not None else "")


def hit_card_html(hit, terms: Sequence[str]) -> str:
    """One search hit as a card: rank, fused and per-retriever scores, title, source, marked text."""
    scores = (
        f'<span class="score fused" title="fused score">{fmt_score(hit.score)}</span>'
        f'<span class="score" title="dense (cosine) score">dense {fmt_score(hit.dense_score)}</span>'
        f'<span class="score" title="keyword (BM25) score">bm25 {fmt_score(hit.bm25_score)}</span>'
    )
    return (
        '<div class="hit">'
        f'<div class="hit-head"><span class="rank">#{int(hit.rank)}</span>'
        f'<span class="hit-title">{escape_html(hit.title or "(untitled)")}</span>{scores}</div>'
        f'<div class="hit-source">{_source_html(hit.source, hit.page)}</div>'
        f'<div class="hit-text">{highlight(hit.text, terms)}</div>'
        "</div>"
    )


def hits_html(hits: Sequence, query: str) -> str:
    """The list of hits, or a sentence saying nothing matched."""
    if not hits:
        return '<div class="empty">No chunks matched. Try another wording, or the hybrid mode.</div>'
    terms = query_terms(query)
    return '<div class="hits">' + "".join(hit_card_html(h, terms) for h in hits) + "</div>"


def scores_frame(hits: Sequence):
    """Table for the scores chart: one bar per hit and retriever, each scaled to its retriever's best.

    The retrievers score on different scales (RRF, cosine, BM25), so bars show the share of the best
    score of the same retriever; the raw score is in the tooltip and on the cards.
    """
    import pandas as pd

    rows = []
    for name, attr in (("fused", "score"), ("dense", "dense_score"), ("bm25", "bm25_score")):
        values = [getattr(h, attr) for h in hits]
        best = max((v for v in values if v is not None), default=0) or 1.0
        for hit, value in zip(hits, values):
            if value is not None:
                rows.append({"bar": f"#{hit.rank} {name}", "retriever": name,
                             "relative": max(float(value), 0.0) / best, "score": round(float(value), 4)})
    return pd.DataFrame(rows, columns=["bar", "retriever", "relative", "score"])


def map_frame(projection: dict, hits: Sequence):
    """Table for the 2-D map from `Collection.projection`: every chunk, the hits, and the query."""
    import pandas as pd

    hit_rank = {h.chunk_id: h for h in hits}
    rows = []
    for chunk_id, (x, y) in zip(projection.get("ids", []), projection.get("xy", [])):
        hit = hit_rank.get(chunk_id)
        label = f"#{hit.rank} {hit.title or hit.source}"[:80] if hit else f"chunk {chunk_id}"
        rows.append({"x": float(x), "y": float(y), "kind": "hit" if hit else "chunk", "label": label})
    if projection.get("query_xy") is not None:
        qx, qy = projection["query_xy"]
        rows.append({"x": float(qx), "y": float(qy), "kind": "query", "label": "query"})
    # Hits and the query last, so they are drawn on top of the other chunks.
    rows.sort(key=lambda r: {"chunk": 0, "hit": 1, "query": 2}[r["kind"]])
    return pd.DataFrame(rows, columns=["x", "y", "kind", "label"])


# ---------------------------------------------------------------- answers and sources


def _field(item, name: str):
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def sources_md(sources: Sequence) -> str:
    """Numbered sources (hits or their dicts), each expandable to its chunk text, with scores."""
    blocks = []
    for i, src in enumerate(sources, start=1):
        number = _field(src, "n") or i
        page = _field(src, "page")
        where = escape_html(display_source(_field(src, "source"))) + (f", page {int(page)}" if page is not None else "")
        title = escape_html(_field(src, "title") or "(untitled)")
        scores = ""
        if _field(src, "score") is not None:
            scores = (f" · score {fmt_score(_field(src, 'score'))} (dense {fmt_score(_field(src, 'dense_score'))},"
                      f" bm25 {fmt_score(_field(src, 'bm25_score'))})")
        text = _field(src, "text")
        body = f"\n\n{escape_markdown(text)}\n\n" if text else ""
        blocks.append(f"<details><summary>[{number}] {title} — {where}{scores}</summary>{body}</details>")
    return "\n".join(blocks) or "_No sources went into the prompt._"


def token_usage_md(prompt_tokens: int | None, n_ctx: int | None, completion_tokens: int | None = None) -> str:
    """Prompt tokens against the context size, as a sentence with a warning near the limit."""
    if prompt_tokens is None:
        return ""
    text = f"prompt **{prompt_tokens}** tokens"
    if n_ctx:
        share = prompt_tokens / n_ctx
        text += f" of **{n_ctx}** context ({share:.0%})"
        if share > 0.9:
            text += " ⚠️ close to the limit"
    if completion_tokens is not None:
        text += f" · answer **{completion_tokens}** tokens"
    return text


def timings_md(ttft: float | None, tokens_per_s: float | None, total: float | None = None) -> str:
    parts = [f"time to first token **{fmt_seconds(ttft)}**"]
    if tokens_per_s is not None:
        parts.append(f"**{tokens_per_s:.1f}** tokens/s")
    if total is not None:
        parts.append(f"total **{fmt_seconds(total)}**")
    return " · ".join(parts)


def export_markdown(turns: Sequence[dict], collection: str) -> str:
    """The conversation as a Markdown document, each answer followed by its sources."""
    out = [f"# Conversation over collection “{collection}”", ""]
    for n, turn in enumerate(turns, start=1):
        out += [f"## {n}. {turn['question']}", ""]
        if turn.get("standalone") and turn["standalone"] != turn["question"]:
            out += [f"_Standalone question:_ {turn['standalone']}", ""]
        out += [turn.get("answer", ""), "", "**Sources**", ""]
        for i, src in enumerate(turn.get("sources", []), start=1):
            page = f", page {src['page']}" if src.get("page") is not None else ""
            out.append(f"{i}. {src.get('title') or '(untitled)'} — {display_source(src['source'])}{page} "
                       f"(score {fmt_score(src.get('score'))})")
            quoted = "\n".join("   > " + line for line in str(src.get("text", "")).splitlines())
            out += [quoted, ""]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
