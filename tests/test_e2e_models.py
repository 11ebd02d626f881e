"""A capable model in two clicks, driven in Chromium: from the tiny-model notice, open 📦 Models, download the
recommended catalogue model from a local hub (its bar reaching 100%), use it, and answer with it.

The local hub answers the real hub's `resolve` URLs for the catalogue entry and serves a real GGUF file from
disk (stories260K, 1 MB) under that entry's name: the download, checksum and loading are all real; the model
is not the one the catalogue names, which is why its answers here are not judged.
"""

from __future__ import annotations

import pytest

from e2e_harness import CHROMIUM, AppProcess
from test_e2e_browser import ARTICLE
from test_e2e_notebook import ANSWER_MS, SLOW_MS, ask, new_page, quick_add, wait_status
from tests.conftest import shared_data
from tests.hub_server import LocalHub

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="Debian's chromium is not installed (apt-get install chromium); the browser test needs it"),
]

SITE_PAGES = {"lighthouse.html": ARTICLE}  # served by conftest's `site`


def test_a_newcomer_downloads_a_model_in_the_page_and_answers_with_it(browser, site, workdir, monkeypatch):
    from rag.models import CATALOGUE, memory_mb, recommended

    stories = shared_data("models", "stories260K.gguf")
    entry = recommended(memory_mb()[0]) or CATALOGUE["llama-3.2-1b"]
    hub = LocalHub().start()
    hub.serve(entry.repo, entry.filename, stories, bytes_per_s=256 << 10)  # about 4 s: the bar is seen moving
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HOME", str(workdir / "home"))  # the models dir and other tools' models: empty
    for name in ("XDG_DATA_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS"):
        monkeypatch.delenv(name, raising=False)
    app = AppProcess(workdir, index_dir=workdir / "index-models")
    app.wait_ready()
    try:
        page = new_page(browser, app.url)
        quick_add(page, f"{site.url}/lighthouse.html")
        notice = page.locator("#tiny-model-note")
        notice.wait_for(state="visible")
        assert "📦 Models" in notice.inner_text()

        # Click one: the panel opens with the model recommended for this machine chosen.
        page.locator("#open-models").click()
        page.wait_for_selector("#models-table table")
        assert "⭐" in page.locator("#models-table").inner_text()
        assert entry.name in page.locator("#catalogue-model input").input_value()
        # Click two: Download. The bar moves, then reaches 100% once the checksum is right.
        page.locator("#download-model").click()
        page.wait_for_function("() => { const p = document.querySelector('#download-progress progress');"
                               " return p && p.value > 0 && p.value < 100; }", timeout=SLOW_MS)
        wait_status(page, "Downloaded", selector="#download-status", timeout=SLOW_MS)
        assert page.locator("#download-progress progress").get_attribute("value") == "100.0"
        wait_status(page, "downloaded", selector="#models-table", timeout=SLOW_MS)  # the tables, listed again
        page.locator("#models-panel").screenshot(path=str(workdir / "models-panel.png"))

        page.locator("#use-model").click()
        wait_status(page, "Now answering with", selector="#download-status", timeout=SLOW_MS)
        assert entry.name in page.locator("#model-in-use").inner_text()
        notice.wait_for(state="hidden")

        ask(page, "What did the keepers do during the storm?")
        wait_status(page, "Answered by llamacpp", timeout=ANSWER_MS)
        page.wait_for_function("() => (document.querySelector('#model-in-use')?.innerText || '').includes('loaded')",
                               timeout=ANSWER_MS)
        assert entry.filename in page.locator("#model-in-use").inner_text()
        assert len([path for path, _ in hub.gets]) == 1
        page.close()
    finally:
        app.stop()
        hub.stop()
