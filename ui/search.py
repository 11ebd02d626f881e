"""Step 2, Search: retrieve chunks for a query and show them with their scores and on a map."""

from __future__ import annotations

import time

import gradio as gr

from rag import limits
from rag.access import AccessDenied
from rag.errors import RagError
from ui import formatting as fmt
from ui.charts import map_frame, scores_frame
from ui.escaping import escape_markdown
from ui.runtime import Runtime
from ui.request import user_name
from ui.search_format import hits_html
from ui.state import MAX_K, Session
from ui.status import error_line, errors_in_status


def check_query(query: str, what: str = "query") -> str:
    """A stripped query, or a readable error when it is empty or too long."""
    query = (query or "").strip()
    if not query:
        raise RagError(f"Type a {what} first.")
    return limits.check_text(what, query)


def check_k(k) -> int:
    """k as a whole number from 1 to MAX_K; anything else is refused out loud, never clamped."""
    if k is None or (isinstance(k, str) and not k.strip()):
        raise RagError(f"Type k, a whole number from 1 to {MAX_K}.")
    try:
        value = float(k)
    except (TypeError, ValueError):
        raise RagError(f"k must be a whole number from 1 to {MAX_K}; got {k!r}.") from None
    if not value.is_integer() or not 1 <= value <= MAX_K:  # NaN and infinities are not integers
        shown = int(value) if value.is_integer() else value
        raise RagError(f"k must be a whole number from 1 to {MAX_K}; got {shown}.")
    return int(value)


class Search:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @errors_in_status(4, status=0)
    def search(self, query: str, k, mode: str, session: Session, progress=gr.Progress(), request: gr.Request = None):
        """Hits as cards, their scores as a chart, and the collection map with the query and hits marked."""
        from rag.retrieval import check_mode

        query, k, mode = check_query(query), check_k(k), check_mode(mode)
        # One that is not this user's to read is refused as an empty one is, and hits of an earlier search (of
        # a collection shared with them then, say) leave the screen with it.
        try:
            coll = self.runtime.existing_collection(session.collection, user_name(request))
        except AccessDenied as exc:
            return error_line(exc), "", scores_frame([], mode), None
        progress(0, desc="Searching (the embedding model loads on first use)…")
        started = time.perf_counter()
        hits = coll.search(query, k=k, mode=mode)
        took = time.perf_counter() - started
        projection = coll.projection(query)
        note = (
            f"Retrieved **{len(hits)}** of k={k} chunks for “{escape_markdown(query)}” with **{mode}** search "
            f"in {fmt.fmt_seconds(took)} from **{escape_markdown(session.collection)}**."
        )
        bars = scores_frame(hits, mode)
        return note, hits_html(hits, query, mode), bars, map_frame(projection, hits)
