"""The Summarize step's Markdown: a whole-document summary's labelled lines, and its status line."""

from __future__ import annotations

from rag.chains.summary import KINDS
from ui.escaping import escape_markdown, one_line
from ui.formatting import fmt_seconds, result_timings_md, token_usage_md


def summary_md(result, streamed: str = "") -> str:
    """A summary as escaped Markdown: a whole-document summary one paragraph per part, its heading in bold
    and its text marked as quoted from the document or written by the model; any other, the text as written."""
    parts = getattr(result, "parts", None) or []
    if not parts:
        return escape_markdown(streamed or getattr(result, "answer", ""))
    lines = []
    for part in parts:
        text = escape_markdown(one_line(part.get("text", "")))
        if not text:
            continue
        body = f"“{text}”" if part["kind"] == "quote" else text + (" …" if part.get("cut") else "")
        lines.append(f"**{escape_markdown(one_line(part['heading'], 200))}** — {body} "
                     f"_({KINDS.get(part['kind'], part['kind'])})_")
    return "\n\n".join(lines)


def summary_info_md(result, n_ctx: int | None) -> str:
    """A summary's status line: its strategy, inputs, tokens and times (summed over a summary's model calls),
    then its notes. A summary that quotes every part called no model, and says so instead of counting 0 tokens."""
    strategy = (result.strategy or "").replace("_", "-")
    parts, t = getattr(result, "parts", None) or [], result.timings or {}
    if not parts:
        line = (f"Strategy **{strategy}** · **{len(result.sources)}** inputs · "
                + token_usage_md(result.prompt_tokens, n_ctx, result.completion_tokens) + " · "
                + result_timings_md(result))
    else:
        quoted = sum(p["kind"] == "quote" for p in parts)
        line = (f"Strategy **{strategy}** · **{len(parts)}** parts: **{quoted}** quoted from the document, "
                f"**{len(parts) - quoted}** written by the model · ")
        calls = t.get("model_calls", 0)
        if calls:
            line += (f"**{calls}** model calls · prompts **{t.get('prompt_tokens_sum', 0)}** tokens (the largest "
                     f"**{result.prompt_tokens}** of **{n_ctx}** context) · answer **{result.completion_tokens}** "
                     f"tokens · time to first token **{fmt_seconds(t.get('ttft_s'))}** (first call; "
                     f"**{fmt_seconds(t.get('ttft_sum_s'))}** over all calls)"
                     + (f" · **{t['gen_tps']:.1f}** tokens/s" if t.get("gen_tps") else "") + " · ")
        else:
            line += "no model call · "
        line += f"total **{fmt_seconds(t.get('total_s'))}**"
    notes = getattr(result, "notes", None) or []
    return line + ("\n\n" + " ".join(escape_markdown(one_line(n, 300)) for n in notes) if notes else "")
