"""The notebook's layout: one tab per step of the recipe, each showing that step's output."""

from __future__ import annotations

import gradio as gr

from rag.retrieval import MODES as SEARCH_MODES
from ui.conversations import Conversations
from ui.generation import Generation
from ui.ingest_tab import ingest_tab
from ui.library import Library
from ui.passage_viewer import VIEWER_EMPTY
from ui.runtime import Runtime
from ui.search import Search
from ui.settings_form import SETTINGS_KEY, SettingsForm, settings_panel
from ui.sharing import Sharing
from ui.state import MAX_K, ChatSettings, Session

# Every model call joins this group, so simultaneous users queue for the one model in memory.
MODEL_GROUP = "model"
MODES = sorted(SEARCH_MODES, key=lambda mode: mode != "hybrid")  # the default first (the Search tab's radios)
TABS = ("ingest", "search", "summarize", "chat", "compare")
TAB_KEY = "local-rag-notebook-tab"  # where assets/notebook.js keeps the last tab clicked
COLLECTION_KEY = "local-rag-notebook-collection"  # the collection this browser chose last


_LOGO = (
    '<svg class="logo" width="30" height="30" viewBox="0 0 64 64" aria-hidden="true">'
    '<rect x="2" y="2" width="60" height="60" rx="14" fill="#4f46e5"/>'
    '<rect x="16" y="14" width="26" height="34" rx="3" fill="#fff"/>'
    '<rect x="21" y="21" width="16" height="3" fill="#4f46e5"/><rect x="21" y="28" width="16" height="3" fill="#4f46e5"/>'
    '<rect x="21" y="35" width="10" height="3" fill="#4f46e5"/>'
    '<circle cx="44" cy="43" r="8" fill="none" stroke="#fde68a" stroke-width="4"/>'
    '<line x1="50" y1="49" x2="56" y2="55" stroke="#fde68a" stroke-width="4" stroke-linecap="round"/></svg>'
)


def _header(runtime: Runtime) -> str:
    badge = '<span class="badge readonly">read-only demo</span>' if runtime.read_only else ""
    return (
        f'<div id="header">{_LOGO}<h1>local-rag notebook</h1>'
        '<span class="tagline">Chat with your documents — privately, on this machine.</span>'
        f"{badge}</div>"
    )


def _initial_session(runtime: Runtime) -> Session:
    s = runtime.settings
    chat = ChatSettings(
        backend=s.backend, model=s.model, temperature=s.temperature, max_tokens=s.max_tokens,
        n_ctx=s.n_ctx, k=s.k, mode=s.mode, answer_style=s.answer_style,
    )
    return Session(collection=s.collection, chat=chat)


def landing_tab(last: str | None, session: Session):
    """The tab a (re)loaded page opens: the one the person was on, else Chat when a conversation is open."""
    if last in TABS:
        return gr.Tabs(selected=last)
    return gr.Tabs(selected="chat") if session.turns else gr.skip()


def build_app(runtime: Runtime) -> gr.Blocks:
    """The Blocks app over `runtime`; nothing is loaded until a user asks for it."""
    backends = runtime.backends()
    library, search, gen = Library(runtime), Search(runtime), Generation(runtime, backends)
    form = SettingsForm(runtime)
    convs = Conversations(runtime)
    writable = not runtime.read_only
    with gr.Blocks(title="local-rag notebook", analytics_enabled=False) as demo:
        session = gr.State(_initial_session(runtime))
        gr.HTML(_header(runtime))
        with gr.Row(equal_height=True):
            collection = gr.Dropdown(
                label="Collection", choices=[runtime.settings.collection], value=runtime.settings.collection,
                allow_custom_value=writable, scale=1, elem_id="collection",
                # Tab, not Enter: Enter takes the first listed name that contains what was typed (Gradio's filter).
                info="Pick one" + (", or type a new name and press Tab; it is made on the first ingest."
                                   if writable else "."),
            )
            docs_note = gr.Markdown(elem_classes=["step-out"], elem_id="docs-note")
        with gr.Row(equal_height=True):
            model_line = gr.Markdown(form.model_line(_initial_session(runtime).chat), elem_id="model-in-use")
            models_button = gr.Button("📦 Models", size="sm", scale=0, min_width=110, elem_id="open-models")
        tiny_note = gr.Markdown(visible=False, elem_id="tiny-model-note", elem_classes=["step-out"])
        panel = settings_panel(form, session, writable, backends, model_line, tiny_note, models_button)
        model = panel["model"]
        with gr.Accordion("📚 Sources that Summarize, Chat and Compare read", open=False, elem_id="sources-panel"):
            sources = gr.CheckboxGroup(show_label=False, choices=[], elem_id="sources")
            sources_note = gr.Markdown(elem_id="sources-note")
        # The tab the person last clicked, kept in this browser by assets/notebook.js, read on each load.
        last_tab = gr.Textbox(visible=False, elem_id="last-tab")
        kept_settings = gr.Textbox(visible=False, elem_id="kept-settings")
        kept_collection = gr.Textbox(visible=False, elem_id="kept-collection")

        with gr.Tabs(overflow_behavior="wrap") as tabs:
            ingest = ingest_tab(library, session, collection, docs_note, writable,
                                     Sharing(runtime) if runtime.access.enabled else None)
            _search_tab(search, session, runtime)
            summary_docs = _summarize_tab(gen, session)
            chat = _chat_tab(gen, convs, library, session, writable, docs_note, ingest["table"])
            _compare_tab(gen, session, backends)
        # Summarize offers only the ticked documents, so it reads what Chat and Compare read.
        sources.input(gen.choose_sources, [sources, session], [sources_note, session], show_progress="hidden").then(
            gen.document_choices, [session, summary_docs], summary_docs, show_progress="hidden")

        restore = ([chat["chatbot"], chat["status"], chat["title"], session],
                   [chat["conversations"]])
        # What the chosen collection lets this person press: the Ingest step's buttons and the Chat's Add.
        c = ingest["controls"]
        controls = c["trash"].wire_controls(session, [*c["changers"], *chat["changers"]], c["managers"], c["admin"])
        chosen = collection.input(
            library.choose_collection, [collection, session], [session, docs_note, ingest["table"]]
        ).then(library.collection_choices, session, collection, show_progress="hidden")
        # Collections shared with this person since the page loaded are listed when they open the box.
        collection.focus(library.collection_choices, session, collection, show_progress="hidden", queue=False)
        # The page follows the session to another collection: chosen in the box, or opened by the notebook
        # after the chosen one was deleted, or restored from the trash.
        for moved in [chosen, *ingest["moved"]]:
            moved.then(gen.document_choices, session, summary_docs, show_progress="hidden").then(
                convs.restore, session, restore[0], show_progress="hidden").then(
                _empty_viewer, None, chat["viewer"], show_progress="hidden").then(
                convs.choices, session, restore[1], show_progress="hidden").then(
                gen.source_choices, session, sources, show_progress="hidden")
            # This browser keeps the collection chosen last, and the next load opens it again (if it may).
            moved.then(None, collection, None,
                       js=f"(name) => {{ localStorage.setItem({COLLECTION_KEY!r}, name || ''); }}")
            if ingest["sharing"] is not None:
                moved.then(ingest["sharing"]["view"], session, ingest["sharing"]["out"], show_progress="hidden")
            moved.then(*controls, show_progress="hidden")
            for then in ingest["on_move"]:
                moved.then(*then, show_progress="hidden")
        # A deleted document's passage must not stay in the viewer either.
        ingest["deleted"].then(_empty_viewer, None, chat["viewer"], show_progress="hidden")
        # Once an answer has loaded the model, the line under the collection names its file.
        chat["listed"].then(form.model_line_of, session, model_line, show_progress="hidden")
        # Summarize lists the collection's documents, so it follows every ingest and delete.
        for changed in ingest["changed"] + chat["changed"]:
            changed.then(gen.document_choices, session, summary_docs, show_progress="hidden").then(
                gen.source_choices, session, sources, show_progress="hidden")
        demo.load(None, None, [last_tab, kept_settings, kept_collection],
                  js=f"() => [{TAB_KEY!r}, {SETTINGS_KEY!r}, {COLLECTION_KEY!r}].map(k => localStorage.getItem(k) || '')"
                  ).then(form.restore_settings, [kept_settings, session],
                         [panel["applied"], model_line, session, *panel["form"]], show_progress="hidden").then(
            library.landing_collection, [kept_collection, session], [collection, session], show_progress="hidden").then(
            library.refresh, session, [docs_note, ingest["table"]], show_progress="hidden"
        ).then(gen.document_choices, session, summary_docs, show_progress="hidden").then(
            convs.restore, session, restore[0], show_progress="hidden").then(
            landing_tab, [last_tab, session], tabs, show_progress="hidden").then(
            convs.choices, session, restore[1], show_progress="hidden").then(
            gen.source_choices, session, sources, show_progress="hidden").then(
            form.model_picker, session, [model, tiny_note], show_progress="hidden").then(
            *controls, show_progress="hidden")
        demo.unload(gen.end_session)
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def _search_tab(search: Search, session, runtime: Runtime) -> None:
    with gr.Tab("2 · Search", id="search", elem_id="tab-search"):
        gr.Markdown("Retrieve the chunks closest to a query: by meaning (dense), by words (bm25), or both fused.",
                    elem_classes=["step-note"])
        with gr.Row(equal_height=True):
            query = gr.Textbox(label="Query", scale=4, elem_id="search-query", submit_btn=False,
                               placeholder="What would you like to find?")
            k = gr.Number(value=runtime.settings.k, label=f"k (1 to {MAX_K})", scale=1,
                          elem_id="search-k")
            mode = gr.Radio(MODES, value=runtime.settings.mode, label="Mode", scale=2, elem_id="search-mode")
            go = gr.Button("Search", variant="primary", scale=1, elem_id="search-btn")
        note = gr.Markdown(elem_classes=["step-out"], elem_id="search-note")
        with gr.Row():
            with gr.Column(scale=3):
                hits = gr.HTML(elem_id="hits")
            with gr.Column(scale=2):
                bars = gr.BarPlot(x="bar", y="relative", color="retriever", title="Scores per hit",
                                  x_title="hit and score", y_title="share of that score's best",
                                  tooltip=["bar", "score"], y_lim=[0, 1], sort=None, x_label_angle=-40,
                                  height=260, elem_id="scores-chart", colors_in_legend=[],
                                  # Each bar is labelled with its score's name; the text legend under
                                  # the hits explains them, so the chart keeps no legend of its own.
                                  color_map={"fused": "#4f46e5", "dense": "#0ea5e9", "bm25": "#f59e0b"})
                scatter = gr.ScatterPlot(x="x", y="y", color="kind", title="Map of the collection (PCA)",
                                         tooltip=["label", "kind"], height=300, elem_id="map-chart",
                                         color_map={"chunk": "#e2e8f0", "hit": "#dc2626", "query": "#f59e0b"})
    gr.on([go.click, query.submit], search.search, [query, k, mode, session], [note, hits, bars, scatter])


def _stoppable(gen: Generation, step: str, triggers: list, fn, inputs, outputs, stop_btn, **kwargs):
    """Run `fn` on any trigger; pressing `stop_btn` ends its model work on the server (see ui.jobs)."""
    event = gr.on(triggers, gen.start(step), None, None, queue=False, show_progress="hidden").then(
        fn, inputs, outputs, concurrency_id=MODEL_GROUP, concurrency_limit=1, **kwargs)
    stop_btn.click(gen.stop(step), None, None, queue=False, show_progress="hidden")
    return event


def _summarize_tab(gen: Generation, session):
    with gr.Tab("3 · Summarize", id="summarize", elem_id="tab-summarize"):
        gr.Markdown("Summarise whole documents, or what a query retrieves. A document is summarised part by part: "
                    "one line per main part, labelled with its heading, each marked as *quoted from the document* "
                    "(a small model) or *written by the model*. A query's passages are read in one prompt.",
                    elem_classes=["step-note"])
        with gr.Row():
            with gr.Column(scale=3):
                query = gr.Textbox(label="Query (leave empty to summarise the chosen documents)",
                                   elem_id="summary-query")
                docs = gr.Dropdown(label="Documents (those ticked under 📚 Sources)", multiselect=True, choices=[],
                                   elem_id="summary-docs")
            with gr.Column(scale=1):
                go = gr.Button("Summarize", variant="primary", elem_id="summarize-btn")
                stop = gr.Button("Stop", variant="stop", elem_id="summary-stop")
        info = gr.Markdown(elem_classes=["step-out"], elem_id="summary-info")
        with gr.Row():
            output = gr.Markdown(label="Summary", elem_id="summary", container=True, min_height=120)
            with gr.Accordion("Chunks that went in", open=False):
                inputs_md = gr.Markdown(elem_id="summary-chunks")
    _stoppable(gen, "summarize", [go.click], gen.summarize, [query, docs, session], [info, inputs_md, output], stop)
    return docs


def _chat_tab(gen: Generation, convs: Conversations, library: Library, session, writable: bool,
              docs_note, table) -> dict:
    with gr.Tab("4 · Chat", id="chat", elem_id="tab-chat"):
        gr.Markdown("Ask questions: chunks are retrieved for each, and the model answers from them, citing "
                    "numbered sources. A follow-up that leans on the conversation (\"Why?\", \"Which one…?\") is "
                    "first made into a standalone question, shown above its answer. Click a [n] to read that "
                    "passage in its document.",
                    elem_classes=["step-note"])
        with gr.Row():
            with gr.Column(scale=1, min_width=220, elem_id="conversation-panel"):
                new = gr.Button("+ New conversation", size="sm", elem_id="clear-btn")
                conversations = gr.Radio(label="Conversations", choices=[], elem_id="conversations",
                                         elem_classes=["conversation-list"])
                title = gr.Textbox(label="Name", elem_id="conversation-title", interactive=writable)
                with gr.Row():
                    rename = gr.Button("Rename", size="sm", interactive=writable, elem_id="rename-btn")
                    delete = gr.Button("Delete", size="sm", variant="stop", interactive=writable,
                                       elem_id="delete-conversation-btn")
                export = gr.Button("Export as Markdown", size="sm", elem_id="export-btn")
                export_file = gr.File(label="Conversation", visible=False, elem_id="export-file")
                with gr.Accordion("Add a web page", open=False, elem_id="quick-add"):
                    quick_urls = gr.Textbox(show_label=False, placeholder="https://…", lines=1,
                                            interactive=writable, elem_id="quick-urls")
                    quick_btn = gr.Button("Add to the collection", size="sm", interactive=writable,
                                          elem_id="quick-add-btn")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    elem_id="chatbot", height=460, layout="panel", show_label=False, sanitize_html=True,
                    allow_tags=False, latex_delimiters=[], buttons=["copy_all"], feedback_options=None,
                    placeholder="Ask a question about the documents in your collection.",
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(show_label=False, placeholder="Ask a question…", scale=5,
                                          elem_id="question", submit_btn=False)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send-btn")
                    stop = gr.Button("Stop", variant="stop", scale=0, elem_id="stop-btn")
                status = gr.Markdown(elem_classes=["step-out"], elem_id="chat-status")
            with gr.Column(scale=2):
                viewer = gr.HTML(VIEWER_EMPTY, elem_id="passage", label="Cited passage")
                # The page's script writes the clicked citation here and presses the button (assets/notebook.js).
                cite_ref = gr.Textbox(elem_id="cite-ref", elem_classes=["offscreen"], show_label=False)
                cite_open = gr.Button("Open citation", elem_id="cite-open", elem_classes=["offscreen"])
                standalone = gr.Markdown(label="Standalone question", elem_id="standalone")
                with gr.Accordion("Prompt inspector", open=False, elem_classes=["inspector"], elem_id="prompt-inspector"):
                    usage = gr.Markdown(elem_id="prompt-usage")
                    timings = gr.Markdown(elem_classes=["timings"], elem_id="timings")
                    prompt = gr.Textbox(label="Exact prompt sent", lines=12, max_lines=30, interactive=False,
                                        elem_classes=["prompt-box"], elem_id="prompt")
        # Inside the tab: a component between two tabs shifts the index of the next one, and the
        # tab bar then shows "5 · Compare" twice once it is opened.
        asked = gr.State("")
    outputs = [chatbot, status, standalone, prompt, usage, timings, session]
    # The question box empties at once and the job is registered (so Stop works even while the answer
    # waits in the queue); the queued answer then streams into the chat. API clients call /ask with the
    # question, then /chat in the same session to stream the answer.
    taken = gr.on([send.click, question.submit], gen.take_question, question, [question, asked, status],
                  queue=False, show_progress="hidden", api_name="ask")
    event = taken.then(gen.chat, [asked, session], outputs, concurrency_id=MODEL_GROUP, concurrency_limit=1,
                       api_name="chat")
    # A passage from an earlier answer would pass for one of the new answer's: the viewer empties.
    taken.then(gen.viewer_for_question, asked, viewer, queue=False, show_progress="hidden")
    stop.click(gen.stop("chat"), None, None, queue=False, show_progress="hidden")
    listed = event.then(convs.panel, session, [conversations, title], show_progress="hidden")
    # The chat's own bin starts a new conversation too, so the screen and the session never disagree.
    for cleared in (chatbot.clear, new.click):
        cleared(gen.clear, session, outputs, cancels=[event]).then(
            convs.choices, session, conversations, show_progress="hidden").then(
            lambda: ("", VIEWER_EMPTY), None, [title, viewer], show_progress="hidden")
    export.click(gen.export, session, [export_file, status])
    conversations.input(convs.open, [conversations, session], [chatbot, status, title, session], cancels=[event]).then(
        _empty_viewer, None, viewer, show_progress="hidden")
    rename.click(convs.rename, [title, session], [status, title]).then(
        convs.choices, session, conversations, show_progress="hidden")
    delete.click(convs.delete, session, [chatbot, status, title, session], cancels=[event]).then(
        convs.choices, session, conversations, show_progress="hidden").then(
        _empty_viewer, None, viewer, show_progress="hidden")
    cite_open.click(convs.open_citation, [cite_ref, session], viewer, show_progress="hidden")
    added = quick_btn.click(library.quick_add, [quick_urls, session], [status, quick_urls, docs_note, table],
                            concurrency_id="ingest", concurrency_limit=1)
    return {"chatbot": chatbot, "status": status, "title": title, "conversations": conversations,
            "changed": [added], "listed": listed, "viewer": viewer, "changers": [quick_btn, quick_urls]}


def _empty_viewer() -> str:
    return VIEWER_EMPTY


def _compare_tab(gen: Generation, session, backends: list[str]) -> None:
    with gr.Tab("5 · Compare", id="compare", elem_id="tab-compare"):
        gr.Markdown("One question, the same retrieved context, each backend side by side.",
                    elem_classes=["step-note"])
        with gr.Row(equal_height=True):
            question = gr.Textbox(show_label=False, placeholder="A question for every backend…", scale=5,
                                  elem_id="compare-question")
            go = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-btn")
            stop = gr.Button("Stop", variant="stop", scale=0, elem_id="compare-stop")
        context = gr.Markdown(elem_classes=["step-out"], elem_id="compare-context")
        columns = []
        with gr.Row():
            for name in backends:
                with gr.Column():
                    gr.Markdown(f"### {name}")
                    columns.append(gr.Markdown(elem_id=f"compare-{name}", container=True, min_height=120))
                    columns.append(gr.Markdown(elem_classes=["timings"], elem_id=f"compare-{name}-timings"))
    _stoppable(gen, "compare", [go.click, question.submit], gen.compare, [question, session], [context, *columns],
               stop)
