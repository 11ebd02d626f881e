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

BACKENDS = ["llamacpp", "gpt4all"]  # rag.generators.available_backends(), without importing it at start-up


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
        from rag.generators import generator_class
        from rag.prompts import Prompts

        generator_class(backend)  # unknown names fail with the list of backends
        template = (template or "").strip()
        if template:
            Prompts(qa=template).check()
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

    # -- chat --------------------------------------------------------------------------------------

    @user_errors
    def chat(self, question: str, session: Session):
        """Condense a follow-up, retrieve, prompt and stream the answer, showing each step's output."""
        from rag.chains import ChatChain

        question = check_query(question, "question")
        coll = self.runtime.existing_collection(session.collection)
        chat = session.chat
        history = [(t.question, t.answer) for t in session.turns]
        shown = _messages(session.turns) + [{"role": "user", "content": fmt.escape_markdown(question)}]
        blank = ("", "", "", "")
        yield shown, self._loading_note(chat.backend), *blank, session
        generator = self.runtime.generator(chat)
        chain = ChatChain(coll, generator, k=chat.k, mode=chat.mode, prompts=_prompts(chat),
                          max_tokens=chat.max_tokens)
        step = "Rewriting the follow-up as a standalone question, then retrieving…" if history else "Retrieving…"
        yield shown, step, *blank, session
        answer = chain.ask(question, history)
        ready = answer.prepared  # the standalone question, sources and prompt, shown before the answer
        steps = (_standalone_md(ready), ready.prompt,
                 fmt.token_usage_md(ready.prompt_tokens, generator.context_size, 0), "")
        yield shown, f"Retrieved **{len(ready.sources)}** chunks; answering with **{chat.backend}**…", *steps, session
        text = ""
        for piece in answer:
            text += piece
            reply = {"role": "assistant", "content": fmt.escape_markdown(text)}
            yield shown + [reply], f"Answering with **{chat.backend}**…", *steps, session
        result = answer.result
        session.turns.append(Turn(question, result.standalone_question, result.answer, result.sources))
        yield (_messages(session.turns), _done_note(chat.backend, result), _standalone_md(result),
               result.prompt, fmt.token_usage_md(result.prompt_tokens, generator.context_size,
                                                 result.completion_tokens),
               _timings_md(result), session)

    def _loading_note(self, backend: str) -> str:
        if self.runtime.is_loaded(backend):
            return f"Preparing **{backend}**…"
        return f"Loading the **{backend}** model (first use; this takes a few seconds)…"

    # -- summarize ---------------------------------------------------------------------------------

    @user_errors
    def summarize(self, query: str, sources: list[str], session: Session):
        """Summarise what a query retrieves, or the chosen documents; the summary streams."""
        from rag.chains import SummarizeChain

        coll = self.runtime.existing_collection(session.collection)
        query = (query or "").strip()
        if not query and not sources:
            raise RagError("Type a query, or choose one or more documents, to summarise.")
        if query:
            query = check_query(query)
        chat = session.chat
        yield self._loading_note(chat.backend), "", ""
        generator = self.runtime.generator(chat)
        chain = SummarizeChain(coll, generator, k=chat.k, mode=chat.mode, max_tokens=chat.max_tokens)
        documents = None
        if not query:
            documents = []
            for source in sources:
                doc = coll.document(source)
                documents.append((doc.title or doc.source, doc.text))
        yield "Reading the sources (long ones are summarised piece by piece first)…", "", ""
        answer = chain.summarize(query or None, documents=documents)
        ready = answer.prepared  # which chunks went in and the strategy, shown before the summary
        inputs = fmt.sources_md(ready.sources)
        status = (f"Strategy **{(ready.strategy or '').replace('_', '-')}** · summarising with "
                  f"**{chat.backend}**…")
        yield status, inputs, ""
        text = ""
        for piece in answer:
            text += piece
            yield status, inputs, fmt.escape_markdown(text)
        result = answer.result
        info = (
            f"Strategy **{(result.strategy or '').replace('_', '-')}** · **{len(result.sources)}** inputs · "
            + fmt.token_usage_md(result.prompt_tokens, generator.context_size, result.completion_tokens)
            + " · " + _timings_md(result)
        )
        yield info, fmt.sources_md(result.sources), fmt.escape_markdown(result.answer)

    # -- compare -----------------------------------------------------------------------------------

    @user_errors
    def compare(self, question: str, session: Session):
        """The same retrieved chunks answered by each backend in turn, with timings."""
        from rag.chains import QAChain

        question = check_query(question, "question")
        coll = self.runtime.existing_collection(session.collection)
        chat = session.chat
        hits = coll.search(question, k=chat.k, mode=chat.mode)
        context = f"Both backends answer from the same **{len(hits)}** retrieved chunks:\n\n" + fmt.sources_md(hits)
        cells = ["", ""] * len(BACKENDS)
        yield context, *cells
        for i, backend in enumerate(BACKENDS):
            cells[2 * i + 1] = self._loading_note(backend)
            yield context, *cells
            try:
                generator = self.runtime.generator(chat, backend=backend)
                chain = QAChain(lambda *_a, **_k: hits, generator, k=chat.k, mode=chat.mode,
                                prompts=_prompts(chat), max_tokens=chat.max_tokens)
                answer = chain.ask(question)
                text = ""
                for piece in answer:
                    text += piece
                    cells[2 * i] = fmt.escape_markdown(text)
                    yield context, *cells
                result = answer.result
                cells[2 * i] = fmt.escape_markdown(result.answer)
                cells[2 * i + 1] = _timings_md(result) + " · " + fmt.token_usage_md(
                    result.prompt_tokens, generator.context_size, result.completion_tokens)
            except RagError as exc:  # one backend failing must not hide the other's answer
                cells[2 * i] = f"**{backend} could not answer:** {fmt.escape_markdown(exc)}"
                cells[2 * i + 1] = ""
            yield context, *cells

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



def _prompts(chat: ChatSettings):
    from rag.prompts import Prompts

    return Prompts(qa=chat.template) if chat.template else None


def _messages(turns: list[Turn]) -> list[dict]:
    """The Chatbot's messages for finished turns: question, answer, and a collapsed list of sources."""
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": fmt.escape_markdown(turn.question)})
        if turn.standalone and turn.standalone != turn.question:
            messages.append({"role": "assistant", "content": fmt.escape_markdown(turn.standalone),
                             "metadata": {"title": "Standalone question", "status": "done"}})
        messages.append({"role": "assistant", "content": fmt.escape_markdown(turn.answer) or "_(no answer)_"})
        messages.append({"role": "assistant", "content": fmt.sources_md(turn.sources),
                         "metadata": {"title": f"Sources ({len(turn.sources)})", "status": "done"}})
    return messages


def _standalone_md(result) -> str:
    if result.standalone_question and result.standalone_question != result.question:
        return f"**Standalone question:** {fmt.escape_markdown(result.standalone_question)}"
    return f"**Question:** {fmt.escape_markdown(result.question)} _(first question: used as it is)_"


def _timings_md(result) -> str:
    t = result.timings or {}
    return fmt.timings_md(t.get("ttft_s"), t.get("gen_tps") or None, t.get("total_s"))


def _done_note(backend: str, result) -> str:
    return (f"Answered by **{backend}** from **{len(result.sources)}** of {len(result.retrieved)} retrieved "
            f"chunks in {fmt.fmt_seconds((result.timings or {}).get('total_s'))}.")
