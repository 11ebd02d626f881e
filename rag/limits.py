"""Every bound on what a user may ask for, in one place: the settings, the collection, the chains,
the CLI and the app read them from here, and the README lists them.

A value outside its bound is refused with one sentence naming the setting and the range; nothing
is clamped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.errors import RagError


@dataclass(frozen=True)
class Bound:
    """The inclusive range a numeric setting must lie in."""

    low: float
    high: float
    label: str
    integer: bool = True

    def check(self, value, name: str | None = None):
        """`value` if it lies in the range, else RagError naming the setting `name` or the variable/flag."""
        if name and name.startswith(("RAG_", "--")):
            shown = f"{name}="
        else:
            shown = self.label[0].upper() + self.label[1:] + (f" ({name}) " if name else " ")
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            noun = "a whole number" if self.integer else "a number"
            raise RagError(f"{shown.rstrip(' =')} must be {noun} from {self.low:g} to {self.high:g}; got {value!r}.")
        if value != value or not self.low <= value <= self.high:  # value != value: NaN
            given = value if isinstance(value, int) else f"{value:g}"
            raise RagError(f"{shown}{given} is outside the allowed range {self.low:g} to {self.high:g}; "
                           "choose a value in it.")
        return value


# Settings fields with their ranges. Wide enough for every real use (the retrieval benchmark reads
# 100 chunks per query), narrow enough that no single request can exhaust the machine.
SETTINGS = {
    "k": Bound(1, 100, "chunks to retrieve"),
    "max_tokens": Bound(1, 4096, "max tokens"),
    "n_ctx": Bound(128, 16384, "context size"),
    "chunk_size": Bound(10, 20_000, "chunk size"),
    "chunk_overlap": Bound(0, 10_000, "chunk overlap"),
    "embedding_batch_size": Bound(1, 1024, "embedding batch size"),
    "fetch_timeout": Bound(0.1, 300, "fetch timeout", integer=False),
    "max_fetch_bytes": Bound(1, 512 * 1024 * 1024, "fetch size limit"),
    "max_redirects": Bound(0, 20, "redirect limit"),
    "n_threads": Bound(1, 4096, "threads"),
    "n_batch": Bound(1, 8192, "batch size"),
    "n_gpu_layers": Bound(-1, 100_000, "GPU layers"),
    "temperature": Bound(0, 2, "temperature", integer=False),
    "top_p": Bound(0, 1, "top-p", integer=False),
}
# Overlap above half the chunk size multiplies the number of chunks a document makes.
MAX_OVERLAP_FRACTION = 0.5

# Inputs, per request.
# A question, search query or summary query: one a person typed is refused over it (check_text: the app,
# Collection.search, a summary's query); one a chain composed (a follow-up given its subject) or another
# caller passed is cut to it, with a note (QAChain._fit_question, which also fits it to the context).
MAX_QUESTION_CHARS = 2000
MAX_URLS = 20                   # URLs in one ingest (each may take up to the fetch timeout)
MAX_SOURCES = 100               # URLs, files and directories named in one ingest (a directory counts once)
MAX_UPLOADS = 20                # files uploaded to the app in one ingest
MAX_TEMPLATE_CHARS = 8000       # a custom prompt template

# The app's own flags.
PORT = Bound(1, 65535, "port (--port or RAG_PORT)")
UPLOAD_MB = Bound(1, 1024, "upload size limit in MB (--max-upload-mb or RAG_MAX_UPLOAD_MB)")


def check_count(what: str, count: int, limit: int, advice: str) -> None:
    """RagError when a request names more than `limit` items of `what`."""
    if count > limit:
        raise RagError(f"{count} {what} at once is over the limit of {limit}; {advice}")


def check_k(k) -> int:
    """`k`, the chunks to retrieve, if it is a whole number within SETTINGS["k"], else RagError."""
    return SETTINGS["k"].check(k, "k")


def check_text(what: str, text: str, limit: int = MAX_QUESTION_CHARS) -> str:
    """`text` if it is at most `limit` characters, else RagError."""
    if len(text) > limit:
        raise RagError(f"The {what} is {len(text):,} characters long; the limit is {limit:,}, so shorten it.")
    return text


def describe() -> str:
    """The limits in one paragraph, for `--help` and the README."""
    shown = ", ".join(f"{SETTINGS[name].label} {SETTINGS[name].low:g}-{SETTINGS[name].high:g}"
                      for name in ("k", "max_tokens", "n_ctx", "chunk_size"))
    return (f"Limits: {shown}, chunk overlap at most half the chunk size; questions and queries up to "
            f"{MAX_QUESTION_CHARS:,} characters; per ingest at most {MAX_URLS} URLs, {MAX_SOURCES} sources "
            f"and {MAX_UPLOADS} uploaded files; prompt templates up to {MAX_TEMPLATE_CHARS:,} characters. "
            "A value outside a limit is refused with a message, never silently changed.")


def check_reply_room(max_tokens: int, n_ctx: int) -> None:
    """A reply of `max_tokens` must leave room for a prompt in a context of `n_ctx` tokens."""
    if max_tokens >= n_ctx:
        raise RagError(f"Max new tokens ({max_tokens}) must be smaller than the context size ({n_ctx}).")
