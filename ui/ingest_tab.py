"""Step 1, Ingest: the layout of the sources box, uploads, Add a site, the documents table and its preview,
Delete with its confirmation, the trash, and (under --auth) the sharing panel; wired to `ui.library` and
`ui.sharing`, which do the work."""

from __future__ import annotations

import gradio as gr

from rag.trash import TRASH_DAYS
from ui import formatting as fmt
from ui.collection_trash import CollectionTrash
from ui.library import Library
from ui.sharing import LEVELS, Sharing

def ingest_tab(library: Library, session, collection, docs_note, writable: bool, sharing: Sharing | None) -> dict:
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
                    label="Files (drop several: PDF, Word, PowerPoint, spreadsheets, CSV, OpenDocument, RTF, EPUB, "
                          "e-mail, HTML, Markdown, text, scans and images)", file_count="multiple",
                    type="filepath", interactive=writable, elem_id="files", height=120,
                )
                with gr.Row(equal_height=True):
                    site = gr.Textbox(label="Add a site: its start address", scale=4, interactive=writable,
                                      elem_id="site-url", placeholder="https://example.com/docs/ — pages of one host")
                    site_pages = gr.Number(value=50, minimum=1, maximum=1000, precision=0, label="Pages", scale=1,
                                           interactive=writable, elem_id="site-pages")
                    site_depth = gr.Number(value=2, minimum=0, maximum=10, precision=0, label="Depth", scale=1,
                                           interactive=writable, elem_id="site-depth")
                    site_btn = gr.Button("Add a site", interactive=writable, scale=1, elem_id="site-btn")
                    site_stop = gr.Button("Stop", variant="stop", interactive=writable, scale=0, elem_id="site-stop")
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
                    wrap=True, max_height=320, column_widths=["34%", "40%", "10%", "16%"],
                )
            with gr.Column(scale=1, min_width=220):
                selected = gr.Textbox(label="Selected source", interactive=False, elem_id="selected-source")
                delete_btn = gr.Button("Delete document", variant="stop", interactive=writable, elem_id="delete-btn")
                # Delete asks again, naming the document; only the second press moves it to the trash.
                with gr.Group(visible=False, elem_id="delete-confirm") as confirm:
                    confirm_note = gr.Markdown(elem_id="delete-confirm-note")
                    with gr.Row():
                        confirm_btn = gr.Button("Move to trash", variant="stop", size="sm", elem_id="delete-yes")
                        cancel_btn = gr.Button("Cancel", size="sm", elem_id="delete-no")
                refresh_btn = gr.Button("Refresh table", size="sm")
                coll_delete_btn = gr.Button("Delete collection", variant="stop", size="sm", interactive=writable,
                                            elem_id="delete-collection-btn")
                # Asks again, naming the collection and its documents count; the second press moves it to the trash.
                with gr.Group(visible=False, elem_id="delete-collection-confirm") as coll_confirm:
                    coll_confirm_note = gr.Markdown(elem_id="delete-collection-note")
                    with gr.Row():
                        coll_yes = gr.Button("Move it to the trash", variant="stop", size="sm",
                                             elem_id="delete-collection-yes")
                        coll_no = gr.Button("Cancel", size="sm", elem_id="delete-collection-no")
                coll_note = gr.Markdown(elem_id="collection-note")
        with gr.Accordion("Extracted text and metadata", open=False, elem_id="preview") as preview:
            with gr.Row():
                preview_text = gr.Textbox(label="Text", lines=12, max_lines=24, interactive=False, scale=3)
                preview_meta = gr.JSON(label="Metadata", scale=2)
        with gr.Accordion(f"🗑 Trash: documents and collections deleted in the last {TRASH_DAYS} days", open=False,
                          elem_id="trash") as trash:
            with gr.Row(equal_height=True):
                trashed = gr.Dropdown(label="Deleted documents", choices=[], scale=4, elem_id="trashed")
                restore_btn = gr.Button("Restore", interactive=writable, scale=0, elem_id="restore-btn")
            restored_note = gr.Markdown(elem_classes=["step-out"], elem_id="restored-note")
            with gr.Row(equal_height=True):
                trashed_colls = gr.Dropdown(label="Deleted collections", choices=[], scale=4,
                                            elem_id="trashed-collections")
                restore_coll_btn = gr.Button("Restore collection", interactive=writable, scale=0,
                                             elem_id="restore-collection-btn")
        shared = _sharing_panel(sharing, session, collection, writable) if sharing is not None else None

    ingested = ingest_btn.click(
        library.ingest, [urls, files, chunk_size, chunk_overlap, session], [summary, results, docs_note, table, files],
        # One bar, over the documents table (always shown; the summary is hidden while empty), not one per output.
        concurrency_id="ingest", concurrency_limit=1, show_progress_on=table,
    ).then(library.collection_choices, session, collection, show_progress="hidden")
    crawled = site_btn.click(
        library.add_site, [site, site_pages, site_depth, session], [summary, results, docs_note, table],
        concurrency_id="ingest", concurrency_limit=1, show_progress_on=table,
    ).then(library.collection_choices, session, collection, show_progress="hidden")
    site_stop.click(library.stop_site, None, None, queue=False, show_progress="hidden")
    shown = [summary, selected, preview_text, preview_meta, preview]
    preview_btn.click(library.preview, [urls, files, session], shown, concurrency_id="ingest")
    table.select(library.select_document, [table, session], shown)
    delete_btn.click(library.ask_delete, selected, [confirm, confirm_note], queue=False, show_progress="hidden")
    cancel_btn.click(_hidden, None, confirm, queue=False, show_progress="hidden")
    # The preview empties with the table: a deleted document's text must not stay on screen.
    deleted = confirm_btn.click(library.delete, [selected, session],
                                [selected, docs_note, table, preview_text, preview_meta], concurrency_id="ingest")
    deleted.then(_hidden, None, confirm, show_progress="hidden").then(
        library.trash_choices, session, trashed, show_progress="hidden")
    trash.expand(library.trash_choices, session, trashed, show_progress="hidden")
    restored = restore_btn.click(library.restore_document, [trashed, session], [restored_note, docs_note, table],
                                 concurrency_id="ingest").then(library.trash_choices, session, trashed,
                                                               show_progress="hidden")
    refresh_btn.click(library.refresh, session, [docs_note, table])

    colls = CollectionTrash(library, writable)
    coll_delete_btn.click(colls.ask_delete, session, [coll_confirm, coll_yes, coll_confirm_note], queue=False,
                          show_progress="hidden", api_name="ask_delete_collection")
    coll_no.click(_hidden, None, coll_confirm, queue=False, show_progress="hidden")
    # The collection leaves the page at once: the session opens another, and the page follows it (ui.blocks).
    coll_deleted = coll_yes.click(colls.delete, session,
                                  [coll_note, collection, session, docs_note, table, coll_confirm],
                                  concurrency_id="ingest", api_name="delete_collection")
    coll_deleted.then(_cleared, None, [selected, preview_text, preview_meta], show_progress="hidden")
    trash.expand(colls.trash_choices, None, trashed_colls, show_progress="hidden", api_name="collection_trash")
    coll_restored = restore_coll_btn.click(colls.restore, [trashed_colls, session],
                                           [restored_note, collection, session, docs_note, table],
                                           concurrency_id="ingest", api_name="restore_collection")
    for moved in (coll_deleted, coll_restored):
        moved.then(colls.trash_choices, None, trashed_colls, show_progress="hidden")
    # Whenever the page follows the session to another collection (ui.blocks): the last ingest's lines were
    # about the one before, and the trash lists the new one's deleted documents.
    on_move = [(_results_cleared, None, [summary, results]), (library.trash_choices, session, trashed),
               (library.refresh, session, [docs_note, table])]
    changers = [ingest_btn, preview_btn, site_btn, site_stop, delete_btn, restore_btn, urls, files, site]
    managers = [coll_delete_btn, *(shared["managers"] if shared is not None else [])]
    # ui.blocks adds the Chat tab's own changers and wires `colls.controls` (CollectionTrash.wire_controls).
    controls = {"trash": colls, "changers": changers, "managers": managers,
                "admin": [shared["admin"]] if shared is not None else []}
    return {"table": table, "changed": [ingested, crawled, deleted, restored], "deleted": deleted, "sharing": shared,
            "moved": [coll_deleted, coll_restored, *([shared["moved"]] if shared is not None else [])],
            "controls": controls, "on_move": on_move}


def _cleared():
    return "", "", None


def _results_cleared():
    return "", ""


def _hidden():
    return gr.update(visible=False)


def _sharing_panel(sharing: Sharing, session, collection, writable: bool) -> dict:
    """Under --auth: who owns the chosen collection and whom it is shared with; the owner shares and takes back,
    the admin sees every owner and moves a collection. The server checks each call (ui/sharing.py)."""
    with gr.Accordion("👥 Sharing", open=False, elem_id="sharing") as panel:
        out = gr.Markdown(elem_classes=["step-out"], elem_id="sharing-view")
        people = ["everyone", *sharing.runtime.access.users]
        with gr.Row(equal_height=True):
            # Nobody chosen at first: one press of Share must not publish a collection to everyone.
            who = gr.Dropdown(people, value=None, label="Share with", interactive=writable, elem_id="share-who")
            level = gr.Radio(list(LEVELS), value="read-only", label="Access", interactive=writable,
                             elem_id="share-level")
            share = gr.Button("Share", variant="primary", interactive=writable, scale=0, elem_id="share-btn")
            take_back = gr.Button("Take back", interactive=writable, scale=0, elem_id="unshare-btn")
        with gr.Accordion("Admin: who owns what", open=False, elem_id="owners") as admin:
            owners = gr.Markdown(elem_id="owners-list")
            with gr.Row(equal_height=True):
                new_owner = gr.Dropdown(list(sharing.runtime.access.users), label="Move the chosen collection to",
                                        interactive=writable, elem_id="new-owner")
                move = gr.Button("Move", interactive=writable, scale=0, elem_id="move-btn")
    panel.expand(sharing.view, session, out, show_progress="hidden")
    share.click(sharing.share, [who, level, session], out)
    take_back.click(sharing.take_back, [who, session], out)
    admin.expand(sharing.owners, None, owners, show_progress="hidden")
    moved = move.click(sharing.move, [new_owner, session], [out, collection, session])
    moved.then(sharing.owners, None, owners, show_progress="hidden")
    return {"view": sharing.view, "out": out, "admin": admin, "managers": [who, level, share, take_back],
            "moved": moved}
