"""Step 1, Ingest: load sources into a collection, preview what was extracted, list and delete documents."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

import gradio as gr

from rag import limits
from rag.errors import RagError
from rag.progress import IngestProgress
from rag.trash import TRASH_DAYS
from ui import formatting as fmt
from ui.escaping import UPLOAD_PREFIX, display_source, escape_html, escape_markdown, one_line, safe_href
from ui.request import user_name
from ui.runtime import Runtime
from ui.state import Session
from ui.status import errors_in_status

STAGES = ("fetch", "extract", "chunk", "embed", "index")
_SPLIT = re.compile(r"[\s,]+")


def parse_urls(text: str) -> tuple[list[str], list[str]]:
    """URLs from a box of lines/commas/spaces, and the entries that are not http(s) URLs."""
    urls, bad = [], []
    for entry in _SPLIT.split(text or ""):
        if not entry:
            continue
        (urls if safe_href(entry) and "://" in entry and len(entry) > 8 else bad).append(entry)
    return list(dict.fromkeys(urls)), bad


def _progress_reporter(progress: gr.Progress):
    """The core's progress callback as one bar over the whole ingest (rag.progress: every file and every OCR'd
    page moves it, and it ends at 100%), with the stage's own count in words."""
    tracker = IngestProgress()

    def report(stage: str, done: int, total: int, source: str | None = None) -> None:
        fraction = tracker.update(stage, done, total, source)
        if stage == "done":
            progress(fraction, desc=f"done · {done} {'source' if done == 1 else 'sources'}")
            return
        step = STAGES.index(stage) if stage in STAGES else (1 if stage == "ocr" else 0)  # OCR is extraction
        name = (source or "").rsplit("/", 1)[-1][:60]
        unit = "splits" if stage in ("chunk", "embed") else "pages" if stage == "ocr" else "sources"
        count = f"{done} of {total} {unit}" if total or stage != "chunk" else "nothing new to index"
        desc = f"{step + 1}/5 {stage} · {count}" + (f" · {name}" if name else "")
        progress(fraction, desc=desc)

    return report


class Library:
    """Callbacks of the Ingest tab; each calls one collection method and formats its result."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._site_stops: dict[str, threading.Event] = {}  # a browser session's Stop for its site crawl

    def collection_choices(self, session: Session, request: gr.Request = None):
        """The collections this user may open, and the one chosen (a new name stays until its first ingest)."""
        names = sorted(set(self.runtime.collection_names(user_name(request))) | {session.collection})
        return gr.update(choices=names, value=session.collection)

    def landing_collection(self, kept: str, session: Session, request: gr.Request = None):
        """On load: the collection this browser chose last (`kept`) when it still exists and this user may open
        it; else, under --auth, the app's start collection when this user may open it (the admin also when it
        does not exist yet: a team's collection is the admin's to make), else their first own or shared one, else
        a new one named after them."""
        from rag.store.locate import collection_exists

        user = user_name(request)
        kept = (kept or "").strip()
        if kept and kept in self.runtime.collection_names(user):  # the server's list: only what they may open
            session.collection, session.sources = kept, None
        if self.runtime.access.enabled and self.runtime.level(session.collection, user) is None and (
                not self.runtime.access.is_admin(user)
                or collection_exists(self.runtime.settings, self.runtime.libraries.stored(session.collection, user))):
            names = self.runtime.collection_names(user)
            session.collection, session.sources = (names[0] if names else personal_collection(user)), None
        return self.collection_choices(session, request), session

    @errors_in_status(3, status=1)
    def choose_collection(self, name: str, session: Session, request: gr.Request = None):
        """Select (or, when writable, create on first ingest) the collection this user works on: a name of their
        own, or "owner/name" for one shared with them. Another user's private one shows empty, as a missing one
        does, and nothing says whether it exists."""
        name = (name or "").strip()
        self.runtime.libraries.stored(name, user_name(request))  # a name it can be, or one sentence saying why not
        if self.runtime.read_only and name not in self.runtime.collection_names(user_name(request)):
            raise RagError(f"Collection {name!r} does not exist, and this read-only notebook cannot create it.")
        session.collection, session.sources = name, None  # a new collection: every document is read
        return session, *self.documents_view(session, user_name(request))

    @errors_in_status(5, status=0)
    def ingest(self, urls_text, files, chunk_size, chunk_overlap, session: Session, progress=gr.Progress(),
               request: gr.Request = None):
        """Fetch, extract, chunk, embed and index the given URLs and uploads, with per-stage progress; the
        upload box is emptied when every source went in (else it keeps them, to try again)."""
        self.runtime.require_writable("ingesting")
        user = user_name(request)
        self.runtime.check_access(session.collection, user, "create")  # before an upload lands in its folder
        limits.check_count("uploaded files", len(files or []), limits.MAX_UPLOADS, "ingest them in several batches.")
        urls, bad = parse_urls(urls_text)
        self.runtime.check_quota(session.collection, user, urls, list(files or []))
        sources, refused = list(urls), []
        for path in files or []:
            try:
                sources.append(str(self.runtime.stash_upload(session.collection, path, user)))
            except RagError as exc:
                refused.append(str(exc))
        if not sources:
            raise RagError(
                "Give at least one http(s) URL or upload a file to ingest." + _bad_note(bad) + " ".join(refused)
            )
        progress(0, desc="Opening the collection (the embedding model loads on first use)…")
        coll = self.runtime.collection(session.collection, user, "create")
        report = coll.ingest(
            sources, progress=_progress_reporter(progress),
            chunk_size=int(chunk_size), chunk_overlap=int(chunk_overlap),
        )
        lines = [fmt.ingest_result_lines_md(report)]
        lines += [f"- ✗ **failed** — {escape_markdown(b)}: not an http(s) URL" for b in bad]
        lines += [f"- ✗ **failed** — {escape_markdown(r)}" for r in refused]
        docs, table = self.documents_view(session, user)
        uploads = None if not (report.errors or refused or bad) else gr.skip()
        return fmt.ingest_summary_md(report), "\n".join(lines), docs, table, uploads

    @errors_in_status(4, status=0)
    def quick_add(self, urls_text, session: Session, progress=gr.Progress(), request: gr.Request = None):
        """Add web pages from beside the chat, with the Ingest step's default chunking."""
        self.runtime.require_writable("ingesting")
        urls, bad = parse_urls(urls_text)
        if not urls:
            raise RagError("Type the http(s) address of a web page to add." + _bad_note(bad))
        self.runtime.check_quota(session.collection, user_name(request), urls)
        progress(0, desc="Opening the collection (the embedding model loads on first use)…")
        coll = self.runtime.collection(session.collection, user_name(request), "create")
        report = coll.ingest(urls, progress=_progress_reporter(progress))
        # The error sentence names the address already; it is not repeated in front of it.
        failed = [escape_markdown(e["error"].rstrip(".")) if e["source"] in e["error"]
                  else f"{escape_markdown(e['source'])}: {escape_markdown(e['error'].rstrip('.'))}"
                  for e in report.errors]
        titles = [escape_markdown(one_line(r.title or r.source, 80)) for r in report.results
                  if r.status != "failed"]
        line = (f"Added {', '.join(f'“{t}”' for t in titles)}. Ask a question about it." if titles else "")
        line += (" Not added: " + "; ".join(failed) + "." if failed else "")
        # The addresses that failed stay in the box, to be corrected and tried again.
        kept = "\n".join(e["source"] for e in report.errors)
        return line.strip() or "Nothing was added.", kept, *self.documents_view(session, user_name(request))

    @errors_in_status(4, status=0)
    def add_site(self, start: str, pages, depth, session: Session, progress=gr.Progress(),
                 request: gr.Request = None):
        """Crawl one site (its host only, up to `pages` pages, `depth` links from the start) into the collection,
        a page at a time; Stop ends it after the page being read, keeping the pages already read."""
        from rag.crawl import CrawlStats, crawl

        self.runtime.require_writable("ingesting")
        start = (start or "").strip()
        if not start:
            raise RagError("Type the start address of the site to add, such as https://example.com/docs/.")
        user = user_name(request)
        self.runtime.check_quota(session.collection, user, [start])  # its first page, at least
        coll = self.runtime.collection(session.collection, user, "create")
        stop = self._site_stops.setdefault(getattr(request, "session_hash", None) or "", threading.Event())
        stop.clear()
        report_progress = _progress_reporter(progress)
        stats = CrawlStats()
        limit = int(pages or 50)
        pages_read = crawl(start, self.runtime.settings, max_pages=limit, depth=int(depth or 0),
                           progress=lambda done, total, url: report_progress("fetch", done, total, url), stats=stats,
                           stop=stop)
        report = coll.add_documents(_until(stop, pages_read), progress=report_progress)
        lines = [fmt.ingest_result_lines_md(report)]
        summary = fmt.ingest_summary_md(report).rstrip(".") + "." + _skipped_note(stats) + _ending_note(
            stats, report, limit, stopped=stop.is_set())
        return summary, "\n".join(lines), *self.documents_view(session, user)

    def stop_site(self, request: gr.Request = None) -> None:
        """Stop this browser session's site crawl after the page it is reading."""
        stop = self._site_stops.get(getattr(request, "session_hash", None) or "")
        if stop is not None:
            stop.set()

    def documents_view(self, session: Session, user: str = ""):
        """The documents table of the user's collection, and a one-line count above it (empty for a
        collection that is not theirs to read, as for a new one)."""
        coll = self.runtime.visible(session.collection, user)
        if coll is None:
            return f"Collection **{escape_markdown(session.collection)}** is empty.", []
        documents = coll.documents()
        chunks = sum(d.chunks for d in documents)
        noun = "document" if len(documents) == 1 else "documents"
        splits = "split" if chunks == 1 else "splits"
        note = f"**{len(documents)}** {noun} · **{chunks}** {splits} in **{escape_markdown(session.collection)}**"
        level = self.runtime.level(session.collection, user) if self.runtime.access.enabled else "own"
        if level in ("read", "write"):  # read-only: why the Ingest step's buttons are greyed out
            note += f" · shared with you {'read-only' if level == 'read' else 'read-write'}"
        return note, fmt.documents_rows(documents)

    @errors_in_status(2, status=0)
    def refresh(self, session: Session, request: gr.Request = None):
        return self.documents_view(session, user_name(request))

    @errors_in_status(5, status=0)
    def select_document(self, rows, session: Session, evt: gr.SelectData, request: gr.Request = None):
        """Selecting a row of the table opens that document's extracted text and metadata."""
        coll = self.runtime.existing_collection(session.collection, user_name(request))
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        shown = _row_source(rows, row)
        doc = coll.document(self._real_source(shown, session, user_name(request)))
        return _shown(doc, shown)

    def _real_source(self, shown: str, session: Session, user: str) -> str:
        """The stored source for what the table shows (uploads are shown by file name)."""
        if shown.startswith(UPLOAD_PREFIX):
            return str(self.runtime.uploads_dir(session.collection, user) / shown[len(UPLOAD_PREFIX):])
        return shown

    @errors_in_status(5, status=0)
    def preview(self, urls_text, files, session: Session, request: gr.Request = None):
        """Load the first URL or upload without indexing it, to see what extraction makes of it."""
        from rag.loaders import load_source

        self.runtime.require_writable("previewing new sources")
        self.runtime.check_access(session.collection, user_name(request), "create")  # the upload lands in its folder
        urls, bad = parse_urls(urls_text)
        if files:
            source = str(self.runtime.stash_upload(session.collection, files[0], user_name(request)))
        elif urls:
            source = urls[0]
        else:
            raise RagError("Give an http(s) URL or upload a file to preview." + _bad_note(bad))
        doc = load_source(source, self.runtime.settings)
        return _shown(doc, display_source(source))

    def ask_delete(self, source: str):
        """The first press of Delete: name the document and ask again (nothing is deleted yet)."""
        if not (source or "").strip():
            return gr.update(visible=False), "Select a document in the table first, then delete it."
        return gr.update(visible=True), (f"Delete **{escape_markdown(source.strip())}**? It stays in the trash for "
                                         f"{TRASH_DAYS} days, and can be restored from there.")

    @errors_in_status(5, status=1)
    def delete(self, source: str, session: Session, request: gr.Request = None):
        """Move one document to the trash (its splits leave the collection); its preview empties at once."""
        self.runtime.require_writable("deleting documents")
        user = user_name(request)
        self.runtime.check_access(session.collection, user, "write")
        if not (source or "").strip():
            raise RagError("Select a document in the table first, then delete it.")
        stored = self._real_source(source.strip(), session, user)
        deleted = self.runtime.delete_document(session.collection, user, stored)
        if not deleted:
            raise RagError(f"{source!r} is not in collection {session.collection!r}; refresh the table.")
        # Toasts render HTML: a source named like a tag must show as text.
        gr.Info(f"Deleted {escape_html(source)}; it is in the trash for {TRASH_DAYS} days")
        return "", *self.documents_view(session, user), "", None

    def trash_choices(self, session: Session, request: gr.Request = None):
        """The documents deleted from the chosen collection in the last 7 days, for one who may change it."""
        try:
            entries = self.runtime.trash_entries(session.collection, user_name(request))
        except RagError:
            entries = []  # not theirs to change: an empty trash, as for a collection with none
        return gr.update(choices=[(_trash_label(e), e.id) for e in entries], value=None,
                         label=f"Deleted documents: {len(entries)}")

    @errors_in_status(3, status=0)
    def restore_document(self, entry_id: str, session: Session, request: gr.Request = None):
        """Put a document back from the trash: indexed again with the chunking it had."""
        if not entry_id:
            raise RagError("Choose a document in the trash first, then restore it.")
        user = user_name(request)
        report = self.runtime.restore(session.collection, user, entry_id)
        title = report.results[0].title if report.results else ""
        return f"Restored “{escape_markdown(one_line(title or 'the document', 80))}”.", \
            *self.documents_view(session, user)


def personal_collection(user: str) -> str:
    """A collection name of `user`'s own: their name in the letters a name allows, then "-notes"."""
    from rag.store import validate_collection_name

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", user).strip("-_.")[:46] or "user"  # with "-notes", 52: rag.access
    return validate_collection_name(f"{safe}-notes")


def trash_label(name: str, entry) -> str:
    """A line of the trash: what was deleted (`name`), when and by whom."""
    from datetime import datetime

    when = datetime.fromtimestamp(entry.deleted_at).strftime("%Y-%m-%d %H:%M")
    by = f" by {entry.deleted_by}" if entry.deleted_by else ""
    return f"{name} · deleted {when}{by}"


def _trash_label(entry) -> str:
    return trash_label(one_line(entry.title or display_source(entry.source), 60), entry)


def _row_source(rows, row: int) -> str:
    values = rows.values.tolist() if hasattr(rows, "values") else rows
    try:
        return str(values[row][1])
    except (IndexError, TypeError):
        raise RagError("That row is no longer in the table; refresh it.") from None


def _preview(doc) -> tuple[str, dict]:
    limit = 20_000
    text = doc.text if len(doc.text) <= limit else doc.text[:limit] + f"\n… ({len(doc.text) - limit} more characters)"
    # The file's place on the server is not the reader's business (nor, shared, another person's).
    meta = {"title": one_line(doc.title), "source": display_source(doc.source), "characters": len(doc.text),
            **{k: v for k, v in (doc.metadata or {}).items() if k != "path"}}
    if doc.pages:
        meta["pages"] = len(doc.pages)
    if ocr_pages := (doc.metadata or {}).get("ocr_pages"):  # said first, so nobody takes it for the file's own text
        shown = ", ".join(map(str, ocr_pages[:20])) + (" …" if len(ocr_pages) > 20 else "")
        meta = {"read by OCR": f"page {shown}: text recognised from an image, which may hold misread words",
                **meta}
    return text, meta


def _shown(doc, source: str) -> tuple:
    """A previewed document: a note above it, its source, text and metadata, and the preview opened. A text read
    by OCR says so in the note too, not only in its metadata: its reader must know it may hold misread words."""
    text, meta = _preview(doc)
    note = f"**Read by OCR** ({meta['read by OCR']})." if "read by OCR" in meta else ""
    return note, source, text, meta, gr.Accordion(open=True)


def _skipped_note(stats) -> str:
    """What a site crawl left out without a line of its own (none of it counts towards the pages asked for):
    pages repeating another's text, addresses robots.txt forbids or that lead off the site, and addresses that
    could not be read (the first three named)."""
    said = []
    if stats.duplicates:
        said.append(f"{stats.duplicates} {'page repeats' if stats.duplicates == 1 else 'pages repeat'} the text "
                    "of a page already read")
    if stats.disallowed:
        said.append(f"{stats.disallowed} {'address is' if stats.disallowed == 1 else 'addresses are'} kept out by "
                    "robots.txt or lead off the site")
    if stats.failed:
        named = ", ".join(escape_markdown(one_line(urlsplit(url).path or url, 60)) for url, _ in stats.failures[:3])
        said.append(f"{stats.failed} {'address' if stats.failed == 1 else 'addresses'} could not be read (a 404, "
                    f"another error or no text: {named}{' …' if stats.failed > 3 else ''})")
    gave_up = f" The crawl gave up after {stats.failed} addresses that could not be read." if stats.gave_up else ""
    return (f" Skipped: {'; '.join(said)}." if said else "") + gave_up


def _ending_note(stats, report, limit: int, stopped: bool) -> str:
    """Why a site crawl ended, when not for want of pages: Stop (and what of the site is in the collection
    then), or the page limit with addresses left unread."""
    if stopped:
        kept = report.documents_added + report.documents_replaced + report.documents_unchanged
        pages = "the page read before Stop is" if kept == 1 else f"the {kept} pages read before Stop are"
        return f" Stopped: {pages} in the collection." if kept else " Stopped before any page was read."
    if stats.left:
        return (f" Reached the limit of {limit} {'page' if limit == 1 else 'pages'}; {stats.left} more "
                f"{'address was' if stats.left == 1 else 'addresses were'} found and not read (raise Pages to read "
                "them).")
    return ""


def _bad_note(bad: list[str]) -> str:
    """The entries that are not addresses (the box splits at spaces, commas and lines), quoted, the first
    three and how many more."""
    if not bad:
        return ""
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f" Not http(s) addresses: {', '.join(repr(b) for b in bad[:3])}{more}."


def _until(stop: threading.Event, items):
    """The items until `stop` is set; the crawl's generator is closed, so it reads no further page."""
    try:
        for item in items:
            if stop.is_set():
                break
            yield item
    finally:
        items.close()
