"""Sharing a collection on purpose (under --auth): its owner shares it with named users or everyone,
read-only or read-write, and takes shares back; the admin sees who owns what and moves ownership.

Each callback asks `Runtime`, which checks the logged-in user on the server (`rag.access`), whatever the
page showed or hid.
"""

from __future__ import annotations

import gradio as gr

from rag.errors import RagError
from rag.access import EVERYONE, READ, WRITE
from ui.escaping import escape_markdown
from ui.request import user_name
from ui.runtime import Runtime
from ui.state import Session
from ui.status import errors_in_status

# What the page offers, and the level each means.
LEVELS = {"read-only": READ, "read-write": WRITE}
_SHOWN = {READ: "read-only", WRITE: "read-write"}


def _who(name: str) -> str:
    return "everyone" if name == EVERYONE else f"**{escape_markdown(name)}**"


def shares_md(name: str, owner: str, shares: dict) -> str:
    """The owner and the shares of one collection, in a line or two."""
    given = ", ".join(f"{_who(u)} ({_SHOWN[v]})" for u, v in sorted(shares.items())) or "nobody: it is private"
    return f"**{escape_markdown(name)}** is owned by **{escape_markdown(owner)}** and shared with {given}."


class Sharing:
    """Callbacks of the sharing panel beside the documents table."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def users(self, request: gr.Request = None) -> list[str]:
        """Whom a collection can be shared with: everyone, and each user but the one asking."""
        me = user_name(request)
        return ["everyone"] + [u for u in self.runtime.access.users if u != me]

    @errors_in_status(1, status=0)
    def view(self, session: Session, request: gr.Request = None) -> str:
        """Who owns the chosen collection and whom it is shared with; what this user may do with it."""
        user = user_name(request)
        level = self.runtime.level(session.collection, user)
        if level is None:
            return (f"**{escape_markdown(session.collection)}** is yours once you ingest into it; it stays private "
                    "until you share it.")
        if level != "own":
            return f"**{escape_markdown(session.collection)}** is shared with you {_SHOWN[level]} by its owner."
        return shares_md(session.collection, *self.runtime.libraries.sharing(session.collection, user))

    @errors_in_status(1, status=0)
    def share(self, who: str, level: str, session: Session, request: gr.Request = None) -> str:
        """Share the chosen collection with `who` (a user or everyone), read-only or read-write."""
        if not (who or "").strip():
            raise RagError("Choose whom to share the collection with first: a user, or everyone.")
        if level not in LEVELS:
            raise ValueError(f"Unknown share level {level!r}; choose read-only or read-write.")
        user = user_name(request)
        self.runtime.require_writable("sharing collections")
        self.runtime.libraries.share(session.collection, user, who, LEVELS[level])
        return "Shared. " + shares_md(session.collection, *self.runtime.libraries.sharing(session.collection, user))

    @errors_in_status(1, status=0)
    def take_back(self, who: str, session: Session, request: gr.Request = None) -> str:
        """Take back `who`'s share of the chosen collection; their next call is refused."""
        user = user_name(request)
        self.runtime.require_writable("sharing collections")
        self.runtime.libraries.share(session.collection, user, who, None)
        return "Taken back. " + shares_md(session.collection, *self.runtime.libraries.sharing(session.collection, user))

    @errors_in_status(3, status=0)
    def move(self, new_owner: str, session: Session, request: gr.Request = None):
        """The admin gives the chosen collection to another owner; the page follows it to its new name
        ("new_owner/name"), as the admin now calls it."""
        user = user_name(request)
        self.runtime.require_writable("moving collections")
        if not (new_owner or "").strip():
            raise RagError("Choose whom to move the collection to first.")
        session.collection, session.sources = self.runtime.libraries.move_owner(session.collection, user,
                                                                                new_owner), None
        shares = shares_md(session.collection, *self.runtime.libraries.sharing(session.collection, user))
        return "Moved. " + shares, gr.update(value=session.collection), session

    @errors_in_status(1, status=0)
    def owners(self, request: gr.Request = None) -> str:
        """The admin's list: every collection, its owner and its shares."""
        rows = self.runtime.libraries.owners(user_name(request))
        if not rows:
            return "There are no collections yet."
        return "\n".join(f"- {shares_md(name, owner, shares)}" for name, owner, shares in rows)
