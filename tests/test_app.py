"""The notebook without a browser: start-up cost, flags, read-only refusal, escaping, callback output."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import app
from ui import chat_format, escaping, search_format
from rag.errors import RagError
from rag.retrieval import SearchHit
from rag.settings import load_settings
from tests import fakes

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- start-up and flags


def test_importing_app_loads_no_ui_library_or_model():
    code = (
        "import sys, app\n"
        "heavy = [m for m in ('gradio', 'torch', 'sentence_transformers', 'faiss', 'llama_cpp', 'gpt4all')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_defaults_serve_locally_and_allow_private_urls(tmp_path):
    settings, launch = app.configure(["--index-dir", str(tmp_path)], environ={})
    assert (launch.host, launch.port, launch.share, launch.read_only) == ("127.0.0.1", 7860, False, False)
    assert not launch.exposed
    assert settings.allow_private_urls
    assert settings.index_dir == tmp_path


@pytest.mark.parametrize("flags", [["--share"], ["--host", "0.0.0.0"], ["--host", "192.168.1.20"]])
def test_exposed_app_refuses_private_urls(tmp_path, flags):
    settings, launch = app.configure(["--index-dir", str(tmp_path), *flags], environ={})
    assert launch.exposed
    assert settings.allow_private_urls is False


def test_private_urls_can_be_allowed_explicitly(tmp_path):
    settings, _ = app.configure(["--index-dir", str(tmp_path), "--share", "--allow-private-urls"], environ={})
    assert settings.allow_private_urls


def test_environment_sets_host_port_and_modes(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_PORT", "9001")
    monkeypatch.setenv("RAG_READ_ONLY", "1")
    monkeypatch.setenv("RAG_HOST", "localhost")
    settings, launch = app.configure(["--index-dir", str(tmp_path), "--backend", "gpt4all", "--max-tokens", "24"])
    assert (launch.port, launch.read_only, launch.exposed) == (9001, True, False)
    assert (settings.backend, settings.max_tokens) == ("gpt4all", 24)


def test_auth_from_a_pair_or_a_file(tmp_path):
    assert app.parse_auth("ann:secret") == (("ann", "secret"),)
    users = tmp_path / "users.txt"
    users.write_text("# demo accounts\nann:secret\n\nbob:pa:ss\n")
    assert app.parse_auth(str(users)) == (("ann", "secret"), ("bob", "pa:ss"))
    with pytest.raises(RagError, match="user:password"):
        app.parse_auth("just-a-name")


def test_the_admin_is_the_first_user_unless_named(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("ann:secret\nbob:hunter2\n")
    launch = app.configure(["--index-dir", str(tmp_path), "--auth", str(users)], environ={})[1]
    assert launch.admin_name == "ann" and launch.is_admin("ann") and not launch.is_admin("bob")
    launch = app.configure(["--index-dir", str(tmp_path), "--auth", str(users), "--admin", "bob"], environ={})[1]
    assert launch.is_admin("bob") and not launch.is_admin("ann")
    with pytest.raises(RagError, match="not one of the --auth users"):
        app.configure(["--index-dir", str(tmp_path), "--auth", str(users), "--admin", "carol"], environ={})
    # without --auth: the one person at this machine is the admin, nobody is on an exposed app
    assert app.configure(["--index-dir", str(tmp_path)], environ={})[1].is_admin("")
    assert not app.configure(["--index-dir", str(tmp_path), "--host", "0.0.0.0"], environ={})[1].is_admin("")


# ---------------------------------------------------------------- read-only mode


@pytest.fixture
def read_only(settings):
    from ui.runtime import Runtime

    return Runtime(settings, read_only=True)


def test_read_only_handlers_refuse_changes_whatever_the_browser_sends(read_only, tmp_path):
    from ui.library import Library
    from ui.state import Session

    upload = tmp_path / "notes.txt"
    upload.write_text("hello")
    from ui.settings_form import SettingsForm

    library, gen = Library(read_only), SettingsForm(read_only)
    calls = [
        lambda: library.ingest("https://example.com", [str(upload)], 500, 0, Session())[0],
        lambda: library.delete("https://example.com", Session())[1],
        lambda: library.preview("https://example.com", None, Session())[0],
        lambda: library.quick_add("https://example.com", Session())[0],
        lambda: gen.apply_settings("gpt4all", "", 0.5, 64, 2048, 4, "hybrid", "auto", "", "", Session())[0],
    ]
    for call in calls:
        assert "read-only" in call()
    assert not (Path(read_only.settings.index_dir) / "_uploads").exists()


def test_read_only_cannot_create_a_collection(read_only):
    from ui.library import Library
    from ui.state import Session

    session = Session()
    assert "cannot create" in Library(read_only).choose_collection("fresh", session)[1]
    assert session.collection == "default"


def test_oversized_upload_is_refused_with_the_limit(settings, tmp_path):
    from ui.runtime import Runtime

    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(RagError, match="limited to 1 MB"):
        Runtime(settings, max_upload_mb=1).stash_upload("default", str(big))


def test_url_box_separates_urls_from_other_text():
    from ui.library import parse_urls

    urls, bad = parse_urls("https://a.example/x, http://b.example/y\nnot-a-url javascript:alert(1) https://a.example/x")
    assert urls == ["https://a.example/x", "http://b.example/y"]
    assert bad == ["not-a-url", "javascript:alert(1)"]


# ---------------------------------------------------------------- escaping untrusted text


def hit(rank=1, title="Title", source="https://example.com/a", text="some text", **kw) -> SearchHit:
    values = dict(rank=rank, score=0.03, dense_score=0.5, bm25_score=1.2, source=source, title=title, page=None,
                  start=0, end=len(text), text=text, chunk_id=rank)
    values.update(kw)
    return SearchHit(**values)


def test_markdown_escaping_neutralises_markup_and_keeps_urls_readable():
    nasty = '<script>alert(1)</script> ![x](http://evil.example/p.png) **b** [l](javascript:alert(1))\n# H\n1. item'
    out = escaping.escape_markdown(nasty)
    assert "<script" not in out and "&lt;script&gt;" in out
    assert "![" not in out and "](" not in out and "**" not in out
    assert "\n\\# H" in out and "\n1\\. item" in out
    assert "see https://example.com/a_b(c)" in escaping.escape_markdown("see https://example.com/a_b(c)")


def test_hit_cards_escape_text_and_only_link_http_sources():
    card = search_format.hit_card_html(hit(title="<img src=x onerror=alert(1)>", source="javascript:alert(1)",
                                 text="storm <b>warning</b> Storm"), ["storm"])
    assert "<img" not in card and "<b>" not in card and "href" not in card
    assert card.count("<mark>") == 2
    linked = search_format.hit_card_html(hit(source='https://example.com/"onmouseover="x'), [])
    assert 'href="https://example.com/&quot;onmouseover=&quot;x"' in linked


def test_sources_escape_chunk_text_inside_their_details():
    md = chat_format.sources_md([{"n": 1, **hit(text="<iframe src=//evil>", title="<b>t</b>").to_dict()}])
    assert "<iframe" not in md and "<b>t</b>" not in md
    assert md.startswith("<details><summary>[1] &lt;b&gt;t&lt;/b&gt;")


def test_uploads_are_shown_by_file_name():
    assert escaping.display_source("/srv/idx/_uploads/default/notes.txt") == "upload: notes.txt"
    assert escaping.display_source("https://example.com/_uploads/x/y") == "https://example.com/_uploads/x/y"


# ---------------------------------------------------------------- chat callback with a scripted model


class ScriptedGenerator(fakes.ScriptedGenerator):
    """The scripted model of tests/fakes.py with one reply for every call and the notebook's room."""

    def __init__(self, reply: str, n_ctx: int = 400):
        super().__init__(reply, n_ctx=n_ctx)


class FakeCollection:
    def __init__(self, hits):
        self.hits, self.queries = hits, []

    def search(self, query, k=4, mode="hybrid", sources=None):
        """The scripted hits, those of `sources` only when given (as the store filters them)."""
        self.queries.append(query)
        hits = [h for h in self.hits if sources is None or h.source in sources][:k]
        return [dataclasses.replace(h, rank=i) for i, h in enumerate(hits, 1)]


class ScriptedRuntime:
    """The parts of Runtime the callbacks use, with a scripted model, a fixed collection and real stores."""

    read_only = False

    def __init__(self, generator, collection, index_dir: Path | None = None):
        import tempfile

        from rag.conversations import ConversationStore
        from ui.jobs import Jobs

        self.gen, self.coll = generator, collection
        self.jobs = Jobs()
        self._dir = Path(tempfile.mkdtemp(prefix="scripted-")) if index_dir is None else index_dir
        self.conversations = ConversationStore(self._dir)
        self.settings = load_settings(environ={}, index_dir=self._dir / "index", models_dir=self._dir / "models")

    def require_writable(self, action):
        pass

    def existing_collection(self, name, user=""):
        return self.coll

    def collection(self, name, user="", want="read"):
        return self.coll

    def visible(self, name, user=""):
        return self.coll

    def check_access(self, name, user, want="read"):
        pass  # one person, as without --auth: rag.access and tests/test_access_app.py test the rule

    def collection_names(self, user=""):
        return ["default"]

    def generator(self, chat, backend=None):
        return self.gen

    def is_loaded(self, backend):
        return True

    def holds(self, chat, backend):
        return True

    def answer_style(self, chat):
        return "free" if chat.answer_style == "auto" else chat.answer_style  # the scripted model is no file

    def loaded_model(self, backend):
        return "scripted.gguf"

    def export_path(self, session):
        folder = self._dir / "exports" / (session.conversation_id or "unsaved")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / "conversation.md"


def test_chat_streams_escaped_answer_then_lists_sources_and_prompt():
    from ui.generation import Generation
    from ui.state import Session

    gen = ScriptedGenerator("Eleven days <script>x</script> [1]")
    runtime = ScriptedRuntime(gen, FakeCollection([hit(text="The storm lasted eleven days.")]))
    session = Session()
    updates = list(Generation(runtime).chat("How long was the storm?", session))

    partial_answers = [u[0][-1]["content"] for u in updates
                       if isinstance(u[0], list) and u[0] and u[0][-1]["role"] == "assistant"]
    assert len(set(partial_answers)) >= 3, "the answer should arrive in pieces"
    chatbot, status, standalone, prompt, usage, timings, final_session = updates[-1]
    assert [m["role"] for m in chatbot] == ["user", "assistant", "assistant", "assistant"]
    assert "<script>" not in chatbot[1]["content"] and "&lt;script&gt;" in chatbot[1]["content"]
    # the answer's evidence (the source sentence that supports it), then the sources
    assert chatbot[2]["metadata"]["title"] == "Evidence (1)" and "The storm lasted eleven days." in chatbot[2]["content"]
    assert chatbot[3]["metadata"]["title"] == "Sources (1)" and '#cite-0-1">[1]</a> Title — “The storm lasted' in chatbot[3]["content"]
    assert "Question: How long was the storm?" in prompt and prompt == gen.prompts[-1]
    assert "prompt" in usage and "400" in usage and "tokens/s" in timings
    assert final_session.turns[0].answer.startswith("Eleven days")


def test_follow_up_shows_its_standalone_question_and_export_has_sources(tmp_path):
    from ui.generation import Generation
    from ui.state import Session, Turn

    gen = ScriptedGenerator("When was the lighthouse automated?")
    coll = FakeCollection([hit(text="Automated in 1991.")])
    session = Session(turns=[Turn("Tell me about the lighthouse", "Tell me about the lighthouse", "It is old.", [])])
    *_, last = Generation(ScriptedRuntime(gen, coll)).chat("When was it automated?", session)
    chatbot, standalone = last[0], last[2]
    assert coll.queries == ["When was the lighthouse automated?"]
    assert "When was the lighthouse automated?" in standalone
    assert any(m.get("metadata", {}).get("title") == "Standalone question" for m in chatbot)

    exported = Path(Generation(ScriptedRuntime(gen, coll)).export(session)[0]["value"]).read_text()
    assert "## 2. When was it automated?" in exported and "Automated in 1991." in exported


def test_bad_questions_are_one_sentence_in_the_status_and_the_rest_stays():
    from ui.generation import Generation
    from ui.state import MAX_QUESTION_CHARS, Session

    generation = Generation(ScriptedRuntime(ScriptedGenerator("x"), FakeCollection([])))
    for question, message in (("   ", "Type a question"), ("x" * (MAX_QUESTION_CHARS + 1), "limit is")):
        *_, last = generation.chat(question, Session())
        status = last[1]
        assert message in status
        # Every other output is told to stay as it is (gr.skip()), so nothing on screen is wiped.
        assert all(v == {"__type__": "update"} for i, v in enumerate(last) if i != 1)


def test_the_notebooks_answer_settings_can_be_set_at_start_as_the_clis_can(tmp_path):
    """The notebook measured against the CLI needs the same temperature, k, mode and style from the start."""
    settings, _ = app.configure(["--temperature", "0", "-k", "6", "--mode", "dense", "--answer-style", "free"],
                                environ={})
    assert (settings.temperature, settings.k, settings.mode, settings.answer_style) == (0.0, 6, "dense", "free")
    settings, _ = app.configure([], environ={"RAG_TEMPERATURE": "0.5", "RAG_K": "3", "RAG_MODE": "bm25"})
    assert (settings.temperature, settings.k, settings.mode) == (0.5, 3, "bm25")
    with pytest.raises(RagError, match="outside the allowed range"):
        app.configure(["-k", "999"], environ={})
