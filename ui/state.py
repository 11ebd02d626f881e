"""Per-user state, kept in `gr.State` (one copy per browser session), never on a shared object."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.generators.base import GenerationParams
from rag.limits import MAX_QUESTION_CHARS, SETTINGS  # noqa: F401 - the limits have one source, rag.limits
from rag.settings import Settings

MAX_K = int(SETTINGS["k"].high)  # the most chunks Search, Chat, Summarize and Compare retrieve


@dataclass
class ChatSettings:
    """What a user chose in the settings panel; applied to their Summarize, Chat and Compare. It starts from
    the defaults of the settings and of sampling, which have their one home there."""

    backend: str = Settings.backend
    model: str = ""
    temperature: float = GenerationParams.temperature
    max_tokens: int = GenerationParams.max_tokens
    n_ctx: int = Settings.n_ctx
    k: int = Settings.k
    mode: str = Settings.mode
    template: str = ""
    answer_style: str = Settings.answer_style  # rag/quote.py: quote with small models, else the model writes
    system: str = ""  # the system prompt; empty: the model's default (rag.prompts.Prompts.for_model)


@dataclass
class Turn:
    """One question and answer, with what went into the answer."""

    question: str
    standalone: str = ""
    answer: str = ""
    sources: list[dict] = field(default_factory=list)
    stopped: bool = False  # Stop was pressed: `answer` is what had been written by then
    evidence: list[dict] = field(default_factory=list)  # sentences of the sources the answer rests on
    abstained: bool = False  # the model said the sources hold no answer
    style: str = "free"  # "quote": the answer is sentences of the sources, quoted, not the model's words
    notes: list[str] = field(default_factory=list)  # what the chain did: a quote, a citation added, a cut


@dataclass
class Session:
    collection: str = "default"
    chat: ChatSettings = field(default_factory=ChatSettings)
    turns: list[Turn] = field(default_factory=list)
    conversation_id: str | None = None  # the saved conversation the turns belong to
    sources: list[str] | None = None  # documents ticked in the sources panel; None = all of them
