"""Stops work nobody waits for, and, under --auth, puts a login in front of the Gradio routes that lack
one. (Errors become status-line sentences in ui/status.py.)"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import gradio as gr

from rag.errors import RagError
from rag.interrupt import stop_when


class ClientGone(RagError):
    """No client waits for the request any more: it was cancelled, or its page was closed."""


def _client_check() -> Callable[[], None] | None:
    """For a call running as an event of Gradio's queue, a check that raises ClientGone once no client
    waits for it; None for a direct call (a test, a route outside the queue)."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    event = queue.event_ids_to_events.get(event_id) if queue is not None and event_id else None
    if event is None:
        return None

    def check() -> None:
        # A disconnected client marks the event not alive; /cancel ends its job, which leaves the
        # queue's active jobs at once (it stays among the queue's events until the callback returns).
        running = any(job is not None and any(e is event for e in job) for job in queue.active_jobs)
        if not (event.alive and running):
            raise ClientGone("Stopped: nobody is waiting for this request any more.")

    return check


class _WatchedProgress:
    """A callback's gr.Progress that runs the client check before each report."""

    def __init__(self, progress: gr.Progress, check: Callable[[], None]):
        self._progress, self._check = progress, check

    def __call__(self, *args, **kwargs):
        self._check()
        return self._progress(*args, **kwargs)

    def tqdm(self, *args, **kwargs):
        self._check()
        return self._progress.tqdm(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._progress, name)


def _watch_progress(args: tuple, kwargs: dict, check: Callable[[], None] | None) -> tuple[tuple, dict]:
    if check is None:
        return args, kwargs

    def watched(value):
        return _WatchedProgress(value, check) if isinstance(value, gr.Progress) else value

    return tuple(watched(a) for a in args), {k: watched(v) for k, v in kwargs.items()}


def watched(fn):
    """`fn` (a plain or generator callback) with work nobody waits for stopped.

    Gradio 6.31 ends a generator callback at its next yield once its client cancels or leaves, but
    runs a plain callback in its thread to the end, and a generator between two yields (a map-reduce
    summary) likewise. So while the callback runs, the client check is installed for
    `rag.interrupt.checkpoint()` (between sources, embedding groups, map calls and streamed pieces)
    and runs before each gr.Progress report. Errors pass through to the caller's own handling.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            check = _client_check()
            args, kwargs = _watch_progress(args, kwargs, check)
            steps = fn(*args, **kwargs)
            try:
                while True:
                    with stop_when(check):  # set and reset within one resumption: each runs in its own context
                        try:
                            value = next(steps)
                        except StopIteration:
                            return
                    yield value
            finally:
                steps.close()

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        check = _client_check()
        args, kwargs = _watch_progress(args, kwargs, check)
        with stop_when(check):
            return fn(*args, **kwargs)

    return wrapper


# Gradio 6.31 serves these without its login check. With a session hash or event id they cancel,
# close or feed another user's running event, and /heartbeat holds a connection open per call, so
# under --auth they answer only a logged-in client. (/startup-events is left open: Blocks.launch
# calls it without a cookie, and after that first call it does nothing.)
SESSION_ROUTES = ("/gradio_api/cancel", "/gradio_api/heartbeat/", "/gradio_api/stream/", "/gradio_api/reset")


def _is_session_route(path: str) -> bool:
    path = "/" + path.lstrip("/")
    return any(path == route.rstrip("/") or path.startswith(route.rstrip("/") + "/") for route in SESSION_ROUTES)


class LoginRequired:
    """ASGI middleware: under --auth, Gradio's unguarded session routes refuse a client without a login."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _is_session_route(scope.get("path", "")):
            server = scope.get("app")  # Gradio's App, which Starlette puts in the scope
            if getattr(server, "auth", None) is not None and not _logged_in(server, scope):
                from starlette.responses import JSONResponse

                refusal = JSONResponse({"detail": {"error": "Not authenticated"}}, status_code=401)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _logged_in(server, scope) -> bool:
    """The same test Gradio's own login check makes: a cookie holding a token it issued at /login."""
    from starlette.requests import HTTPConnection

    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{server.cookie_id}") or cookies.get(f"access-token-unsecure-{server.cookie_id}")
    return token is not None and token in server.tokens


def launch_options() -> dict:
    """Keyword arguments for `Blocks.launch` that put LoginRequired in front of Gradio's routes."""
    from starlette.middleware import Middleware

    return {"app_kwargs": {"middleware": [Middleware(LoginRequired)]}}
