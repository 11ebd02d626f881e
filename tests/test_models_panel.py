"""⚙ Settings → 📦 Models through its callbacks, on a real runtime, against a local hub serving a real GGUF:
the listing, a download's bar to 100%, the admin rule, and Use applying the downloaded model."""

from __future__ import annotations

import pytest

from rag.models import CATALOGUE
from rag.settings import load_settings
from tests.conftest import shared_data
from tests.hub_server import LocalHub
from ui.models_panel import ModelsPanel
from ui.runtime import Runtime
from ui.settings_form import SettingsForm
from ui.state import Session

ENTRY = CATALOGUE["llama-3.2-1b"]


class Request:
    """What Gradio hands a callback: who is logged in."""

    def __init__(self, username=None):
        self.username, self.session_hash = username, "s1"


@pytest.fixture
def hub(monkeypatch):
    hub = LocalHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    yield hub
    hub.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no other tool's models
    for name in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "OLLAMA_MODELS", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _panel(tmp_path, is_admin=None):
    settings = load_settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models")
    runtime = Runtime(settings, is_admin=is_admin)
    return ModelsPanel(SettingsForm(runtime)), runtime


def test_the_listing_shows_the_catalogue_with_a_recommendation_for_this_machine(home):
    panel, _ = _panel(home)
    table, picker, download, _, use = panel.listing(Request())
    assert "Catalogue" in table and "⭐" in table and "llama-3.2-3b" in table and "apache-2.0" in table
    assert picker["value"] in CATALOGUE and "smollm2-135m" not in [v for _, v in picker["choices"]]
    assert download["interactive"] is True and use["visible"] is False  # nothing downloaded yet


def test_download_streams_its_bar_to_100_percent_then_use_applies_the_model(home, hub):
    stories = shared_data("models", "stories260K.gguf")
    hub.serve(ENTRY.repo, ENTRY.filename, stories, bytes_per_s=256 << 10)  # slow enough to see the bar move
    panel, runtime = _panel(home)
    steps = list(panel.download(ENTRY.name, Request()))
    bars = [bar for bar, _, _ in steps]
    assert 'value="100.0"' in bars[-1] and "Downloaded" in steps[-1][1] and steps[-1][2]["visible"] is True
    assert any("MB/s" in line for _, line, _ in steps[:-1])  # the bar moved through the transfer
    assert (runtime.settings.models_dir / ENTRY.filename).read_bytes() == stories.read_bytes()
    listed = panel.listing(Request())
    assert "downloaded" in listed[0] and (listed[1]["value"] != ENTRY.name or listed[4]["visible"])
    assert panel.use_button(ENTRY.name)["visible"] is True  # after a reload, Use is offered again

    session = Session()
    applied, line, session, *form = panel.use(ENTRY.name, session)
    assert session.chat.model == ENTRY.name and form[1] == ENTRY.name
    assert "Now answering with" in applied and "loads it" in applied and ENTRY.name in line


def test_only_the_admin_downloads_on_a_shared_notebook(home, hub):
    hub.serve(ENTRY.repo, ENTRY.filename, shared_data("models", "stories260K.gguf"))
    panel, runtime = _panel(home, is_admin=lambda user: user == "ann")
    assert panel.listing(Request("bob"))[2]["interactive"] is False
    steps = list(panel.download(ENTRY.name, Request("bob")))
    assert "Only the notebook's admin" in steps[-1][1]
    assert "Only the notebook's admin" in panel.cancel(ENTRY.name, Request("bob"))
    assert hub.gets == [] and not (runtime.settings.models_dir / ENTRY.filename).exists()
    assert "Downloaded" in list(panel.download(ENTRY.name, Request("ann")))[-1][1]


def test_a_failed_download_is_one_sentence_and_nothing_is_used(home, hub):
    hub.serve(ENTRY.repo, ENTRY.filename, shared_data("models", "stories260K.gguf"), status=401)
    panel, runtime = _panel(home)
    *_, (bar, status, use) = panel.download(ENTRY.name, Request())
    assert status.startswith("⚠️") and "HF\\_TOKEN" in status and use["visible"] is False
    assert not (runtime.settings.models_dir / ENTRY.filename).exists()
    assert "not one" in list(panel.download("gpt-5", Request()))[-1][1]


def test_a_model_chosen_after_another_was_loaded_is_said_to_load_with_the_next_answer(home):
    import dataclasses

    stories = shared_data("models", "stories260K.gguf")
    panel, runtime = _panel(home)
    form = panel.form
    first = dataclasses.replace(Session().chat, model=str(stories), n_ctx=256, max_tokens=16)
    runtime.generator(first)  # an answer loaded stories260K
    assert runtime.holds(first, "llamacpp") and "stories260K.gguf (loaded)" in form.model_line(first)
    chosen = dataclasses.replace(first, model="")  # then the default was chosen in Settings
    assert not runtime.holds(chosen, "llamacpp")
    line = form.model_line(chosen)
    assert "stories260K" not in line and "loads with the next answer" in line
    from ui.generation import Generation

    assert Generation(runtime)._loading_note(chosen).startswith("Loading the **llamacpp** model")
