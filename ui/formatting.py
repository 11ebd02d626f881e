"""Formatting for the browser notebook that no one step owns: numbers, token and time lines, the Library
step's ingest lines and documents table, and the settings line. Untrusted text goes through `ui.escaping`.

The other renderers have modules of their own: `search_format` (hit cards), `charts` (the search step's
tables), `chat_format` (answers, sources, notes), `passage_viewer`, `conversation_export` and
`summary_format`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from ui.escaping import UPLOAD_PREFIX, display_source, escape_markdown, one_line


def field(item, name: str):
    """`item[name]` of a dict (a stored turn's source), else the attribute (a live hit)."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


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


def token_usage_md(prompt_tokens: int | None, n_ctx: int | None, completion_tokens: int | None = None,
                   counted_by: str = "") -> str:
    """Prompt tokens against the context size, as a sentence with a warning near the limit; a count made
    without the model's tokenizer (`counted_by` "estimate") is said to be an estimate."""
    if prompt_tokens is None:
        return ""
    about = "about " if counted_by == "estimate" else ""
    text = f"prompt {about}**{prompt_tokens}** tokens"
    if n_ctx:
        share = prompt_tokens / n_ctx
        text += f" of **{n_ctx}** context ({share:.0%})"
        if share > 0.9:
            text += " ⚠️ close to the limit"
    if completion_tokens is not None:
        text += f" · answer **{completion_tokens}** tokens"
    if counted_by == "estimate":
        text += " (estimated: the server offers no tokenizer and its model's file is not here)"
    return text


def timings_md(ttft: float | None, tokens_per_s: float | None, total: float | None = None) -> str:
    parts = [f"time to first token **{fmt_seconds(ttft)}**"]
    if tokens_per_s is not None:
        parts.append(f"**{tokens_per_s:.1f}** tokens/s")
    if total is not None:
        parts.append(f"total **{fmt_seconds(total)}**")
    return " · ".join(parts)


def result_timings_md(result) -> str:
    t = result.timings or {}
    return timings_md(t.get("ttft_s"), t.get("gen_tps") or None, t.get("total_s"))


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


# ---------------------------------------------------------------- settings


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
