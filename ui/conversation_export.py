"""A conversation exported as a Markdown document to download."""

from __future__ import annotations

from typing import Sequence

from rag.locations import OCR_NOTE, is_ocr, where
from ui.chat_format import QUOTE_LABEL
from ui.escaping import display_source
from ui.formatting import fmt_score


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
            place = (f", {where(src)}" if where(src) else "") + (f" ({OCR_NOTE})" if is_ocr(src) else "")
            out.append(f"{i}. {src.get('title') or '(untitled)'} — {display_source(src['source'])}{place} "
                       f"(score {fmt_score(src.get('score'))})")
            quoted = "\n".join("   > " + line for line in str(src.get("text", "")).splitlines())
            out += [quoted, ""]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
