"""Stopping work nobody waits for: long loops call `checkpoint()`, and whoever runs them (the app,
for a request whose client has gone) installs the check with `stop_when`.

Without an installed check, `checkpoint()` does nothing, so the CLI and tests run as before.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

_check: ContextVar[Callable[[], None] | None] = ContextVar("rag_interrupt_check", default=None)


def checkpoint() -> None:
    """Raise (whatever the installed check raises) if the work should stop; otherwise return at once."""
    check = _check.get()
    if check is not None:
        check()


@contextmanager
def stop_when(check: Callable[[], None] | None) -> Iterator[None]:
    """Run the block with `check` called at every checkpoint (None: no check)."""
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


@contextmanager
def stop_also_when(check: Callable[[], None]) -> Iterator[None]:
    """Run the block with `check` called at every checkpoint, before any check already installed."""
    outer = _check.get()

    def both() -> None:
        check()
        if outer is not None:
            outer()

    with stop_when(both):
        yield
