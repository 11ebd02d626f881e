"""Steps 3 to 5, Summarize, Chat and Compare: callbacks that run a chain and show its intermediate output."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import gradio as gr

from rag import ui_format as fmt
from rag.errors import RagError
from ui.guard import user_errors
from ui.runtime import Runtime
from ui.search import check_query
from ui.state import ChatSettings, Session, Turn

BACKENDS = ["llamacpp", "gpt4all"]


class Generation:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    # -- settings ----------------------------------------------------------------------------------

    def template_hint(self) -> str:
        return "Use {context} and {question}, e.g.\nAnswer from the context.\n\n{context}\n\nQuestion: {question}"

    @user_errors
    def apply_settings(self, backend, model, temperature, max_tokens, n_ctx, k, mode, template, session: Session):
        """Validate the settings panel and keep it in this user's session."""
        self.runtime.require_writable("changing settings")
        if backend not in BACKENDS:
            raise RagError(f"Unknown backend {backend!r}; available: {', '.join(BACKENDS)}.")
        template = (template or "").strip()
        if template and ("{context}" not in template or "{question}" not in template):
            raise RagError("A prompt template must contain both {context} and {question}.")
        chosen = ChatSettings(
            backend=backend, model=(model or "").strip(), temperature=float(temperature),
            max_tokens=int(max_tokens), n_ctx=int(n_ctx), k=int(k), mode=mode, template=template,
        )
        if int(max_tokens) >= int(n_ctx):
            raise RagError(f"Max new tokens ({int(max_tokens)}) must be smaller than the context size ({int(n_ctx)}).")
        self._check_model(chosen)
        session.chat = chosen
        return _settings_line(chosen), session

    def _check_model(self, chosen: ChatSettings) -> None:
        """Fail now, with the names that exist, when the model can't be found (nothing is loaded)."""
        if chosen.model:
            from rag.models import resolve_model

            resolve_model(chosen.model, self.runtime.settings.models_dir)

    # -- chat bookkeeping --------------------------------------------------------------------------

    def clear(self, session: Session):
        session.turns = []
        return [], "", "", "", "", "", session

    @user_errors
    def export(self, session: Session):
        """The conversation with its sources as a Markdown file to download."""
        if not session.turns:
            raise RagError("Nothing to export yet: ask a question first.")
        text = fmt.export_markdown([dataclasses.asdict(t) for t in session.turns], session.collection)
        path = Path(tempfile.mkdtemp(prefix="local-rag-")) / "conversation.md"
        path.write_text(text, encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    @user_errors
    def document_choices(self, session: Session):
        if session.collection not in self.runtime.collection_names():
            return gr.update(choices=[], value=[])
        documents = self.runtime.collection(session.collection).documents()
        return gr.update(choices=[(d.title or d.source, d.source) for d in documents], value=[])


def _settings_line(chosen: ChatSettings) -> str:
    return (
        f"Applied: **{chosen.backend}** · model **{fmt.escape_markdown(chosen.model or 'default')}** · "
        f"temperature {chosen.temperature:g} · max {chosen.max_tokens} tokens · context {chosen.n_ctx} · "
        f"k={chosen.k} · {chosen.mode}"
    )


def _pending(*_args, **_kwargs):
    raise gr.Error("Generation is not wired in yet.")


Generation.chat = Generation.summarize = Generation.compare = staticmethod(_pending)
