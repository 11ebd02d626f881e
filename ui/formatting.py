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


def one_line(text: object, limit: int | None = None) -> str:
    """Text on one line: newlines and runs of spaces become one space (titles from PDFs keep newlines)."""
    line = " ".join(("" if text is None else str(text)).split())
    return line[: limit - 1] + "…" if limit and len(line) > limit else line


def first_words(text: object, words: int = 12) -> str:
    """The opening words of a passage, to tell apart sources that share a title."""
    parts = ("" if text is None else str(text)).split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


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
    if value is None:
        return "–"
    if value and abs(value) < 10 ** -digits:  # tiny BM25 scores of a small collection are not zero
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


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
            # An error sentence that names its source already is not given the name again in front.
            named = display_source(result.source).removeprefix(UPLOAD_PREFIX) in (result.error or "")
            why = escape_markdown(result.error)
            lines.append(f"- {icon} **failed** — {why}" if named else f"- {icon} **failed** — {source}: {why}")
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


# What each score means, shown under the hits: the retrievers score on different scales.
SCORE_LEGEND = {
    "fused": "fused: the dense and keyword scores of the candidates, each scaled, then combined; 0 to 1",
    "dense": "dense: cosine similarity of the query and chunk embeddings, −1 to 1",
    "bm25": "bm25: keyword score (BM25), 0 and up, comparable only within one query",
}
# The score a mode ranks by, and the name it is shown under.
MODE_SCORE = {"hybrid": ("fused", "score"), "dense": ("dense", "dense_score"), "bm25": ("bm25", "bm25_score")}


def _scores_for(mode: str) -> list[tuple[str, str]]:
    """(name, attribute) of the scores shown for `mode`: the one it ranks by, and for hybrid its two parts."""
    if mode == "hybrid":
        return [MODE_SCORE["hybrid"], MODE_SCORE["dense"], MODE_SCORE["bm25"]]
    return [MODE_SCORE.get(mode, MODE_SCORE["hybrid"])]


def hit_card_html(hit, terms: Sequence[str], mode: str = "hybrid") -> str:
    """One search hit as a card: rank, the mode's score first, the other retrievers' scores, title, text."""
    badges = []
    for i, (name, attr) in enumerate(_scores_for(mode)):
        value = getattr(hit, attr)
        if value is None:
            continue
        css = "score main" if i == 0 else "score"
        badges.append(f'<span class="{css}" title="{escape_html(SCORE_LEGEND[name])}">{name} {fmt_score(value)}</span>')
    return (
        '<div class="hit">'
        f'<div class="hit-head"><span class="rank">#{int(hit.rank)}</span>'
        f'<span class="hit-title">{escape_html(one_line(hit.title) or "(untitled)")}</span>{"".join(badges)}</div>'
        f'<div class="hit-source">{_source_html(hit.source, hit.page)}</div>'
        f'<div class="hit-text">{highlight(hit.text, terms)}</div>'
        "</div>"
    )


def scores_legend_html(mode: str) -> str:
    items = "".join(f"<li>{escape_html(SCORE_LEGEND[name])}</li>" for name, _ in _scores_for(mode))
    return f'<ul class="legend">{items}</ul>'


def hits_html(hits: Sequence, query: str, mode: str = "hybrid") -> str:
    """The list of hits with a legend of their scores, or a sentence saying nothing matched."""
    if not hits:
        return '<div class="empty">No chunks matched. Try another wording, or the hybrid mode.</div>'
    terms = query_terms(query)
    cards = "".join(hit_card_html(h, terms, mode) for h in hits)
    return f'<div class="hits">{cards}</div>{scores_legend_html(mode)}'



def scores_frame(hits: Sequence, mode: str = "hybrid"):
    """Table for the scores chart: one bar per hit and score the mode has, each scaled to that score's best.

    The retrievers score on different scales (convex fusion, cosine, BM25), so bars show the share of
    the best score of the same kind; the raw score is in the tooltip and on the cards.
    """
    import pandas as pd

    rows = []
    for name, attr in _scores_for(mode):
        values = [getattr(h, attr) for h in hits]
        best = max((v for v in values if v is not None), default=0) or 1.0
        for hit, value in zip(hits, values):
            if value is not None:
                rows.append({"bar": f"#{hit.rank} {name}", "retriever": name,
                             "relative": max(float(value), 0.0) / best, "score": round(float(value), 4)})
    # Gradio's chart fixes its colours to the retrievers of the first frame it draws, and later frames
    # only replace the data: a retriever missing from that first frame would be drawn without fill. So
    # every frame names all three, those the mode lacks as an empty bar under the first real one.
    shown = {row["retriever"] for row in rows}
    first = rows[0]["bar"] if rows else ""
    rows += [{"bar": first, "retriever": name, "relative": 0.0, "score": None}
             for name, _ in MODE_SCORE.values() if name not in shown]
    return pd.DataFrame(rows, columns=["bar", "retriever", "relative", "score"])


def map_frame(projection: dict, hits: Sequence):
    """Table for the 2-D map from `Collection.projection`: every chunk, the hits, and the query."""
    import pandas as pd

    hit_rank = {h.chunk_id: h for h in hits}
    rows = []
    for chunk_id, (x, y) in zip(projection.get("ids", []), projection.get("xy", [])):
        hit = hit_rank.get(chunk_id)
        label = one_line(f"#{hit.rank} {hit.title or hit.source}", 80) if hit else f"chunk {chunk_id}"
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


def _inert_html(text: object) -> str:
    """Escaped HTML that no Markdown pass can turn into a link or an image either."""
    return escape_html(text).replace("[", "&#91;").replace("]", "&#93;").replace("!", "&#33;")


def source_label(src) -> str:
    """A source on one escaped line: title, the first words of its passage, where it is."""
    page = _field(src, "page")
    where = _inert_html(one_line(display_source(_field(src, "source")), 120))
    where += f", page {int(page)}" if page is not None else ""
    title = _inert_html(one_line(_field(src, "title"), 100) or "(untitled)")
    words = first_words(_field(src, "text"))
    opening = f" — “{_inert_html(words)}”" if words else ""
    return f"{title}{opening} · {where}"


def sources_md(sources: Sequence, turn: int | None = None) -> str:
    """Numbered sources (hits or their dicts), each expandable to its chunk text, with scores.

    With `turn` (a conversation's turn index) each number is a link that opens the passage.

    Everything inside <summary> is escaped HTML on one line: a blank line there would end the HTML
    block, and what followed it would be read as Markdown (a title could then show a live image).
    """
    blocks = []
    for i, src in enumerate(sources, start=1):
        number = int(_field(src, "n") or i)
        scores = ""
        if _field(src, "score") is not None:
            scores = (f" · score {fmt_score(_field(src, 'score'))} (dense {fmt_score(_field(src, 'dense_score'))},"
                      f" bm25 {fmt_score(_field(src, 'bm25_score'))})")
        text = _field(src, "text")
        body = f"\n\n{escape_markdown(text)}\n\n" if text else ""
        label = f'<a href="#cite-{int(turn)}-{number}">[{number}]</a>' if turn is not None else f"[{number}]"
        blocks.append(f"<details><summary>{label} {source_label(src)}{scores}</summary>{body}</details>")
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
        out += [turn.get("answer", ""), ""]
        if turn.get("style") == "quote" and not turn.get("abstained"):
            out += [QUOTE_LABEL, ""]
        out += [f"_Note:_ {note}" for note in turn.get("notes") or []]
        out += ([""] if turn.get("notes") else []) + ["**Sources**", ""]
        for i, src in enumerate(turn.get("sources", []), start=1):
            page = f", page {src['page']}" if src.get("page") is not None else ""
            out.append(f"{i}. {src.get('title') or '(untitled)'} — {display_source(src['source'])}{page} "
                       f"(score {fmt_score(src.get('score'))})")
            quoted = "\n".join("   > " + line for line in str(src.get("text", "")).splitlines())
            out += [quoted, ""]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- chat

QUOTE_LABEL = "_Quoted from the sources: the model chose these words, it did not write them._"
FREE_LABEL = "_Written by the model from the sources: check it against the evidence and the passages._"


STOPPED_QUOTE_LABEL = "_Stopped: only the beginning of a quote from the sources, not an answer._"


def _label(turn) -> str:
    """The line under an answer that says whose words it holds."""
    if getattr(turn, "style", "free") != "quote":
        return FREE_LABEL
    return STOPPED_QUOTE_LABEL if getattr(turn, "stopped", False) else QUOTE_LABEL


def partial_quote(text: str) -> str:
    """A quote still being written, or stopped: in quotation marks, with an ellipsis where it goes on."""
    return f'"{text.strip()} …"' if text.strip() else ""
_CITATION = re.compile(r"\\\[(\d{1,3})\\\]")  # an escaped "[n]" in escaped Markdown


def answer_md(text: str, sources: Sequence, turn: int | None = None) -> str:
    """An answer as escaped Markdown whose [n] for a known source becomes a link that opens the passage."""
    escaped = escape_markdown(text)
    if turn is None:
        return escaped
    known = {int(_field(s, "n") or i) for i, s in enumerate(sources, start=1)}

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        return f"[\\[{n}\\]](#cite-{turn}-{n})" if n in known else match.group(0)

    return _CITATION.sub(link, escaped)


def chat_messages(turns: Sequence) -> list[dict]:
    """The Chatbot's messages for finished turns: question, answer with cited links, and its sources."""
    messages = []
    for i, turn in enumerate(turns):
        messages.append({"role": "user", "content": escape_markdown(turn.question)})
        if turn.standalone and turn.standalone != turn.question:
            messages.append({"role": "assistant", "content": escape_markdown(turn.standalone),
                             "metadata": {"title": "Standalone question", "status": "done"}})
        answer = answer_md(turn.answer, turn.sources, i) or "_(no answer)_"
        if getattr(turn, "stopped", False):
            answer += "\n\n_(stopped)_"
        if turn.answer.strip() and not getattr(turn, "abstained", False):
            answer += "\n\n" + _label(turn)
        messages.append({"role": "assistant", "content": answer})
        evidence = getattr(turn, "evidence", None) or []
        if evidence:
            messages.append({"role": "assistant", "content": evidence_md(evidence, i),
                             "metadata": {"title": f"Evidence ({len(evidence)})", "status": "done"}})
        messages.append({"role": "assistant", "content": sources_md(turn.sources, i),
                         "metadata": {"title": f"Sources ({len(turn.sources)})", "status": "done"}})
    return messages


def evidence_md(evidence: Sequence, turn: int) -> str:
    """The sentences an answer rests on, each quoted with a link to its passage and its score."""
    lines = []
    for item in evidence:
        n = int(_field(item, "n") or 0)
        score = _field(item, "score")
        link = f"[\\[{n}\\]](#cite-{int(turn)}-{n})" if n else ""
        quote = escape_markdown(one_line(_field(item, "text"), 400))
        lines.append(f"- {link} <mark>{quote}</mark>" + (f" · {fmt_score(score)}" if score is not None else ""))
    return "\n".join(lines)


def standalone_md(result) -> str:
    if result.standalone_question and result.standalone_question != result.question:
        return f"**Standalone question:** {escape_markdown(result.standalone_question)}"
    rewrite = [n for n in getattr(result, "notes", None) or [] if "rewrite" in n]
    if rewrite:  # a follow-up whose rewrite was refused: say why, in the chain's words
        return f"**Question:** {escape_markdown(result.question)} _({escape_markdown(one_line(rewrite[0], 400))})_"
    return f"**Question:** {escape_markdown(result.question)} _(used as typed)_"


def result_timings_md(result) -> str:
    t = result.timings or {}
    return timings_md(t.get("ttft_s"), t.get("gen_tps") or None, t.get("total_s"))


def done_note(backend: str, result) -> str:
    seconds = fmt_seconds((result.timings or {}).get("total_s"))
    if getattr(result, "abstained", False) and not getattr(result, "prompt_tokens", 0):
        note = f"Not answered: the model was not asked ({len(result.retrieved)} chunks retrieved in {seconds})."
    else:
        note = (f"Answered by **{escape_markdown(backend)}** from **{len(result.sources)}** of "
                f"{len(result.retrieved)} retrieved chunks in {seconds}.")
    notes = [n for n in getattr(result, "notes", None) or [] if "rewrite" not in n]
    if notes:  # what the chain did to the answer: a citation added, a loop cut, a question cut, an abstention
        note += " " + " ".join(escape_markdown(one_line(n, 300)) for n in notes)
    if getattr(result, "abstained", False):
        return note + " The sources listed are the closest passages."
    return note + " Click a [n] in the answer to open its passage."


def style_name(style: str) -> str:
    """An answer style as a reader is told it: whose words the answer holds."""
    return "quoted from the sources" if style == "quote" else "written by the model"


def compare_note(result, n_ctx: int | None) -> str:
    """Under one backend's answer in Compare: its answer style, timings and tokens, and why it gave no
    answer when it gave none (the model's unsupported text, or nothing close enough retrieved)."""
    line = (f"Answer style: **{style_name(result.style)}** · " + result_timings_md(result) + " · "
            + token_usage_md(result.prompt_tokens, n_ctx, result.completion_tokens))
    notes = [n for n in result.notes if not n.startswith("Quoted from")]
    if notes:
        line += "\n\n" + " ".join(escape_markdown(one_line(n, 300)) for n in notes)
    return line


def found_model_label(model) -> str:
    """A model found on disk, as the model picker lists it: name, quantisation, size, RAM, where."""
    return (f"{one_line(model.name, 80)} · {model.quantisation} · {model.size_mb:,} MB · needs {model.ram_mb:,} MB "
            f"RAM · {model.source}")


def settings_line(chosen) -> str:
    return (
        f"Applied: **{escape_markdown(chosen.backend)}** · model **{escape_markdown(chosen.model or 'default')}** · "
        f"temperature {chosen.temperature:g} · max {chosen.max_tokens} tokens · context {chosen.n_ctx} · "
        f"k={chosen.k} · {chosen.mode} · answers: {chosen.answer_style}"
    )


def passage_html(src, doc_text: str | None, pages: Sequence = (), context: int = 1200) -> str:
    """A cited passage highlighted inside its document: its page for a PDF, else the text around it.

    `src` is the source as the answer saw it (title, source, page, start, end, text); the passage is
    found at its stored offsets, or by its text when the document has changed since.
    """
    passage = str(_field(src, "text") or "")
    head = (f'<div class="viewer-head"><b>[{int(_field(src, "n") or 0)}] '
            f'{escape_html(one_line(_field(src, "title"), 120) or "(untitled)")}</b><br>'
            f'{_source_html(_field(src, "source"), _field(src, "page"))}</div>')
    start, end = _field(src, "start"), _field(src, "end")
    if doc_text is None or start is None or doc_text[start:end] != passage:
        found = doc_text.find(passage) if doc_text and passage else -1
        if found < 0:
            note = "The document is no longer in the collection, or has changed; this is the passage as cited."
            return (f'<div class="viewer">{head}<p class="viewer-note">{note}</p>'
                    f'<div class="doc"><mark id="cited">{escape_html(passage)}</mark></div></div>')
        start, end = found, found + len(passage)
    low, high = max(0, start - context), min(len(doc_text), end + context)
    page = _field(src, "page")
    if page is not None and pages:
        starts = dict(pages)  # the whole page the passage is on
        if page in starts:
            later = [s for p, s in pages if s > starts[page]]
            low, high = min(starts[page], start), max(end, later[0] if later else len(doc_text))
    before = ("… " if low > 0 else "") + doc_text[low:start]
    after = doc_text[end:high] + (" …" if high < len(doc_text) else "")
    where = f'<p class="viewer-note">Page {int(page)} of the document.</p>' if page is not None and pages else ""
    return (f'<div class="viewer">{head}{where}<div class="doc">{escape_html(before)}'
            f'<mark id="cited">{escape_html(passage)}</mark>{escape_html(after)}</div></div>')


VIEWER_EMPTY = '<div class="viewer empty">Click a [n] in an answer to read that passage in its document.</div>'
