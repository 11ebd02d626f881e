"""Deleting a whole collection, with its confirmation, and restoring it from the trash within 7 days; and
which of the Ingest step's buttons the chosen collection lets this person press.

Only the collection's owner (or the admin; anyone without --auth) may; `Runtime` checks it on the server
(rag.libraries), whatever the page showed. After a delete the session moves to another collection this user
may open, and the page follows it as it follows a choice in the collection box.
"""

from __future__ import annotations

import gradio as gr

from rag.errors import RagError
from rag.trash import TRASH_DAYS
from ui.escaping import escape_html, escape_markdown
from ui.library import Library, personal_collection, trash_label
from ui.request import user_name
from ui.state import Session
from ui.status import errors_in_status


class CollectionTrash:
    """Callbacks of Delete collection and of the trash's list of deleted collections."""

    def __init__(self, library: Library, writable: bool = True):
        self.library = library
        self.runtime = library.runtime
        self.writable = writable
        self.changers = self.managers = 0  # how many of each `controls` updates (wire_controls counts them)
        self.admin_panel = False

    def ask_delete(self, session: Session, request: gr.Request = None):
        """The first press: name the collection and what it holds, and ask again (nothing is deleted yet); to
        anyone else, say why there is nothing to confirm. Outputs: the confirmation, its Yes button, its note."""
        user = user_name(request)
        name = escape_markdown(session.collection)
        if self.runtime.level(session.collection, user) != "own":
            return gr.update(visible=True), gr.update(visible=False), (
                f"**{name}** holds nothing to delete yet." if self.runtime.level(session.collection, user) is None
                else f"Only the owner of **{name}** can delete it.")
        count = len(self.runtime.existing_collection(session.collection, user).documents())
        noun = "document" if count == 1 else "documents"
        return gr.update(visible=True), gr.update(visible=True), (
            f"Delete the collection **{name}** and its **{count}** {noun}? Nobody can open it then. It stays in "
            f"the trash for {TRASH_DAYS} days, and can be restored from there.")

    @errors_in_status(6, status=0)
    def delete(self, session: Session, request: gr.Request = None):
        """Move the chosen collection to the trash, and open another this user may (their first, else a new
        one of their own)."""
        user = user_name(request)
        name = session.collection
        self.runtime.delete_collection(name, user)
        gr.Info(f"Deleted the collection {escape_html(name)}; it is in the trash for {TRASH_DAYS} days")
        names = self.runtime.collection_names(user)
        fallback = personal_collection(user) if self.runtime.access.enabled else self.runtime.settings.collection
        session.collection, session.sources = (names[0] if names else fallback), None
        return ("", self.library.collection_choices(session, request), session,
                *self.library.documents_view(session, user), gr.update(visible=False))

    def controls(self, session: Session, request: gr.Request = None):
        """What the chosen collection lets this person press: the `changers` controls that add or delete
        documents (not on a read-only share), the `managers` that delete or share the collection (its owner; a new
        name is theirs too), and the admin's panel (the admin only), as `wire_controls` was given them. The server
        refuses the same calls whatever the page shows."""
        user = user_name(request)
        level = self.runtime.level(session.collection, user)
        change = self.writable and level != "read"
        manage = self.writable and level in ("own", None)
        shown = [gr.update(interactive=change)] * self.changers + [gr.update(interactive=manage)] * self.managers
        if self.admin_panel:  # there under --auth only
            shown.append(gr.update(visible=self.runtime.access.is_admin(user)))
        return tuple(shown)

    def wire_controls(self, session, changers: list, managers: list, admin: list) -> tuple:
        """The `controls` event's function, inputs and outputs, for these components (admin: the admin's panel
        under --auth, else none)."""
        self.changers, self.managers, self.admin_panel = len(changers), len(managers), bool(admin)
        return self.controls, session, [*changers, *managers, *admin]

    def trash_choices(self, request: gr.Request = None):
        """The collections deleted in the last 7 days that this user may restore."""
        entries = self.runtime.libraries.deleted(user_name(request))
        return gr.update(choices=[(trash_label(e.name, e), e.stored) for e in entries], value=None,
                         label=f"Deleted collections: {len(entries)}")

    @errors_in_status(5, status=0)
    def restore(self, stored: str, session: Session, request: gr.Request = None):
        """Put a collection back whole, its documents and shares as they were, and open it."""
        if not stored:
            raise RagError("Choose a collection in the trash first, then restore it.")
        user = user_name(request)
        session.collection, session.sources = self.runtime.restore_collection(stored, user), None
        return (f"Restored the collection “{escape_markdown(session.collection)}”.",
                self.library.collection_choices(session, request), session,
                *self.library.documents_view(session, user))
