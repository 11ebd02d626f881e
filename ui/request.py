"""Who is asking: the logged-in user of a request, and the key of its browser session's work in one step."""

from __future__ import annotations

import gradio as gr


def job_key(request: gr.Request | None, step: str) -> str:
    """Stop in one step stops that step's work in this browser session only."""
    return f"{getattr(request, 'session_hash', None) or ''}:{step}"


def user_name(request: gr.Request | None) -> str:
    """The logged-in user under --auth; everyone shares '' otherwise."""
    return getattr(request, "username", None) or ""
