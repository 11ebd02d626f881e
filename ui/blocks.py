"""The notebook's layout: one tab per step of the recipe, each showing that step's output."""

from __future__ import annotations

import gradio as gr

from rag import ui_format as fmt
from ui.generation import BACKENDS, Generation
from ui.library import Library
from ui.runtime import Runtime
from ui.search import Search
from ui.state import ChatSettings, Session

# Every model call joins this group, so simultaneous users queue for the one model in memory.
MODEL_GROUP = "model"
MODES = ["hybrid", "dense", "bm25"]


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
        n_ctx=s.n_ctx, k=s.k, mode=s.mode,
    )
    return Session(collection=s.collection, chat=chat)


def build_app(runtime: Runtime) -> gr.Blocks:
    """The Blocks app over `runtime`; nothing is loaded until a user asks for it."""
    library, search, gen = Library(runtime), Search(runtime), Generation(runtime)
    writable = not runtime.read_only
    with gr.Blocks(title="local-rag notebook", analytics_enabled=False) as demo:
        session = gr.State(_initial_session(runtime))
        gr.HTML(_header(runtime))
        with gr.Row(equal_height=True):
            collection = gr.Dropdown(
                label="Collection", choices=[runtime.settings.collection], value=runtime.settings.collection,
                allow_custom_value=writable, scale=1, elem_id="collection",
                info="Pick one" + (", or type a new name to create it on the first ingest." if writable else "."),
            )
            docs_note = gr.Markdown(elem_classes=["step-out"], elem_id="docs-note")

        with gr.Tabs(overflow_behavior="wrap"):
            ingest_tab = _ingest_tab(library, session, collection, docs_note, writable)
            _search_tab(search, session, runtime)
            summary_docs = _summarize_tab(gen, session)
            _chat_tab(gen, session, runtime, writable)
            _compare_tab(gen, session)

        collection.input(
            library.choose_collection, [collection, session], [session, docs_note, ingest_tab["table"]]
        ).then(library.collection_choices, session, collection, show_progress="hidden").then(
            gen.document_choices, session, summary_docs, show_progress="hidden"
        )
        # Summarize lists the collection's documents, so it follows every ingest and delete.
        for changed in ingest_tab["changed"]:
            changed.then(gen.document_choices, session, summary_docs, show_progress="hidden")
        demo.load(library.collection_choices, session, collection, show_progress="hidden").then(
            library.refresh, session, [docs_note, ingest_tab["table"]], show_progress="hidden"
        ).then(gen.document_choices, session, summary_docs, show_progress="hidden")
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def _ingest_tab(library: Library, session, collection, docs_note, writable: bool) -> dict:
    with gr.Tab("1 · Ingest", id="ingest", elem_id="tab-ingest"):
        gr.Markdown(
            "Load sources, split them into chunks, embed the chunks and index them. "
            + ("" if writable else "**Read-only demo: ingesting and deleting are disabled.**"),
            elem_classes=["step-note"],
        )
        with gr.Row():
            with gr.Column(scale=3):
                urls = gr.Textbox(
                    label="Web pages", lines=3, interactive=writable, elem_id="urls",
                    placeholder="https://example.com/article — one or more URLs, one per line",
                )
                files = gr.File(
                    label="Files (drop several: PDF, HTML, Markdown, text)", file_count="multiple",
                    type="filepath", interactive=writable, elem_id="files", height=120,
                )
            with gr.Column(scale=2):
                chunk_size = gr.Slider(100, 2000, value=500, step=50, label="Chunk size (characters)",
                                       interactive=writable)
                chunk_overlap = gr.Slider(0, 400, value=0, step=10, label="Chunk overlap (characters)",
                                          interactive=writable)
                with gr.Row():
                    ingest_btn = gr.Button("Ingest", variant="primary", interactive=writable, elem_id="ingest-btn")
                    preview_btn = gr.Button("Preview first source", interactive=writable)
        summary = gr.Markdown(elem_classes=["step-out"], elem_id="ingest-summary")
        results = gr.Markdown(elem_id="ingest-results")
        with gr.Row():
            with gr.Column(scale=4):
                table = gr.Dataframe(
                    headers=fmt.DOCUMENT_HEADERS, datatype=["str", "str", "number", "str"], interactive=False,
                    label="Documents in the collection (select a row to preview it)", elem_id="documents",
                    wrap=True, max_height=320,
                )
            with gr.Column(scale=1, min_width=220):
                selected = gr.Textbox(label="Selected source", interactive=False, elem_id="selected-source")
                delete_btn = gr.Button("Delete document", variant="stop", interactive=writable)
                refresh_btn = gr.Button("Refresh table", size="sm")
        with gr.Accordion("Extracted text and metadata", open=False, elem_id="preview"):
            with gr.Row():
                preview_text = gr.Textbox(label="Text", lines=12, max_lines=24, interactive=False, scale=3)
                preview_meta = gr.JSON(label="Metadata", scale=2)

    ingested = ingest_btn.click(
        library.ingest, [urls, files, chunk_size, chunk_overlap, session], [summary, results, docs_note, table],
        concurrency_id="ingest", concurrency_limit=1,
    ).then(library.collection_choices, session, collection, show_progress="hidden")
    preview_btn.click(library.preview, [urls, files, session], [selected, preview_text, preview_meta],
                      concurrency_id="ingest")
    table.select(library.select_document, [table, session], [selected, preview_text, preview_meta])
    deleted = delete_btn.click(library.delete, [selected, session], [selected, docs_note, table],
                               concurrency_id="ingest")
    refresh_btn.click(library.refresh, session, [docs_note, table])
    return {"table": table, "changed": [ingested, deleted]}


def _search_tab(search: Search, session, runtime: Runtime) -> None:
    with gr.Tab("2 · Search", id="search", elem_id="tab-search"):
        gr.Markdown("Retrieve the chunks closest to a query: by meaning (dense), by words (bm25), or both fused.",
                    elem_classes=["step-note"])
        with gr.Row(equal_height=True):
            query = gr.Textbox(label="Query", scale=4, elem_id="search-query", submit_btn=False,
                               placeholder="What would you like to find?")
            k = gr.Slider(1, 20, value=runtime.settings.k, step=1, label="k", scale=1)
            mode = gr.Radio(MODES, value=runtime.settings.mode, label="Mode", scale=2)
            go = gr.Button("Search", variant="primary", scale=1, elem_id="search-btn")
        note = gr.Markdown(elem_classes=["step-out"], elem_id="search-note")
        with gr.Row():
            with gr.Column(scale=3):
                hits = gr.HTML(elem_id="hits")
            with gr.Column(scale=2):
                bars = gr.BarPlot(x="bar", y="relative", color="retriever", title="Scores per hit",
                                  x_title="hit and retriever", y_title="share of the retriever's best",
                                  tooltip=["bar", "score"], y_lim=[0, 1], sort=None, x_label_angle=-40,
                                  height=260, elem_id="scores-chart",
                                  color_map={"fused": "#4f46e5", "dense": "#0ea5e9", "bm25": "#f59e0b"})
                scatter = gr.ScatterPlot(x="x", y="y", color="kind", title="Map of the collection (PCA)",
                                         tooltip=["label", "kind"], height=300, elem_id="map-chart",
                                         color_map={"chunk": "#cbd5e1", "hit": "#4f46e5", "query": "#f59e0b"})
    gr.on([go.click, query.submit], search.search, [query, k, mode, session], [note, hits, bars, scatter])


def _summarize_tab(gen: Generation, session):
    with gr.Tab("3 · Summarize", id="summarize", elem_id="tab-summarize"):
        gr.Markdown("Summarise what a query retrieves, or whole documents. Short inputs are *stuffed* into one "
                    "prompt; long ones are summarised piece by piece and then combined (*map-reduce*).",
                    elem_classes=["step-note"])
        with gr.Row():
            with gr.Column(scale=3):
                query = gr.Textbox(label="Query (leave empty to summarise the chosen documents)",
                                   elem_id="summary-query")
                docs = gr.Dropdown(label="Documents", multiselect=True, choices=[], elem_id="summary-docs")
            with gr.Column(scale=1):
                go = gr.Button("Summarize", variant="primary", elem_id="summarize-btn")
                stop = gr.Button("Stop", variant="stop")
        info = gr.Markdown(elem_classes=["step-out"], elem_id="summary-info")
        with gr.Row():
            output = gr.Markdown(label="Summary", elem_id="summary", container=True, min_height=120)
            with gr.Accordion("Chunks that went in", open=False):
                inputs_md = gr.Markdown(elem_id="summary-chunks")
    event = go.click(gen.summarize, [query, docs, session], [info, inputs_md, output],
                     concurrency_id=MODEL_GROUP, concurrency_limit=1)
    stop.click(None, cancels=[event])
    return docs


def _chat_tab(gen: Generation, session, runtime: Runtime, writable: bool) -> None:
    s = runtime.settings
    with gr.Tab("4 · Chat", id="chat", elem_id="tab-chat"):
        gr.Markdown("Ask questions: a follow-up is first rewritten into a standalone question, chunks are "
                    "retrieved for it, and the model answers from them, citing numbered sources.",
                    elem_classes=["step-note"])
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    elem_id="chatbot", height=460, layout="panel", show_label=False, sanitize_html=True, allow_tags=False,
                    latex_delimiters=[], buttons=["copy"], feedback_options=None,
                    placeholder="Ask a question about the documents in your collection.",
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(show_label=False, placeholder="Ask a question…", scale=5,
                                          elem_id="question", submit_btn=False)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send-btn")
                with gr.Row():
                    stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop-btn")
                    clear = gr.Button("Clear", size="sm", elem_id="clear-btn")
                    export = gr.Button("Export as Markdown", size="sm", elem_id="export-btn")
                export_file = gr.File(label="Conversation", visible=False, elem_id="export-file")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_classes=["step-out"], elem_id="chat-status")
                standalone = gr.Markdown(label="Standalone question", elem_id="standalone")
                with gr.Accordion("Prompt inspector", open=False, elem_classes=["inspector"], elem_id="prompt-inspector"):
                    usage = gr.Markdown(elem_id="prompt-usage")
                    timings = gr.Markdown(elem_classes=["timings"], elem_id="timings")
                    prompt = gr.Textbox(label="Exact prompt sent", lines=12, max_lines=30, interactive=False,
                                        elem_classes=["prompt-box"], elem_id="prompt")
                with gr.Accordion("⚙ Settings (Summarize, Chat and Compare)", open=False, elem_id="settings"):
                    backend = gr.Dropdown(BACKENDS, value=s.backend, label="Backend", interactive=writable,
                                          elem_id="backend")
                    model = gr.Textbox(value=s.model, label="Model (name or GGUF path; empty = default)",
                                       interactive=writable)
                    temperature = gr.Slider(0, 1.5, value=s.temperature, step=0.05, label="Temperature",
                                            interactive=writable)
                    max_tokens = gr.Slider(8, 2048, value=s.max_tokens, step=8, label="Max new tokens",
                                           interactive=writable, elem_id="max-tokens")
                    n_ctx = gr.Slider(512, 16384, value=s.n_ctx, step=256, label="Context size (tokens)",
                                      interactive=writable)
                    k = gr.Slider(1, 12, value=s.k, step=1, label="Chunks to retrieve (k)", interactive=writable)
                    mode = gr.Radio(MODES, value=s.mode, label="Retrieval mode", interactive=writable)
                    template = gr.Textbox(label="Prompt template (empty = the model's default)", lines=5,
                                          placeholder=gen.template_hint(), interactive=writable)
                    apply = gr.Button("Apply settings", interactive=writable, elem_id="apply-settings")
                    applied = gr.Markdown(elem_id="settings-applied")
    outputs = [chatbot, status, standalone, prompt, usage, timings, session]
    asked = gr.State("")
    # The question box empties at once; the queued answer then streams into the chat.
    # API clients call /ask with the question, then /chat in the same session to stream the answer.
    event = gr.on([send.click, question.submit], lambda q: ("", q), question, [question, asked], queue=False,
                  show_progress="hidden", api_name="ask").then(gen.chat, [asked, session], outputs,
                                                                 concurrency_id=MODEL_GROUP, concurrency_limit=1,
                                                                 api_name="chat")
    stop.click(None, cancels=[event])
    clear.click(gen.clear, session, [chatbot, status, standalone, prompt, usage, timings, session], cancels=[event])
    export.click(gen.export, session, export_file)
    apply.click(gen.apply_settings, [backend, model, temperature, max_tokens, n_ctx, k, mode, template, session],
                [applied, session])


def _compare_tab(gen: Generation, session) -> None:
    with gr.Tab("5 · Compare", id="compare", elem_id="tab-compare"):
        gr.Markdown("One question, the same retrieved context, both backends side by side.",
                    elem_classes=["step-note"])
        with gr.Row(equal_height=True):
            question = gr.Textbox(show_label=False, placeholder="A question for both backends…", scale=5,
                                  elem_id="compare-question")
            go = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-btn")
        context = gr.Markdown(elem_classes=["step-out"], elem_id="compare-context")
        columns = []
        with gr.Row():
            for name in BACKENDS:
                with gr.Column():
                    gr.Markdown(f"### {name}")
                    columns.append(gr.Markdown(elem_id=f"compare-{name}", container=True, min_height=120))
                    columns.append(gr.Markdown(elem_classes=["timings"], elem_id=f"compare-{name}-timings"))
    gr.on([go.click, question.submit], gen.compare, [question, session], [context, *columns],
          concurrency_id=MODEL_GROUP, concurrency_limit=1)
