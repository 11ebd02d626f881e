"""Steps 3 to 5, Summarize, Chat and Compare: callbacks that run a chain and show its intermediate output.

Errors become one sentence in the step's status line (`ui.status`); Stop ends the model's work
through the session's job (`ui.jobs`) and the status then says what was kept.
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from rag.chains.path import AnswerPath, Scope
from rag.errors import RagError
from ui import formatting as fmt
from ui.chat_format import (answer_md, chat_messages, compare_note, done_note, partial_quote, sources_md,
                            standalone_md, style_name)
from ui.conversation_export import export_markdown
from ui.escaping import display_source, escape_markdown, one_line
from ui.jobs import StoppableGenerator, Stopped
from ui.request import job_key, user_name
from ui.passage_viewer import VIEWER_EMPTY
from ui.runtime import Runtime
from ui.search import check_query
from ui.state import ChatSettings, Session, Turn
from ui.status import errors_in_status
from ui.summary_format import summary_info_md, summary_md

CHAT_OUTPUTS = 7  # chatbot, status, standalone, prompt, usage, timings, session


class Generation:
    def __init__(self, runtime: Runtime, backends: list[str] | None = None):
        self.runtime = runtime
        self.backends = backends or ["llamacpp", "gpt4all"]  # build_app passes available_backends()
        # Compare has two outputs per backend, so its error wrapper is built once the list is known.
        self.compare = errors_in_status(1 + 2 * len(self.backends), status=0)(self._compare)

    # -- jobs --------------------------------------------------------------------------------------

    def start(self, step: str):
        """A callback for the moment a button is pressed, before the work waits in the queue."""

        def start(request: gr.Request):
            self.runtime.jobs.start(job_key(request, step))

        return start

    def stop(self, step: str):
        def stop(request: gr.Request):
            self.runtime.jobs.stop(job_key(request, step))

        return stop

    def end_session(self, request: gr.Request = None):
        """The tab closed or reloaded: its answers, summaries and comparisons stop."""
        self.runtime.jobs.end_session(job_key(request, ""))

    def take_question(self, question: str, request: gr.Request = None):
        """Send: empty the box at once and register the job, so Stop works while the answer is queued. While
        an answer is still being written the question stays in the box, and the status says why: a second
        press would be lost behind the first (None tells `chat` that nothing was taken)."""
        key = job_key(request, "chat")
        if self.runtime.jobs.busy(key):
            return (gr.skip(), None, "The answer above is still being written; wait for it or press Stop, then "
                    "send again. Your question stays in the box.")
        self.runtime.jobs.start(key)
        return "", question, gr.skip()

    def viewer_for_question(self, question: str):
        """The passage viewer once a question is sent: emptied, since the new answer has its own sources
        (an empty question changes nothing on screen)."""
        return VIEWER_EMPTY if (question or "").strip() else gr.skip()

    def _job(self, request, step: str):
        return self.runtime.jobs.current(job_key(request, step))

    # -- chat --------------------------------------------------------------------------------------

    @errors_in_status(CHAT_OUTPUTS, status=1)
    def chat(self, question: str | None, session: Session, request: gr.Request = None):
        """Condense a follow-up, retrieve, prompt and stream the answer, showing each step's output."""
        if question is None:  # Send was refused while an answer was being written (take_question)
            yield (gr.skip(),) * CHAT_OUTPUTS
            return
        job = self._job(request, "chat")
        try:
            yield from self._chat(job, question, session, request)
        finally:
            job.finish()

    def _chat(self, job, question: str, session: Session, request):
        question = check_query(question, "question")
        coll = self.runtime.existing_collection(session.collection, user_name(request))
        chat = session.chat
        skip = gr.skip()
        if job.stopped:
            yield skip, "Stopped before the question was read; the conversation is as it was.", *[skip] * 5
            return
        # A stopped answer is cut short: its question stays in the history, its partial text does not.
        history = [(t.question, "" if t.stopped else t.answer, t.standalone) for t in session.turns]
        shown = chat_messages(session.turns) + [{"role": "user", "content": escape_markdown(question)}]
        blank = ("", "", "", "")
        yield shown, self._loading_note(chat), *blank, session
        generator = StoppableGenerator(self.runtime.generator(chat), job)
        chain = AnswerPath(coll, generator, chat, sources=session.sources).chat()
        step = "Rewriting the follow-up as a standalone question, then retrieving…" if history else "Retrieving…"
        yield shown, step, *blank, session
        try:
            answer = chain.ask(question, history)
        except Stopped:
            yield (chat_messages(session.turns), "Stopped while rewriting the follow-up; nothing was answered "
                   "and the conversation is as it was.", *blank, session)
            return
        ready = answer.prepared  # the standalone question, sources and prompt, shown before the answer
        steps = (standalone_md(ready), ready.prompt,
                 fmt.token_usage_md(ready.prompt_tokens, generator.context_size, 0, ready.prompt_counted_by), "")
        yield shown, f"Retrieved **{len(ready.sources)}** chunks; answering with **{chat.backend}**…", *steps, session
        text, pieces = "", 0
        try:
            for piece in answer:
                text += piece
                pieces += 1
                shown_text = partial_quote(text) if ready.style == "quote" else text
                reply = {"role": "assistant", "content": answer_md(shown_text, ready.sources, len(session.turns))}
                yield shown + [reply], f"Answering with **{chat.backend}**…", *steps, session
        except Stopped:
            partial = partial_quote(text) if ready.style == "quote" and text.strip() else text.strip()
            session.turns.append(Turn(question, ready.standalone_question, partial, ready.sources, stopped=True,
                                      style=ready.style, notes=list(ready.notes)))
            self._save(session, request)
            kept = (f"Stopped after **{pieces}** tokens; the partial answer and its sources are kept" if pieces else
                    "Stopped before the first token; the question and its sources are kept")
            yield (chat_messages(session.turns), kept + " in the conversation.", steps[0], steps[1],
                   fmt.token_usage_md(ready.prompt_tokens, generator.context_size, pieces,
                                      ready.prompt_counted_by), "", session)
            return
        result = answer.result
        session.turns.append(Turn(question, result.standalone_question, result.answer, result.sources,
                                  evidence=list(getattr(result, "evidence", None) or []),
                                  abstained=bool(getattr(result, "abstained", False)),
                                  style=result.style, notes=list(result.notes)))
        self._save(session, request)
        yield (chat_messages(session.turns), done_note(chat.backend, result), standalone_md(result),
               result.prompt, fmt.token_usage_md(result.prompt_tokens, generator.context_size,
                                                 result.completion_tokens, result.prompt_counted_by),
               fmt.result_timings_md(result), session)

    def _save(self, session: Session, request) -> None:
        """Keep the conversation on disk; a failure to save is said, the answer stays on screen."""
        turns = [dataclasses.asdict(t) for t in session.turns]
        session.conversation_id = self.runtime.conversations.save(
            user_name(request), session.collection, turns, session.conversation_id)

    def _loading_note(self, chat: ChatSettings, backend: str | None = None) -> str:
        """What the reader waits for before the first token: the model loading, the first time, and how long."""
        backend = backend or chat.backend
        if self.runtime.holds(chat, backend):
            return f"Preparing **{backend}**…"
        seconds = self.runtime.load_seconds(chat, backend)
        about = f", about {seconds} s" if seconds else ""
        return f"Loading the **{backend}** model (first answer only{about})…"

    # -- summarize ---------------------------------------------------------------------------------

    @errors_in_status(3, status=0)
    def summarize(self, query: str, sources: list[str], session: Session, request: gr.Request = None):
        """Summarise what a query retrieves, or the chosen documents; the summary streams."""
        job = self._job(request, "summarize")
        coll = self.runtime.existing_collection(session.collection, user_name(request))
        query = (query or "").strip()
        if not query and not sources:
            raise RagError("Type a query, or choose one or more of the ticked documents, to summarise.")
        unticked = [s for s in sources or [] if session.sources is not None and s not in session.sources]
        if not query and unticked:
            raise RagError(f"{display_source(unticked[0])} is not ticked in Sources; tick it there, or choose "
                           "another document.")
        if query:
            query = check_query(query)
        chat = session.chat
        skip = gr.skip()
        yield self._loading_note(chat), skip, skip
        generator = StoppableGenerator(self.runtime.generator(chat), job)
        chain = AnswerPath(coll, generator, chat, sources=session.sources).summary()
        documents = None if query else [coll.document(source) for source in sources]
        yield ("Reading the sources (of a long one, its most central passages)…" if query else
               "Reading the sources, part by part…"), "", ""
        try:
            answer = chain.summarize(query or None, documents=documents)
        except Stopped:
            yield "Stopped while reading the sources; no summary was written.", skip, skip
            return
        ready = answer.prepared  # which chunks went in, the strategy and the parts, shown before the summary
        inputs = sources_md(ready.sources)
        strategy = (ready.strategy or "").replace("_", "-")
        doing = (f"quoting the most central sentence of each of its **{len(ready.outline)}** parts"
                 if ready.style == "quote" and ready.strategy == "parts" else f"summarising with **{chat.backend}**")
        status = f"Strategy **{strategy}** · {doing}…"
        yield status, inputs, ""
        text, pieces, stream = "", 0, iter(answer)
        try:
            for piece in stream:
                job.check()  # a quoted part calls no model, whose stream would see the Stop
                text += piece
                pieces += 1
                yield status, inputs, summary_md(ready, text)
        except Stopped:
            stream.close()  # seen here first: the model's work ends now, and what was written is kept
            done = (f"**{len(ready.parts)}** of {len(ready.outline)} parts" if ready.parts else f"**{pieces}** tokens")
            yield (f"Stopped after {done}; the partial summary below is kept." if pieces else
                   "Stopped before the first token; nothing was summarised.", inputs, summary_md(ready, text))
            return
        result = answer.result
        yield (summary_info_md(result, generator.context_size), sources_md(result.sources),
               summary_md(result))

    # -- compare -----------------------------------------------------------------------------------

    def _compare(self, question: str, session: Session, request: gr.Request = None):
        """The same retrieved chunks answered by each backend in turn, with timings."""
        job = self._job(request, "compare")
        question = check_query(question, "question")
        coll = self.runtime.existing_collection(session.collection, user_name(request))
        chat = session.chat
        hits = Scope(coll, session.sources).search(question, k=chat.k, mode=chat.mode)
        # Every backend answers in the style the person's own model answers in, so the answers compare.
        style = self.runtime.answer_style(chat)
        chat = dataclasses.replace(chat, answer_style=style)
        context = (f"Each backend answers from the same **{len(hits)}** retrieved chunks, in the same answer "
                   f"style (**{style_name(style)}**):\n\n" + sources_md(hits))
        cells = ["", ""] * len(self.backends)
        yield context, *cells
        for i, backend in enumerate(self.backends):
            if job.stopped:
                cells[2 * i + 1] = "Stopped before this backend answered."
                continue
            cells[2 * i + 1] = self._loading_note(chat, backend)
            yield context, *cells
            text = ""
            try:
                generator = StoppableGenerator(self.runtime.generator(chat, backend=backend), job)
                chain = AnswerPath(coll, generator, chat, sources=session.sources).qa()
                answer = chain.ask(question)
                cells[2 * i + 1] = f"Answering with **{backend}**…"
                for piece in answer:
                    text += piece
                    cells[2 * i] = escape_markdown(partial_quote(text) if style == "quote" else text)
                    yield context, *cells
                result = answer.result
                cells[2 * i] = escape_markdown(result.answer)
                cells[2 * i + 1] = compare_note(result, generator.context_size)
            except Stopped:
                cells[2 * i + 1] = "Stopped; the partial answer above is kept."
            except RagError as exc:  # one backend failing must not hide the other's answer
                cells[2 * i] = f"**{backend} could not answer:** {escape_markdown(exc)}"
                cells[2 * i + 1] = ""
            yield context, *cells

    # -- the conversation --------------------------------------------------------------------------

    def clear(self, session: Session, request: gr.Request = None):
        """Start a new conversation: the running answer stops, the saved one stays in the list."""
        self.runtime.jobs.stop(job_key(request, "chat"))
        session.turns, session.conversation_id = [], None
        return [], "New conversation. The previous one is kept in the list of conversations.", "", "", "", "", session

    @errors_in_status(2, status=1)
    def export(self, session: Session, request: gr.Request = None):
        """The conversation on screen, stopped answers included, as a Markdown file to download."""
        self.runtime.check_access(session.collection, user_name(request))  # its passages are the collection's
        if not session.turns:
            raise RagError("Nothing to export yet: ask a question first.")
        text = export_markdown([dataclasses.asdict(t) for t in session.turns], session.collection)
        path = self.runtime.export_path(session)
        path.write_text(text, encoding="utf-8")
        return gr.update(value=str(path), visible=True), f"Exported **{len(session.turns)}** turns as Markdown."

    def source_choices(self, session: Session, request: gr.Request = None):
        """The sources panel: a box per document, ticked when Chat, Summarize and Compare read it."""
        coll = self.runtime.visible(session.collection, user_name(request))
        if coll is None:
            return gr.update(choices=[], value=[])
        documents = coll.documents()
        sources = [d.source for d in documents]
        ticked = sources if session.sources is None else [s for s in sources if s in session.sources]
        return gr.update(choices=[(one_line(d.title or display_source(d.source), 80), d.source)
                                  for d in documents], value=ticked)

    def choose_sources(self, ticked: list[str], session: Session, request: gr.Request = None):
        """Keep which documents are read; all of them (None) keeps later ingests included."""
        coll = self.runtime.visible(session.collection, user_name(request))
        documents = {d.source for d in coll.documents()} if coll is not None else set()
        ticked = [s for s in (ticked or []) if s in documents]
        session.sources = None if set(ticked) == documents else ticked
        note = ("Chat, Summarize and Compare read every document." if session.sources is None else
                f"Chat, Summarize and Compare read **{len(ticked)}** of {len(documents)} documents.")
        return note, session

    def document_choices(self, session: Session, chosen: list[str] | None = None, request: gr.Request = None):
        """Summarize's documents: those ticked in Sources, keeping the ones still chosen there."""
        coll = self.runtime.visible(session.collection, user_name(request))
        if coll is None:
            return gr.update(choices=[], value=[])
        documents = [d for d in coll.documents()
                     if session.sources is None or d.source in session.sources]
        offered = {d.source for d in documents}
        kept = [c for c in chosen or [] if c in offered]
        if not kept and len(documents) == 1:  # one document to read: chosen already, so Summarize just runs
            kept = [documents[0].source]
        return gr.update(choices=[(one_line(d.title or d.source), d.source) for d in documents], value=kept)
