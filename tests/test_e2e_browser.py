"""The notebook driven as a person would: the real app in a subprocess, a real browser, real models.

Needs Debian's chromium (`apt-get install chromium`) and the Playwright Python package; the
browser is started from the system binary, so no `playwright install` download is needed.
Set RAG_UPDATE_SCREENSHOTS=1 to copy the screenshots into assets/ for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e_harness import CHROMIUM, REPO, AppProcess

# Generous waits: the first ingest loads the embedding model and the first answer a chat model.
SLOW_MS = 120_000
# A small model on a busy CPU can take minutes for a follow-up (condense, then answer); waits, not limits.
ANSWER_MS = 600_000

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium); the browser test needs it"
)

ARTICLE = """<!doctype html><html><head><title>The Lighthouse Keepers of Vardø</title></head><body>
<nav>Home | About | Contact</nav>
<article><h1>The Lighthouse Keepers of Vardø</h1>
<p>Vardø lighthouse stands on a small island at the far north-eastern edge of Norway. For more than a
century its keepers tended the lamp through the polar night, when the sun does not rise for two months.</p>
<p>The keepers kept a logbook of every ship that passed. In the winter of 1923 the logbook records a storm
that lasted eleven days, during which the keepers rationed paraffin and read aloud to each other.</p>
<p>A visitor once wrote &lt;img src=x onerror="window.__pwned=1"&gt; in the guest book of the lighthouse.</p>
<p>The lighthouse was automated in 1991. Today the station is a small museum.</p>
</article></body></html>"""

NOTES = """Notes on sourdough baking.

A sourdough starter is a culture of wild yeast and lactic acid bacteria. Feed the starter with equal
weights of flour and water every day.

Bulk fermentation takes four to six hours at room temperature. The dough is ready when it has grown by half.
"""


SITE_PAGES = {"lighthouse.html": ARTICLE}  # served by conftest's `site`


class Shots:
    """Screenshots into the test's directory, and into assets/ when asked to refresh them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.update = os.environ.get("RAG_UPDATE_SCREENSHOTS") == "1"

    def take(self, page, name: str) -> None:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if self.update:
            shutil.copyfile(path, REPO / "assets" / f"{name}.png")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def test_notebook_end_to_end(app, browser, site, workdir):
    shots = Shots(workdir)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(SLOW_MS)
    page.goto(app.url)
    page.wait_for_selector("#header")

    # Step 1: ingest a web page and an uploaded file, and see a line per source.
    notes = workdir / "sourdough-notes.txt"
    notes.write_text(NOTES, encoding="utf-8")
    page.locator("#urls textarea").fill(f"{site.url}/lighthouse.html")
    page.locator("#files input[type=file]").set_input_files(str(notes))
    page.wait_for_selector("#files td.filename[aria-label='sourdough-notes.txt']")
    page.locator("#ingest-btn").click()
    page.wait_for_function("document.querySelector('#ingest-summary').innerText.includes('new splits')")
    summary, results = text_of(page, "#ingest-summary"), text_of(page, "#ingest-results")
    assert "2 added" in summary
    assert "The Lighthouse Keepers of Vardø" in results and "sourdough-notes.txt" in results
    page.wait_for_function("document.querySelector('#docs-note').innerText.includes('2 documents')")
    assert "sourdough-notes.txt" in text_of(page, "#documents")
    shots.take(page, "ingest")

    # Step 2: search, and see scored hits with the query terms marked.
    open_tab(page, "2 · Search")
    search(page, "lighthouse keepers storm")
    first = page.locator("#hits .hit").first
    assert "Lighthouse" in first.locator(".hit-title").inner_text()
    assert first.locator(".score.main").inner_text().startswith("fused ")
    assert first.locator("mark").count() > 0
    page.wait_for_selector("#map-chart canvas, #map-chart svg")

    # Untrusted page text is shown as text, never run as markup.
    search(page, "visitor guest book")
    page.wait_for_selector("#hits >> text=onerror")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#hits img").count() == 0
    search(page, "lighthouse keepers storm")
    page.wait_for_selector("#hits .hit mark >> text=storm")
    shots.take(page, "search")

    # Step 4: ask, watch the answer stream in, and see its numbered sources.
    open_tab(page, "4 · Chat")
    watch_stream(page)
    ask(page, "What did the keepers do during the storm?", "llamacpp")
    assert page.evaluate("window.__partials.size") >= 2, "the answer did not arrive in pieces"
    chat = text_of(page, "#chatbot")
    assert "Sources (" in chat
    page.locator("#chatbot .thought").last.click()
    page.wait_for_selector("#chatbot details summary >> text=[1]")
    page.locator("#prompt-inspector").click()
    assert "Question: What did the keepers do during the storm?" in page.locator("#prompt textarea").input_value()
    assert "tokens/s" in text_of(page, "#timings") or "time to first token" in text_of(page, "#timings")
    shots.take(page, "chat")

    # Switch the backend in the settings panel and ask a follow-up.
    page.locator("#settings").click()
    page.locator("#backend input").click()
    page.get_by_role("option", name="gpt4all").click()
    page.locator("#apply-settings").click()
    page.wait_for_selector("#settings-applied >> text=gpt4all")
    ask(page, "When was the lighthouse automated?", "gpt4all")
    # A follow-up that names its own subject is searched as typed: the previous question would pull back its passages.
    standalone = text_of(page, "#standalone")
    assert "used as typed" in standalone, standalone

    # Export the conversation with its sources.
    page.locator("#export-btn").click()
    page.wait_for_selector("#export-file td.filename[aria-label='conversation.md']")

    # Step 5: the same question answered by both backends side by side.
    open_tab(page, "5 · Compare")
    page.locator("#compare-question textarea").fill("How long did the storm last?")
    page.locator("#compare-btn").click()
    page.wait_for_function(
        "['llamacpp', 'gpt4all'].every(b => document.querySelector(`#compare-${b}-timings`).innerText.includes('total'))",
        timeout=ANSWER_MS,
    )
    shots.take(page, "compare")
    page.close()


def search(page, query: str) -> None:
    page.locator("#search-query textarea").fill(query)
    page.locator("#search-btn").click()
    page.wait_for_selector(f"#search-note >> text={query}")


def watch_stream(page) -> None:
    """Record every distinct chat text shown while an answer is being written."""
    page.evaluate("""() => {
        window.__partials = new Set();
        const chat = document.querySelector('#chatbot');
        new MutationObserver(() => {
            const status = document.querySelector('#chat-status').innerText;
            if (status.includes('Answering with')) window.__partials.add(chat.innerText);
        }).observe(chat, {subtree: true, childList: true, characterData: true});
    }""")


def ask(page, question: str, backend: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#send-btn").click()
    page.wait_for_selector(f"#chat-status >> text=Answered by {backend}", timeout=ANSWER_MS)


def test_read_only_mode_refuses_ingest(browser, site, workdir, app):
    guest = AppProcess(workdir, "--read-only")
    try:
        guest.wait_ready()
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(SLOW_MS)
        page.goto(guest.url)
        page.wait_for_selector("#header >> text=read-only")
        assert page.locator("#ingest-btn").is_disabled()
        assert page.locator("#urls textarea").is_disabled()
        # Wait for the page's load events, which re-render the tab, before tampering with it.
        page.wait_for_function("document.querySelector('#docs-note').innerText.trim().length > 0")
        # A guest who re-enables the button in the page is still refused by the server.
        page.evaluate("document.querySelector('#ingest-btn').disabled = false")
        page.locator("#ingest-btn").click(force=True)
        page.wait_for_selector("text=read-only (demo mode): ingesting is disabled")
        page.close()
    finally:
        guest.stop()
