"""Errors shown in the step's own status line, so what is on screen stays where it is.

Raising `gr.Error` from a callback replaces every output with an error badge until each is
dismissed. A callback wrapped here instead turns a `RagError` (or anything unexpected) into one
sentence in its status output and leaves every other output as it was (`gr.skip()`).
"""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from rag.errors import RagError
from ui.escaping import escape_markdown
from ui.guard import watched

log = logging.getLogger("local-rag.ui")


def error_line(exc: BaseException) -> str:
    """The sentence a status line shows for `exc`, escaped (a message may quote a title or a file name)."""
    if isinstance(exc, RagError):
        message = str(exc)
    else:
        log.exception("Unexpected error in a callback", exc_info=exc)
        message = f"Something went wrong ({exc.__class__.__name__}: {exc}). The app is still running."
    return f"⚠️ {escape_markdown(message)}"


def _failed(count: int, status: int, exc: BaseException):
    values = [gr.skip() for _ in range(count)]
    values[status] = error_line(exc)
    return values[0] if count == 1 else tuple(values)


def errors_in_status(count: int, status: int = 0):
    """Wrap a callback with `count` outputs: on failure, output `status` gets the sentence, the others stay."""

    def decorate(fn):
        run = watched(fn)  # work nobody waits for stops at rag's checkpoints
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                try:
                    yield from run(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - every failure must reach the user as a sentence
                    yield _failed(count, status, exc)

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                return _failed(count, status, exc)

        return wrapper

    return decorate
