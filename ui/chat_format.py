"""Answers for the Chat and Compare steps: the Chatbot's messages, an answer with its cited links, its
sources and evidence, the lines that say whose words it holds, and the notes under it."""

from __future__ import annotations

import re
from typing import Sequence

from rag.chains.base import QUOTED, REWRITE
from rag.locations import OCR_NOTE, is_ocr, where
from ui.escaping import display_source, escape_markdown, first_words, inert_html, one_line
from ui.formatting import field, fmt_score, fmt_seconds, result_timings_md, token_usage_md

QUOTE_LABEL = "_Quoted from the sources: the model chose these words, it did not write them._"
FREE_LABEL = "_Written by the model from the sources: check it against the evidence and the passages._"
STOPPED_QUOTE_LABEL = "_Stopped: only the beginning of a quote from the sources, not an answer._"
_CITATION = re.compile(r"\\\[(\d{1,3})\\\]")  # an escaped "[n]" in escaped Markdown


def _kind(note) -> str | None:
    return getattr(note, "kind", None)


def _label(turn) -> str:
    """The line under an answer that says whose words it holds."""
    if getattr(turn, "style", "free") != "quote":
        return FREE_LABEL
    return STOPPED_QUOTE_LABEL if getattr(turn, "stopped", False) else QUOTE_LABEL


def style_name(style: str) -> str:
    """An answer style as a reader is told it: whose words the answer holds."""
    return "quoted from the sources" if style == "quote" else "written by the model"


def partial_quote(text: str) -> str:
    """A quote still being written, or stopped: in quotation marks, with an ellipsis where it goes on."""
    return f'"{text.strip()} …"' if text.strip() else ""


def source_label(src) -> str:
    """A source on one escaped line: title, the first words of its passage, where it is."""
    place = inert_html(one_line(display_source(field(src, "source")), 120))
    place += f", {inert_html(where(src))}" if where(src) else ""
    place += f" ({OCR_NOTE})" if is_ocr(src) else ""
    title = inert_html(one_line(field(src, "title"), 100) or "(untitled)")
    words = first_words(field(src, "text"))
    opening = f" — “{inert_html(words)}”" if words else ""
    return f"{title}{opening} · {place}"


def sources_md(sources: Sequence, turn: int | None = None) -> str:
    """Numbered sources (hits or their dicts), each expandable to its chunk text, with scores.

    With `turn` (a conversation's turn index) each number is a link that opens the passage.

    Everything inside <summary> is escaped HTML on one line: a blank line there would end the HTML
    block, and what followed it would be read as Markdown (a title could then show a live image).
    """
    blocks = []
    for i, src in enumerate(sources, start=1):
        number = int(field(src, "n") or i)
        scores = ""
        if field(src, "score") is not None:
            scores = (f" · score {fmt_score(field(src, 'score'))} (dense {fmt_score(field(src, 'dense_score'))},"
                      f" bm25 {fmt_score(field(src, 'bm25_score'))})")
        text = field(src, "text")
        body = f"\n\n{escape_markdown(text)}\n\n" if text else ""
        label = f'<a href="#cite-{int(turn)}-{number}">[{number}]</a>' if turn is not None else f"[{number}]"
        blocks.append(f"<details><summary>{label} {source_label(src)}{scores}</summary>{body}</details>")
    return "\n".join(blocks) or "_No sources went into the prompt._"


def answer_md(text: str, sources: Sequence, turn: int | None = None) -> str:
    """An answer as escaped Markdown whose [n] for a known source becomes a link that opens the passage."""
    escaped = escape_markdown(text)
    if turn is None:
        return escaped
    known = {int(field(s, "n") or i) for i, s in enumerate(sources, start=1)}

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        return f"[\\[{n}\\]](#cite-{turn}-{n})" if n in known else match.group(0)

    return _CITATION.sub(link, escaped)


def evidence_md(evidence: Sequence, turn: int) -> str:
    """The sentences an answer rests on, each quoted with a link to its passage and its score."""
    lines = []
    for item in evidence:
        n = int(field(item, "n") or 0)
        score = field(item, "score")
        link = f"[\\[{n}\\]](#cite-{int(turn)}-{n})" if n else ""
        quote = escape_markdown(one_line(field(item, "text"), 400))
        lines.append(f"- {link} <mark>{quote}</mark>" + (f" · {fmt_score(score)}" if score is not None else ""))
    return "\n".join(lines)


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


def standalone_md(result) -> str:
    if result.standalone_question and result.standalone_question != result.question:
        return f"**Standalone question:** {escape_markdown(result.standalone_question)}"
    rewrite = [n for n in getattr(result, "notes", None) or [] if _kind(n) == REWRITE]
    if rewrite:  # a follow-up whose rewrite was refused: say why, in the chain's words
        return f"**Question:** {escape_markdown(result.question)} _({escape_markdown(one_line(rewrite[0], 400))})_"
    return f"**Question:** {escape_markdown(result.question)} _(used as typed)_"


def done_note(backend: str, result) -> str:
    seconds = fmt_seconds((result.timings or {}).get("total_s"))
    if getattr(result, "abstained", False) and not getattr(result, "prompt_tokens", 0):
        note = f"Not answered: the model was not asked ({len(result.retrieved)} chunks retrieved in {seconds})."
    else:
        note = (f"Answered by **{escape_markdown(backend)}** from **{len(result.sources)}** of "
                f"{len(result.retrieved)} retrieved chunks in {seconds}.")
    notes = [n for n in getattr(result, "notes", None) or [] if _kind(n) != REWRITE]
    if notes:  # what the chain did to the answer: a citation added, a loop cut, a question cut, an abstention
        note += " " + " ".join(escape_markdown(one_line(n, 300)) for n in notes)
    if getattr(result, "abstained", False):
        return note + " The sources listed are the closest passages."
    return note + " Click a [n] in the answer to open its passage."


def compare_note(result, n_ctx: int | None) -> str:
    """Under one backend's answer in Compare: its answer style, timings and tokens, and why it gave no
    answer when it gave none (the model's unsupported text, or nothing close enough retrieved)."""
    line = (f"Answer style: **{style_name(result.style)}** · " + result_timings_md(result) + " · "
            + token_usage_md(result.prompt_tokens, n_ctx, result.completion_tokens))
    notes = [n for n in result.notes if _kind(n) != QUOTED]  # the style says it was quoted already
    if notes:
        line += "\n\n" + " ".join(escape_markdown(one_line(n, 300)) for n in notes)
    return line
