"""The conversations panel beside the chat, and the viewer that opens a cited passage.

Conversations are stored by `rag.conversations` per user and collection; a reload or a restart
opens the most recent one again.
"""

from __future__ import annotations

import gradio as gr

from rag.errors import RagError
from ui.chat_format import chat_messages
from ui.escaping import escape_markdown, one_line
from ui.request import job_key, user_name
from ui.passage_viewer import passage_html
from ui.runtime import Runtime
from ui.state import Session, Turn
from ui.status import errors_in_status

_TURN_FIELDS = ("question", "standalone", "answer", "sources", "stopped", "evidence", "abstained", "style", "notes")


def _turns(stored: list[dict]) -> list[Turn]:
    return [Turn(**{k: t[k] for k in _TURN_FIELDS if k in t}) for t in stored]


class Conversations:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def _store(self):
        return self.runtime.conversations

    def choices(self, session: Session, request: gr.Request = None):
        """The list in the side panel, the open conversation selected."""
        saved = self._store().list(user_name(request), session.collection)
        return gr.update(choices=[(one_line(c.title, 60), c.id) for c in saved], value=session.conversation_id)

    def panel(self, session: Session, request: gr.Request = None):
        """The list and the open conversation's name, after an answer has saved it."""
        saved = self._store().list(user_name(request), session.collection)
        title = next((c.title for c in saved if c.id == session.conversation_id), "")
        return self.choices(session, request), title

    @errors_in_status(4, status=1)
    def restore(self, session: Session, request: gr.Request = None):
        """On page load, or when the collection changes: reopen this user's latest conversation there."""
        saved = self._store().list(user_name(request), session.collection)
        if not saved:
            session.turns, session.conversation_id = [], None
            return [], "", "", session
        return self._open(saved[0].id, session, request)

    @errors_in_status(4, status=1)
    def open(self, conversation_id: str, session: Session, request: gr.Request = None):
        """Show a saved conversation; later questions continue it."""
        if not conversation_id or conversation_id == session.conversation_id:
            return gr.skip(), gr.skip(), gr.skip(), session
        self.runtime.jobs.stop(job_key(request, "chat"))  # an answer still running belongs to the other one
        return self._open(conversation_id, session, request)

    def _open(self, conversation_id: str, session: Session, request):
        saved = self._store().get(user_name(request), conversation_id)
        # Its turns quote the collection's passages: a collection no longer shared with this user shows none.
        self.runtime.check_access(saved.collection, user_name(request))
        session.turns, session.conversation_id = _turns(saved.turns), saved.id
        count = len(session.turns)
        status = (f"Opened “{escape_markdown(one_line(saved.title, 80))}”: **{count}** "
                  f"{'turn' if count == 1 else 'turns'}. A question continues it.")
        return chat_messages(session.turns), status, saved.title, session

    @errors_in_status(2, status=0)
    def rename(self, title: str, session: Session, request: gr.Request = None):
        self.runtime.require_writable("renaming conversations")
        if not session.conversation_id:
            raise RagError("Ask a question first: a conversation is saved, and can be renamed, once it has one.")
        title = self._store().rename(user_name(request), session.conversation_id, title)
        return f"Renamed to “{escape_markdown(title)}”.", title

    @errors_in_status(4, status=1)
    def delete(self, session: Session, request: gr.Request = None):
        self.runtime.require_writable("deleting conversations")
        if not session.conversation_id:
            raise RagError("Open a saved conversation first, then delete it.")
        self.runtime.jobs.stop(job_key(request, "chat"))
        self._store().delete(user_name(request), session.conversation_id)
        session.turns, session.conversation_id = [], None
        return [], "Deleted the conversation. A question starts a new one.", "", session

    @errors_in_status(1, status=0)
    def open_citation(self, ref: str, session: Session, request: gr.Request = None):
        """The passage that [n] of turn t cites (`ref` is "t-n"), highlighted inside its document."""
        self.runtime.check_access(session.collection, user_name(request))
        try:
            turn_index, number = (int(part) for part in (ref or "").split("-"))
            turn = session.turns[turn_index]
            src = next(s for i, s in enumerate(turn.sources, 1) if int(s.get("n") or i) == number)
        except (ValueError, IndexError, StopIteration):
            raise RagError("That citation is not in the conversation on screen any more.") from None
        text, pages = None, ()
        if session.collection in self.runtime.collection_names(user_name(request)):
            try:
                doc = self.runtime.collection(session.collection, user_name(request)).document(src.get("source", ""))
                text, pages = doc.text, doc.pages
            except RagError:
                pass  # deleted since: the viewer shows the passage as it was cited
        return passage_html(src, text, pages)
