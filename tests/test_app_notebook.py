"""The notebook's callbacks without a browser: Stop, errors in the status line, settings that revert,
odd values said out loud, scores that match the mode, saved conversations, cited passages, escaping.

A scripted generator stands in for the model only where the test is about the logic around it;
the conversations are stored in a real SQLite file under tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.conversations import ConversationStore
from rag.errors import RagError
from test_app import FakeCollection, ScriptedGenerator, ScriptedRuntime, hit
from ui import charts, chat_format, escaping, passage_viewer, search_format
from ui import formatting as fmt

SKIP = {"__type__": "update"}


class StoppingGenerator(ScriptedGenerator):
    """Streams its reply word by word; calls `on_piece(i)` before each piece, and records closing."""

    def __init__(self, reply: str, on_piece=None, n_ctx: int = 400):
        super().__init__(reply, n_ctx)
        self.on_piece, self.closed, self.pieces_sent = on_piece, 0, 0

    def stream(self, messages, **params):
        self.prompts.append(self.format_prompt(messages))
        try:
            for i, word in enumerate(self.script.split()):
                if self.on_piece:
                    self.on_piece(i)
                self.pieces_sent += 1
                yield word if i == 0 else " " + word
        finally:
            self.closed += 1


def _generation(gen, hits, tmp_path):
    from ui.generation import Generation

    runtime = ScriptedRuntime(gen, FakeCollection(hits), index_dir=tmp_path)
    return Generation(runtime), runtime


# ---------------------------------------------------------------- Stop


def test_stop_mid_answer_ends_the_stream_and_keeps_the_partial_answer(tmp_path):
    from ui.request import job_key
    from ui.state import Session

    reply = " ".join(f"word{i}" for i in range(200))
    holder = {}
    gen = StoppingGenerator(reply, on_piece=lambda i: i == 5 and holder["runtime"].jobs.stop(job_key(None, "chat")))
    generation, runtime = _generation(gen, [hit(text="The storm lasted eleven days.")], tmp_path)
    holder["runtime"] = runtime
    session = Session()
    runtime.jobs.start(job_key(None, "chat"))
    *_, last = generation.chat("How long was the storm?", session)

    chatbot, status = last[0], last[1]
    assert "Stopped after **5** tokens" in status and "kept" in status
    assert gen.closed == 1 and gen.pieces_sent < 10, "the model's stream must end at once, not run to the end"
    assert session.turns[0].stopped and session.turns[0].answer == "word0 word1 word2 word3 word4"
    assert "answer **5** tokens" in last[4]  # the inspector counts what was written, not 0
    assert "(stopped)" in chatbot[-2]["content"]
    exported = Path(generation.export(session)[0]["value"]).read_text()
    assert "word4" in exported, "a stopped answer on screen is exported"


def test_send_while_an_answer_is_written_keeps_the_question_and_says_why(tmp_path):
    from ui.state import Session

    seen = {}
    gen = StoppingGenerator("It lasted eleven days [1].", on_piece=lambda i: i == 1 and seen.setdefault(
        "second", generation.take_question("And the wind?")))
    generation, runtime = _generation(gen, [hit(text="The storm lasted eleven days.")], tmp_path)
    session = Session()
    box, asked, status = generation.take_question("How long was the storm?")
    assert (box, asked) == ("", "How long was the storm?")
    *_, last = generation.chat(asked, session)
    box, asked, status = seen["second"]  # pressed while the first answer streamed
    assert asked is None and "still being written" in status and "stays in the box" in status
    assert box == SKIP  # the box keeps the question
    assert list(generation.chat(None, session)) == [(SKIP,) * 7]  # its queued turn does nothing
    assert [t.question for t in session.turns] == ["How long was the storm?"]
    assert generation.take_question("And the wind?")[1] == "And the wind?"  # once answered, Send works


def test_stop_during_the_rewrite_keeps_the_conversation_as_it_was(tmp_path):
    from ui.request import job_key
    from ui.state import Session, Turn

    holder = {}
    gen = StoppingGenerator("When was the lighthouse automated?",
                            on_piece=lambda i: holder["runtime"].jobs.stop(job_key(None, "chat")))
    generation, runtime = _generation(gen, [hit()], tmp_path)
    holder["runtime"] = runtime
    runtime.jobs.start(job_key(None, "chat"))
    session = Session(turns=[Turn("Tell me about the lighthouse", "", "It is old.", [])])
    *_, last = generation.chat("When was it automated?", session)
    assert "Stopped while rewriting the follow-up" in last[1]
    assert len(session.turns) == 1 and gen.closed == 1
    assert len(gen.prompts) == 1, "no answer was started after the stop"


def test_a_stopped_answer_stays_out_of_the_next_rewrite(tmp_path):
    """A newcomer's stopped, half-written answer turned up in the next follow-up's rewrite."""
    from ui.state import Session, Turn

    gen = ScriptedGenerator("When was the lighthouse automated?")
    generation, _ = _generation(gen, [hit()], tmp_path)
    session = Session(turns=[Turn("Tell me about the lighthouse", "", "It is old and its keepers wrote", [],
                                  stopped=True)])
    for _ in generation.chat("When was it automated?", session):
        pass
    condense = gen.prompts[0]
    assert "Human: Tell me about the lighthouse" in condense and "keepers wrote" not in condense


def test_stop_pressed_while_queued_answers_nothing(tmp_path):
    from ui.request import job_key
    from ui.state import Session

    gen = StoppingGenerator("an answer")
    generation, runtime = _generation(gen, [hit()], tmp_path)
    runtime.jobs.start(job_key(None, "chat"))
    runtime.jobs.stop(job_key(None, "chat"))
    *_, last = generation.chat("A question?", Session())
    assert "Stopped before" in last[1] and gen.prompts == []


def test_stop_on_summarize_ends_the_map_step(tmp_path):
    """A long summary runs map calls before its first token; Stop must end them, not wait minutes."""
    from ui.request import job_key
    from ui.state import Session

    holder = {}
    long_text = " ".join(f"w{i}" for i in range(900))
    gen = StoppingGenerator(" ".join(f"s{i}" for i in range(30)), n_ctx=300,
                            on_piece=lambda i: i == 2 and holder["runtime"].jobs.stop(job_key(None, "summarize")))
    generation, runtime = _generation(gen, [hit(text=long_text)], tmp_path)
    holder["runtime"] = runtime
    runtime.jobs.start(job_key(None, "summarize"))
    session = Session()
    session.chat.max_tokens = 20
    *_, last = generation.summarize("storm", [], session)
    # A long text is read in one pass of its most central passages (no map calls): Stop ends that pass.
    assert "Stopped after" in last[0] and "partial summary below is kept" in last[0]
    assert len(gen.prompts) == 1 and gen.closed == 1


def test_addresses_that_are_not_urls_are_quoted_and_counted():
    from ui.library import _bad_note, parse_urls

    urls, bad = parse_urls("not a url at all https://a.test/x")
    assert urls == ["https://a.test/x"]
    assert _bad_note(bad) == " Not http(s) addresses: 'not', 'a', 'url' and 2 more."


def test_stop_reaches_the_backends_own_checkpoints_before_its_first_piece(tmp_path):
    """llama.cpp evaluates a long prompt before its first token; Stop must reach the checks it makes
    between slices of that evaluation (rag.interrupt), not wait for a piece."""
    from rag.interrupt import checkpoint
    from ui.request import job_key
    from ui.state import Session

    holder = {"checks": 0}

    class SlowPromptGenerator(StoppingGenerator):
        def stream(self, messages, **params):
            self.prompts.append(self.format_prompt(messages))
            for _ in range(1000):  # prompt slices, each after a check: the press arrives during the third
                checkpoint()
                holder["checks"] += 1
                if holder["checks"] == 3:
                    holder["runtime"].jobs.stop(job_key(None, "chat"))
            yield "never reached"

    gen = SlowPromptGenerator("")
    generation, runtime = _generation(gen, [hit(text="The storm lasted eleven days.")], tmp_path)
    holder["runtime"] = runtime
    runtime.jobs.start(job_key(None, "chat"))
    session = Session()
    *_, last = generation.chat("How long was the storm?", session)
    assert "Stopped before the first token" in last[1]
    assert holder["checks"] == 3, "the slice after the press must not be evaluated"
    assert session.turns[0].stopped and session.turns[0].answer == ""


def test_new_conversation_stops_the_running_answer(tmp_path):
    from ui.request import job_key
    from ui.state import Session

    generation, runtime = _generation(StoppingGenerator("x"), [hit()], tmp_path)
    job = runtime.jobs.start(job_key(None, "chat"))
    session = Session()
    cleared = generation.clear(session)
    assert job.stopped and cleared[0] == [] and session.turns == []
    assert "Nothing to export" in generation.export(session)[1]


def test_closing_the_tab_stops_its_work_and_forgets_its_jobs():
    from ui.generation import Generation, job_key

    class Request:
        session_hash = "tab1"

    runtime = ScriptedRuntime(ScriptedGenerator("x"), FakeCollection([]))
    mine = runtime.jobs.start(job_key(Request(), "summarize"))
    other = runtime.jobs.start(job_key(None, "chat"))
    Generation(runtime).end_session(Request())
    assert mine.stopped and not other.stopped
    assert runtime.jobs.current(job_key(Request(), "summarize")) is not mine


# ---------------------------------------------------------------- errors, settings, odd values


@pytest.mark.parametrize("k, message", [(5000, "got 5000"), (101, "got 101"), (-3, "got -3"), (0, "got 0"),
                                        (2.5, "got 2.5")])
def test_odd_k_is_refused_out_loud_not_clamped(k, message):
    from ui.search import check_k

    with pytest.raises(RagError, match=f"from 1 to 100; {message}"):
        check_k(k)
    assert check_k(100) == 100 and check_k(1.0) == 1


@pytest.mark.parametrize("k", [None, "", "  "])
def test_an_empty_k_asks_for_one(k):
    from ui.search import check_k

    with pytest.raises(RagError, match=r"^Type k, a whole number from 1 to 100\.$"):
        check_k(k)


def test_the_k_fields_readme_and_limits_agree():
    """One range for k: the limit in rag.limits, the fields' labels, and the README's table and text."""
    from rag.limits import SETTINGS
    from ui.state import MAX_K

    bound = SETTINGS["k"]
    assert (bound.low, bound.high) == (1, MAX_K)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"| chunks to retrieve (k) | 1–{MAX_K} |" in readme and f"k must be 1 to {MAX_K}" in readme
    assert "1 to 20" not in readme


def test_ticked_sources_are_filtered_by_the_collection_not_after_a_pool(tmp_path):
    """The ticked documents go to the collection's search, which filters inside the store: no wider pool
    is fetched and cut afterwards."""
    from rag.chains.path import Scope

    asked = []

    class Coll:
        def search(self, query, k, mode, sources=None):
            asked.append((k, sources))
            return [hit(source="a.html", text=f"t{i}") for i in range(k)]

    assert len(Scope(Coll(), ["a.html"]).search("q", k=40, mode="hybrid")) == 40
    assert asked == [(40, ["a.html"])]


def test_search_with_odd_k_says_so_and_keeps_the_hits(settings):
    from ui.runtime import Runtime
    from ui.search import Search
    from ui.state import Session

    out = Search(Runtime(settings)).search("storm", 5000, "hybrid", Session())
    assert "got 5000" in out[0] and out[1:] == (SKIP, SKIP, SKIP)


def test_a_refused_setting_is_put_back_in_the_form(tmp_path):
    from ui.state import Session

    from ui.settings_form import SettingsForm

    _, runtime = _generation(ScriptedGenerator("x"), [], tmp_path)
    form_ = SettingsForm(runtime)
    session = Session()
    before = session.chat
    out = form_.apply_settings("llamacpp", "no-such-model.gguf", 0.5, 64, 2048, 4, "hybrid", "auto", "", "", session)
    status, model_line, kept, *form = out
    assert "no-such-model" in status and status.startswith("⚠️")
    assert kept.chat is before and form[1] == "" and form[5] == before.k
    out = form_.apply_settings("llamacpp", "", 0.5, 64, 2048, 5000, "hybrid", "auto", "", "", session)
    assert "got 5000" in out[0] and out[-5] == before.k  # k, then mode, answer style, template and system


def test_the_model_picker_offers_models_found_on_disk_and_the_catalogue(tmp_path, monkeypatch):
    from rag.models import CATALOGUE
    from tests.conftest import SHARED_DATA
    from ui.state import Session

    stories = SHARED_DATA / "models" / "stories260K.gguf"
    if not stories.exists():
        pytest.skip("needs stories260K from the shared data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no other tool's models
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    from ui.settings_form import SettingsForm

    _, runtime = _generation(ScriptedGenerator("x"), [], tmp_path)
    generation = SettingsForm(runtime)
    runtime.settings.models_dir.mkdir(parents=True)
    (runtime.settings.models_dir / "stories260K.gguf").write_bytes(stories.read_bytes())
    session = Session()

    picker, note = generation.model_picker(session)
    values = [value for _, value in picker["choices"]]
    assert values[0] == "" and "stories260K" in values and "llama-3.2-3b" in values
    label = dict((v, lbl) for lbl, v in picker["choices"])["stories260K"]
    assert "MB" in label and "RAM" in label and "models dir" in label
    assert "catalogue, not downloaded" in dict((v, lbl) for lbl, v in picker["choices"])["llama-3.2-3b"]
    # The tiny default is in use: the note says answers will be weak and how to pick another.
    assert note["visible"] and "weak" in note["value"] and "stories260K" in note["value"]
    assert "Settings" in note["value"]

    out = generation.apply_settings("llamacpp", "stories260K", 0.2, 64, 2048, 4, "hybrid", "auto", "", "", session)
    assert session.chat.model == "stories260K", out[0]
    picker, note = generation.model_picker(session)
    assert picker["value"] == "stories260K" and note["visible"] is False
    # A typed path is accepted and stays shown as typed.
    typed = str(runtime.settings.models_dir / "stories260K.gguf")
    generation.apply_settings("llamacpp", typed, 0.2, 64, 2048, 4, "hybrid", "auto", "", "", session)
    picker, _ = generation.model_picker(session)
    assert session.chat.model == typed and picker["value"] == typed and typed in [v for _, v in picker["choices"]]
    assert set(CATALOGUE) - {"smollm2-135m"} <= {v for _, v in generation.model_picker(Session())[0]["choices"]}


def test_no_models_found_points_at_the_catalogue(tmp_path, monkeypatch):
    from ui.state import Session

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(name, raising=False)
    from ui.settings_form import SettingsForm

    _, runtime = _generation(ScriptedGenerator("x"), [], tmp_path)
    _, note = SettingsForm(runtime).model_picker(Session())
    assert note["visible"] and "📦 Models" in note["value"] and "download" in note["value"]


def test_reload_opens_the_tab_the_person_was_on_else_chat_with_a_conversation():
    from ui.blocks import landing_tab
    from ui.state import Session, Turn

    with_turns = Session(turns=[Turn("q", answer="a")])
    assert landing_tab("search", with_turns).selected == "search"
    assert landing_tab("", with_turns).selected == "chat"
    assert landing_tab("nonsense", Session()) == SKIP
    assert landing_tab(None, Session()) == SKIP


def test_summarize_offers_and_reads_only_the_ticked_documents(tmp_path):
    from ui.state import Session

    class Library(FakeCollection):
        def documents(self):
            from types import SimpleNamespace

            return [SimpleNamespace(source=s, title=s.upper()) for s in ("a.html", "b.html")]

    generation, runtime = _generation(ScriptedGenerator("A summary."), [hit()], tmp_path)
    runtime.coll = Library([hit()])
    session = Session()
    assert [v for _, v in generation.document_choices(session)["choices"]] == ["a.html", "b.html"]
    generation.choose_sources(["b.html"], session)
    offered = generation.document_choices(session, ["a.html", "b.html"])
    assert [v for _, v in offered["choices"]] == ["b.html"] and offered["value"] == ["b.html"]
    # A document unticked since it was chosen is refused in a sentence, not summarised.
    runtime.jobs.start(None)
    *_, last = generation.summarize("", ["a.html"], session)
    assert "not ticked in Sources" in last[0]


def test_a_new_question_empties_the_passage_viewer():
    from ui.generation import Generation

    generation = Generation(ScriptedRuntime(ScriptedGenerator("x"), FakeCollection([])))
    assert generation.viewer_for_question("What next?") == passage_viewer.VIEWER_EMPTY
    assert generation.viewer_for_question("  ") == SKIP


def test_unexpected_errors_are_a_sentence_too():
    from ui.status import errors_in_status

    @errors_in_status(3, status=1)
    def broken():
        raise KeyError("x")

    out = broken()
    assert out[0] == SKIP and out[2] == SKIP and "Something went wrong \\(KeyError" in out[1]


# ---------------------------------------------------------------- scores that match the mode


def test_scores_are_labelled_by_the_mode_with_a_legend():
    h = hit(score=0.81, dense_score=0.81, bm25_score=5.47)
    dense = search_format.hits_html([h], "storm", "dense")
    assert "dense 0.810" in dense and "fused" not in dense and "bm25 5.470" not in dense
    bm25 = search_format.hits_html([hit(score=5.47, dense_score=None, bm25_score=5.47)], "storm", "bm25")
    assert "bm25 5.470" in bm25 and "fused" not in bm25
    hybrid = search_format.hits_html([hit(score=0.7, dense_score=0.5, bm25_score=5.47)], "storm", "hybrid")
    assert "fused 0.700" in hybrid and "bm25 5.470" in hybrid and 'class="legend"' in hybrid
    for mode, name in (("bm25", "bm25"), ("dense", "dense")):
        frame = charts.scores_frame([h], mode)
        drawn = frame[frame["relative"] > 0]
        assert set(drawn["retriever"]) == {name} and list(drawn["bar"]) == [f"#1 {name}"]
        # The chart keeps the colours of its first frame: every frame names all three retrievers.
        assert set(frame["retriever"]) == {"fused", "dense", "bm25"} and set(frame["bar"]) == {f"#1 {name}"}
    assert set(charts.scores_frame([], "hybrid")["retriever"]) == {"fused", "dense", "bm25"}


# ---------------------------------------------------------------- escaping: titles with newlines, toasts


HOSTILE_TITLE = "Report\n\n![x](https://tracker.example/p.png)\n\n<img src=https://tracker.example/i.png>"


def test_a_multi_line_title_cannot_end_the_sources_block():
    md = chat_format.sources_md([{"n": 1, **hit(title=HOSTILE_TITLE, text="body ![y](https://tracker.example/t.png)",
                                       source="upload\n\n[a](https://tracker.example/)").to_dict()}])
    summary = md[md.index("<summary>"): md.index("</summary>")]
    assert "\n" not in summary
    assert "![" not in md and "<img" not in md and "](" not in md
    assert summary.startswith("<summary>[1] Report &#33;&#91;x&#93;(https://tracker.example/p.png)")


def test_document_choices_and_map_labels_are_one_line():
    import pandas as pd  # noqa: F401 - map_frame builds a DataFrame

    assert escaping.one_line(HOSTILE_TITLE).count("\n") == 0
    frame = charts.map_frame({"ids": [1], "xy": [[0, 0]], "query_xy": None}, [hit(rank=1, title=HOSTILE_TITLE)])
    assert "\n" not in frame["label"][0]


def test_deleted_toast_escapes_a_source_named_like_a_tag(settings, monkeypatch):
    import gradio as gr

    from ui.library import Library
    from ui.runtime import Runtime
    from ui.state import Session

    shown = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: shown.append(message))

    from rag.documents import Document

    runtime = Runtime(settings)
    source = '<img src=x onerror="alert(1)">'
    runtime.collection("default").add_documents([Document(source, "A page about tags and their attributes.", "Tags")])
    Library(runtime).delete(source, Session())
    assert shown == ['Deleted &lt;img src=x onerror=&quot;alert(1)&quot;&gt;; it is in the trash for 7 days']
    assert [e.source for e in runtime.trash.entries("default")] == [source]


def test_a_page_that_cannot_be_added_beside_the_chat_stays_in_the_box_with_one_sentence(settings):
    from ui.library import Library
    from ui.runtime import Runtime
    from ui.state import Session

    status, box, *_ = Library(Runtime(settings)).quick_add("http://127.0.0.1:9/x", Session())
    assert box == "http://127.0.0.1:9/x"
    assert status.startswith("Not added: ") and status.count("127.0.0.1:9/x") == 1 and "Could not add Could" not in status


def test_a_failed_source_is_named_once_in_the_ingest_lines():
    from types import SimpleNamespace as NS

    upload = "/idx/_uploads/3f2a/password.pdf"
    report = NS(results=[
        NS(status="failed", source=upload, title=None, chunks=0,
           error="password.pdf is password-protected; remove the password and load it again."),
        NS(status="failed", source="https://a.test/x", title=None, chunks=0, error="HTTP 404 (not found)."),
    ])
    lines = fmt.ingest_result_lines_md(report).splitlines()
    assert lines[0].count("password.pdf") == 1 and "is password-protected" in lines[0]
    assert "https://a\\.test/x: HTTP 404" in lines[1] or "https://a.test/x: HTTP 404" in lines[1]


def test_settings_kept_in_the_browser_are_checked_like_any_clients(settings):
    import json

    from ui.runtime import Runtime
    from ui.settings_form import SettingsForm
    from ui.state import Session

    gen, session = SettingsForm(Runtime(settings)), Session()
    default_k = session.chat.k
    kept = ["llamacpp", "", 0.5, 64, 2048, 7, "bm25", "free", ""]
    line, _, session, *form = gen.restore_settings(json.dumps(kept), session)
    assert "kept in this browser" in line and session.chat.k == 7 and form[5] == 7 and form[7] == "free"
    for odd in ("", "not json", json.dumps({"k": 3}), json.dumps(kept[:3])):
        fresh = Session()
        _, _, fresh, *form = gen.restore_settings(odd, fresh)
        assert fresh.chat.k == default_k and form[5] == default_k
    refused = Session()
    line, _, refused, *form = gen.restore_settings(json.dumps([*kept[:5], 500, *kept[6:]]), refused)
    assert line.startswith("⚠️ The settings kept in this browser were not restored: k must be")
    assert refused.chat.k == default_k
    guest = Session()
    line, _, guest, *_ = SettingsForm(Runtime(settings, read_only=True)).restore_settings(json.dumps(kept), guest)
    assert guest.chat.k == default_k
    assert line.startswith("This notebook is read-only: the settings kept in this browser")  # said, not dropped


def test_errors_in_the_status_line_are_escaped():
    from ui.status import error_line

    line = error_line(RagError("'<img src=x onerror=alert(1)>' is not in collection 'default'."))
    assert "<img" not in line and "&lt;img" in line


# ---------------------------------------------------------------- citations and the passage viewer


def test_citations_become_links_only_for_sources_that_exist():
    md = chat_format.answer_md("It lasted eleven days [1], see also [2] and [9].", [{"n": 1}, {"n": 2}], turn=3)
    assert "[\\[1\\]](#cite-3-1)" in md and "[\\[2\\]](#cite-3-2)" in md
    assert "\\[9\\]" in md and "#cite-3-9" not in md
    hostile = chat_format.answer_md("[1](javascript:alert(1)) ![x](https://tracker.example/p.png)", [{"n": 1}], turn=0)
    assert "](javascript" not in hostile and "![" not in hostile


def test_sources_show_title_and_first_words_not_four_identical_titles():
    sources = [{"n": i, **hit(rank=i, title="Same title", text=f"Passage number {i} starts here").to_dict()}
               for i in (1, 2)]
    md = chat_format.sources_md(sources)
    assert "Same title — “Passage number 1 starts here”" in md and "“Passage number 2 starts here”" in md


def test_the_viewer_highlights_the_passage_inside_its_document_at_its_page():
    text = "Page one text. " * 20 + "The storm lasted eleven days. " + "More of page two. " * 10 + "Page three."
    start = text.index("The storm")
    end = start + len("The storm lasted eleven days.")
    pages = [(1, 0), (2, text.index("The storm") - 30), (3, text.index("Page three."))]
    src = {"n": 2, "title": "Log <b>book</b>", "source": "/x/_uploads/default/log.pdf", "page": 2,
           "start": start, "end": end, "text": text[start:end]}
    html = passage_viewer.passage_html(src, text, pages)
    assert '<mark id="cited">The storm lasted eleven days.</mark>' in html
    assert "Page 2 of the document" in html and "Page three." not in html and "&lt;b&gt;book" in html
    # A document changed since: the passage is found by its text, or shown as it was cited.
    assert '<mark id="cited">The storm lasted' in passage_viewer.passage_html(src, "New intro. " + text, pages)
    assert "no longer in the collection" in passage_viewer.passage_html(src, None)


def test_opening_a_citation_of_the_conversation_on_screen(tmp_path):
    from ui.conversations import Conversations
    from ui.state import Session, Turn

    class Docs(FakeCollection):
        def document(self, source):
            from rag.documents import Document

            return Document(source=source, text="Intro. The storm lasted eleven days. Outro.", title="Log")

    runtime = ScriptedRuntime(ScriptedGenerator("x"), Docs([]), index_dir=tmp_path)
    src = {"n": 1, "title": "Log", "source": "https://example.com/log", "page": None, "start": 7, "end": 36,
           "text": "The storm lasted eleven days."}
    session = Session(turns=[Turn("q", "q", "It lasted [1].", [src])])
    html = Conversations(runtime).open_citation("0-1", session)
    assert '<mark id="cited">The storm lasted eleven days.</mark>' in html and "Intro." in html
    assert "not in the conversation" in Conversations(runtime).open_citation("4-1", session)


# ---------------------------------------------------------------- saved conversations


def test_conversations_are_kept_per_user_and_collection_and_survive_reopening(tmp_path):
    store = ConversationStore(tmp_path)
    turns = [{"question": "What is\nthe storm?", "standalone": "", "answer": "A gale.", "sources": [],
              "stopped": False}]
    ann = store.save("ann", "default", turns)
    store.save("bob", "default", turns)
    store.save("ann", "other", turns)
    assert [c.title for c in store.list("ann", "default")] == ["What is the storm?"]
    store.save("ann", "default", turns + turns, ann)
    assert store.rename("ann", ann, "  Storms \n ") == "Storms"
    store.close()

    reopened = ConversationStore(tmp_path)
    saved = reopened.get("ann", ann)
    assert saved.title == "Storms" and len(saved.turns) == 2 and saved.turns[0]["answer"] == "A gale."
    with pytest.raises(RagError, match="no longer exists"):
        reopened.get("bob", ann)  # another user's conversation is not there for bob
    assert not reopened.delete("bob", ann) and reopened.delete("ann", ann)
    assert reopened.list("ann", "default") == [] and len(reopened.list("bob", "default")) == 1


def test_a_conversation_file_of_another_format_is_refused(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "_conversations.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RagError, match="format 99"):
        ConversationStore(tmp_path).list("", "default")


def test_chat_saves_the_conversation_and_reload_reopens_it(tmp_path):
    from ui.conversations import Conversations
    from ui.state import Session

    generation, runtime = _generation(ScriptedGenerator("Eleven days [1]"), [hit(text="Eleven days.")], tmp_path)
    session = Session()
    list(generation.chat("How long was the storm?", session))
    assert session.conversation_id

    fresh = Session()  # a reload: a new browser session
    chatbot, status, title, restored = Conversations(runtime).restore(fresh)
    assert restored.conversation_id == session.conversation_id and title == "How long was the storm?"
    assert "#cite-0-1" in chatbot[1]["content"] and "Opened" in status
    listing = Conversations(runtime).choices(fresh)
    assert listing["choices"] == [("How long was the storm?", session.conversation_id)]


# ---------------------------------------------------------------- the sources panel


def test_only_ticked_documents_are_read(tmp_path):
    from rag.chains.path import Scope
    from ui.state import Session

    hits = [hit(rank=1, source="a", text="alpha"), hit(rank=2, source="b", text="beta"),
            hit(rank=3, source="a", text="alpha two"), hit(rank=4, source="c", text="gamma")]
    coll = FakeCollection(hits)
    assert [h.source for h in Scope(coll, None).search("q", k=4)] == ["a", "b", "a", "c"]
    kept = Scope(coll, ["b", "c"]).search("q", k=4)
    assert [(h.rank, h.source) for h in kept] == [(1, "b"), (2, "c")]
    with pytest.raises(RagError, match="No document is ticked"):
        Scope(coll, [])

    gen = ScriptedGenerator("Beta [1]")
    generation, runtime = _generation(gen, hits, tmp_path)
    session = Session(sources=["b"])
    *_, last = generation.chat("What is beta?", session)
    assert [s["source"] for s in session.turns[0].sources] == ["b"] and "alpha" not in gen.prompts[-1]


def test_ticking_every_document_keeps_new_ones_included(tmp_path):
    from ui.generation import Generation
    from ui.state import Session

    class Listed(FakeCollection):
        def documents(self):
            from rag.store import DocumentInfo

            return [DocumentInfo(source=s, title=s.upper(), chunks=1, content_hash="", added_at=0, metadata={})
                    for s in ("a", "b")]

    runtime = ScriptedRuntime(ScriptedGenerator("x"), Listed([]), index_dir=tmp_path)
    generation, session = Generation(runtime), Session()
    note, session = generation.choose_sources(["a"], session)
    assert session.sources == ["a"] and "1** of 2" in note
    assert generation.source_choices(session)["value"] == ["a"]
    note, session = generation.choose_sources(["a", "b"], session)
    assert session.sources is None and "every document" in note


def test_evidence_from_the_chain_is_listed_and_saved(tmp_path):
    """When the QA chain reports evidence sentences (and whether it abstained), Chat shows and keeps them."""
    from ui.conversations import Conversations
    from ui.state import Session

    gen = ScriptedGenerator("Eleven days [1]")
    generation, runtime = _generation(gen, [hit(text="The storm lasted <b>eleven</b> days.")], tmp_path)
    session = Session()
    *_, last = generation.chat("How long was the storm?", session)
    evidence = [m for m in last[0] if (m.get("metadata") or {}).get("title") == "Evidence (1)"]
    assert evidence and "#cite-0-1" in evidence[0]["content"] and "&lt;b&gt;eleven" in evidence[0]["content"]
    reopened = Conversations(runtime).restore(Session())[3]
    assert reopened.turns[0].evidence[0]["text"] == "The storm lasted <b>eleven</b> days."


def test_ingest_progress_only_moves_forward_and_names_what_it_counts():
    from ui.library import _progress_reporter

    seen = []
    report = _progress_reporter(lambda value, desc=None: seen.append((value, desc)))
    for call in [("fetch", 0, 3, "a"), ("fetch", 1, 3, "a"), ("extract", 1, 3, "a"), ("chunk", 1, 1, "a"),
                 ("fetch", 2, 3, "b"), ("embed", 1, 4, None), ("index", 1, 3, "a")]:
        report(*call)
    values = [v for v, _ in seen]
    assert values == sorted(values) and 0 <= values[0] and values[-1] <= 1
    assert seen[0][1] == "1/5 fetch · 0 of 3 sources · a" and "of 1 splits" in seen[3][1]
    report("chunk", 0, 0, "b")  # b was unchanged
    report("done", 3, 3, None)
    assert seen[-2][1] == "3/5 chunk · nothing new to index · b" and seen[-1] == (1.0, "done · 3 sources")


def test_too_many_uploads_at_once_are_refused_in_one_sentence(tmp_path):
    from rag import limits
    from ui.library import Library
    from ui.state import Session

    runtime = ScriptedRuntime(ScriptedGenerator("x"), FakeCollection([]), index_dir=tmp_path)
    files = [str(tmp_path / f"note{i}.txt") for i in range(limits.MAX_UPLOADS + 1)]
    status, *rest = Library(runtime).ingest("", files, 500, 0, Session())
    assert f"over the limit of {limits.MAX_UPLOADS}" in status and status.count(".") <= 2


def test_the_first_answer_says_the_model_is_loading_and_about_how_long(settings):
    """Found by a newcomer: 15 to 30 s of silence while the model loaded on the first answer."""
    from ui.generation import Generation
    from ui.runtime import Runtime
    from ui.state import ChatSettings

    runtime = Runtime(settings)
    note = Generation(runtime)._loading_note(ChatSettings())
    assert note.startswith("Loading the **llamacpp** model (first answer only, about ") and note.endswith(" s)…")
    assert runtime.load_seconds(ChatSettings(), "openai") is None


def test_compare_answers_every_backend_in_the_same_style_and_says_why_one_gave_none(tmp_path):
    """Found by a newcomer: Compare with GPT4All said the documents don't answer, listing nothing, while the
    other backend quoted. Both now answer in the person's style, and an unsupported reply is shown."""
    from ui.generation import Generation
    from ui.state import ChatSettings, Session

    text = "The storm lasted three days, and the harbour stayed closed for a week."
    gen = ScriptedGenerator("It was a storm of three days")
    runtime = ScriptedRuntime(gen, FakeCollection([hit(source="a.txt", text=text)]), index_dir=tmp_path)
    generation = Generation(runtime, backends=["llamacpp", "gpt4all"])
    *_, (context, first, first_note, second, second_note) = generation.compare(
        "How long did the storm last?", Session(chat=ChatSettings(answer_style="quote")))
    assert "same answer style (**quoted from the sources**)" in context
    assert first == second and first.startswith('"The storm lasted three days,')
    assert "Answer style: **quoted from the sources**" in first_note and "cannot be held to a grammar" in first_note

    gen.script = "Paris is the capital of France."
    *_, (context, first, first_note, *_rest) = generation.compare(
        "How long did the storm last?", Session(chat=ChatSettings(answer_style="free")))
    assert "written by the model" in context and "Paris is the capital of France" in first_note


def test_the_openai_backend_is_offered_only_where_a_server_is_set(settings):
    """Found by a newcomer: Compare's openai column said it needs --base-url, which the page cannot set."""
    from ui.runtime import Runtime

    assert "openai" not in Runtime(settings).backends()
    assert "openai" in Runtime(settings.replace(base_url="http://127.0.0.1:8080/v1")).backends()


def test_a_lone_document_is_chosen_for_summarize_and_a_stopped_quote_says_it_is_only_a_beginning(tmp_path):
    """Found by a newcomer: Summarize refused to run with the collection's one document not yet chosen, and a
    stopped quote ('"It …"') carried the label of a whole answer."""
    from rag.store import DocumentInfo
    from ui.generation import Generation
    from ui.state import Session, Turn

    class Listed(FakeCollection):
        def documents(self):
            return [DocumentInfo(source="a", title="A", chunks=1, content_hash="", added_at=0, metadata={})]

    generation = Generation(ScriptedRuntime(ScriptedGenerator("x"), Listed([]), index_dir=tmp_path))
    assert generation.document_choices(Session())["value"] == ["a"]
    stopped = chat_format.chat_messages([Turn("Q?", answer='"It …"', style="quote", stopped=True)])
    assert "only the beginning of a quote" in stopped[1]["content"]
    assert chat_format.QUOTE_LABEL not in stopped[1]["content"]
    whole = chat_format.chat_messages([Turn("Q?", answer='"It rained." [1]', style="quote")])
    assert chat_format.QUOTE_LABEL in whole[1]["content"]


def test_a_reload_opens_the_collection_this_browser_chose_last_and_the_preview_hides_server_paths(settings, tmp_path):
    from rag.collection import Collection
    from ui.library import Library, _preview
    from ui.runtime import Runtime
    from ui.state import Session

    notes = tmp_path / "notes.txt"
    notes.write_text("The ferry leaves at six.")
    for name in ("first", "second"):
        Collection.open(settings, name).ingest([str(notes)])
    library = Library(Runtime(settings))
    _, session = library.landing_collection("second", Session())
    assert session.collection == "second"  # kept in the browser, and it exists
    _, session = library.landing_collection("gone", Session())
    assert session.collection == settings.collection  # a kept name that no longer exists is not opened
    doc = Collection.open(settings, "second").document(str(notes.absolute()))
    text, meta = _preview(doc)
    assert "path" not in meta and "ferry" in text  # an upload's source itself reads "upload: name"
