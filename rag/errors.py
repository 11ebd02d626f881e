"""The one error type a user sees: a sentence that says what happened and what to do."""


class RagError(Exception):
    """An error caused by input or environment, with a message a user can act on."""
