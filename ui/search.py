"""Step 2, Search: retrieve chunks for a query and show them with their scores and on a map."""

from __future__ import annotations

import time

import gradio as gr

from rag import ui_format as fmt
from rag.errors import RagError
from ui.guard import user_errors
from ui.runtime import Runtime
from ui.state import MAX_QUESTION_CHARS, Session


def check_query(query: str, what: str = "query") -> str:
    """A stripped query, or a readable error when it is empty or too long."""
    query = (query or "").strip()
    if not query:
        raise RagError(f"Type a {what} first.")
    if len(query) > MAX_QUESTION_CHARS:
        raise RagError(f"The {what} is {len(query)} characters long; the limit is {MAX_QUESTION_CHARS}.")
    return query


class Search:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @user_errors
    def search(self, query: str, k: int, mode: str, session: Session, progress=gr.Progress()):
        """Hits as cards, their scores as a chart, and the collection map with the query and hits marked."""
        query = check_query(query)
        if session.collection not in self.runtime.collection_names():
            raise RagError(f"Collection {session.collection!r} is empty; ingest something in step 1 first.")
        progress(0, desc="Searching (the embedding model loads on first use)…")
        coll = self.runtime.collection(session.collection)
        started = time.perf_counter()
        hits = coll.search(query, k=int(k), mode=mode)
        took = time.perf_counter() - started
        projection = coll.projection(query)
        note = (
            f"Retrieved **{len(hits)}** of k={int(k)} chunks for “{fmt.escape_markdown(query)}” with **{mode}** search "
            f"in {fmt.fmt_seconds(took)} from **{fmt.escape_markdown(session.collection)}**."
        )
        return note, fmt.hits_html(hits, query), fmt.scores_frame(hits), fmt.map_frame(projection, hits)
