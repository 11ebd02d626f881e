"""Turns errors in a callback into messages in the page, so the app keeps serving."""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from rag.errors import RagError

log = logging.getLogger("local-rag.ui")


def _as_gradio_error(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, RagError):
        return gr.Error(str(exc), print_exception=False)
    log.exception("Unexpected error in a callback")
    return gr.Error(f"Something went wrong ({exc.__class__.__name__}: {exc}). The app is still running.")


def user_errors(fn):
    """Show `RagError` (and anything unexpected) as a readable gr.Error, for plain and generator callbacks."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every failure must reach the user as a message
                raise _as_gradio_error(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise _as_gradio_error(exc) from exc

    return wrapper
