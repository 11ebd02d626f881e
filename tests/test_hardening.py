"""Hardening II: prompt templates, bad environment values, and the limits on every setting and input.

Each limit is checked where the work is done (the settings object, the collection, the chains), so a
client that skips the page's sliders meets the same refusal: one sentence, nothing changed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rag import limits
from rag.errors import RagError
from rag.prompts import QA_PROMPT, Prompts, check_template, render
from rag.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message and message.endswith("."), message
    return message


# ---------------------------------------------------------------- prompt templates


@pytest.mark.parametrize("template, shown", [
    ("{context:>99999999}\n\nQuestion: {question}", "{context:>99999999}"),
    ("{context}\n\nQuestion: {question:^1000000000}", "{question:^1000000000}"),
    ("{context!r}\n\nQuestion: {question}", "{context!r}"),
    ("{context}\n\nQuestion: {question:{context}}", "{question:{context}}"),
    ("{context.__class__}{context}\n\nQuestion: {question}", "{context.__class__}"),
    ("{context[0]}{context}\n\nQuestion: {question}", "{context[0]}"),
    ("{}{context}\n\nQuestion: {question}", "{}"),
    ("{0}{context}\n\nQuestion: {question}", "{0}"),
])
def test_templates_may_hold_only_plain_placeholders(template, shown):
    with pytest.raises(RagError, match="only plain placeholders") as caught:
        Prompts(qa=template).check()
    assert shown in one_sentence(caught)
    with pytest.raises(RagError):
        render(template, context="x", question="y")


def test_a_padding_spec_renders_nothing_at_all():
    """The spec that would have padded the prompt to 100 MB is refused before any text is built."""
    with pytest.raises(RagError):
        render("{context:>99999999}{question}", context="a", question="b")


def test_a_template_over_the_length_limit_is_refused():
    filler = "Answer carefully. " * (limits.MAX_TEMPLATE_CHARS // 18 + 1)
    template = filler + "{context}\n\nQuestion: {question}"
    with pytest.raises(RagError, match=f"the limit is {limits.MAX_TEMPLATE_CHARS:,}") as caught:
        check_template(template, {"context", "question"}, "qa")
    one_sentence(caught)
    fitting = template[len(template) - limits.MAX_TEMPLATE_CHARS:]
    check_template(fitting, {"context", "question"}, "qa")


@pytest.mark.parametrize("template", [
    QA_PROMPT,
    "Answer from the context.\n\n{context}\n\nQuestion: {question}",
    "Reply as JSON {{\"answer\": ...}}.\n{context}\n{question}",  # doubled braces are literal text
])
def test_plain_templates_still_pass(template):
    Prompts(qa=template).check()
    assert "CTX" in render(template, context="CTX", question="Q?")


def test_the_default_prompts_pass_their_own_check():
    Prompts().check()


# ---------------------------------------------------------------- settings and their bounds


@pytest.mark.parametrize("var, value, message", [
    ("RAG_N_CTX", "abc", "RAG_N_CTX='abc' is not a whole number"),
    ("RAG_N_CTX", "2048.5", "RAG_N_CTX='2048.5' is not a whole number"),
    ("RAG_N_CTX", "0", "RAG_N_CTX=0 is outside the allowed range 128 to 16384"),
    ("RAG_N_CTX", "100000000", "RAG_N_CTX=100000000 is outside"),
    ("RAG_MAX_TOKENS", "lots", "RAG_MAX_TOKENS='lots' is not a whole number"),
    ("RAG_MAX_TOKENS", "-1", "RAG_MAX_TOKENS=-1 is outside the allowed range 1 to 4096"),
    ("RAG_THREADS", "0", "RAG_THREADS=0 is outside"),
    ("RAG_GPU_LAYERS", "all", "RAG_GPU_LAYERS='all' is not a whole number"),
])
def test_a_bad_environment_value_is_one_sentence_naming_the_variable(tmp_path, var, value, message):
    with pytest.raises(RagError) as caught:
        load_settings(environ={var: value}, index_dir=tmp_path)
    assert message in one_sentence(caught)


def test_max_tokens_comes_from_the_environment(tmp_path):
    assert load_settings(environ={"RAG_MAX_TOKENS": " 64 "}, index_dir=tmp_path).max_tokens == 64


@pytest.mark.parametrize("changes, message", [
    ({"k": 5000}, "Chunks to retrieve (k) 5000 is outside the allowed range 1 to 100"),
    ({"k": 0}, "Chunks to retrieve (k) 0 is outside"),
    ({"max_tokens": 1_000_000}, "Max tokens (max_tokens) 1000000 is outside the allowed range 1 to 4096"),
    ({"n_ctx": 10_000_000}, "Context size (n_ctx) 10000000 is outside the allowed range 128 to 16384"),
    ({"chunk_size": 1}, "Chunk size (chunk_size) 1 is outside the allowed range 10 to 20000"),
    ({"chunk_size": 10_000_000}, "Chunk size (chunk_size) 10000000 is outside"),
    ({"chunk_size": 500, "chunk_overlap": 499},
     "Chunk overlap (chunk_overlap) 499 is more than half the chunk size (500)"),
    ({"fetch_timeout": 86_400.0}, "Fetch timeout (fetch_timeout) 86400 is outside"),
    ({"temperature": float("nan")}, "Temperature (temperature) nan is outside"),
    ({"k": 4.5}, "Chunks to retrieve (k) must be a whole number"),
])
def test_settings_out_of_range_are_refused_never_adjusted(settings, changes, message):
    with pytest.raises(RagError) as caught:
        settings.replace(**changes)
    assert message in one_sentence(caught)
    with pytest.raises(RagError):
        load_settings(environ={}, index_dir=settings.index_dir, **changes)


def test_settings_at_the_limits_are_kept_as_given(settings):
    edge = settings.replace(k=100, max_tokens=4096, n_ctx=16384, chunk_size=20_000, chunk_overlap=10_000)
    assert (edge.k, edge.max_tokens, edge.n_ctx, edge.chunk_size, edge.chunk_overlap) == (100, 4096, 16384,
                                                                                        20_000, 10_000)


def test_a_shared_runtime_refuses_a_chat_setting_before_loading_any_model(settings):
    from ui.runtime import Runtime
    from ui.state import ChatSettings

    runtime = Runtime(settings)
    with pytest.raises(RagError, match=r"Context size \(n_ctx\) 1000000 is outside"):
        runtime.generator(ChatSettings(n_ctx=1_000_000))
    assert not runtime.is_loaded("llamacpp")


# ---------------------------------------------------------------- the app's flags and variables


def run_app(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
    return subprocess.run([sys.executable, "app.py", *args], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("var, value", [
    ("RAG_PORT", "abc"), ("RAG_PORT", "70000"), ("RAG_PORT", "0"),
    ("RAG_MAX_UPLOAD_MB", "lots"), ("RAG_MAX_UPLOAD_MB", "0"), ("RAG_MAX_UPLOAD_MB", "1000000"),
    ("RAG_MAX_TOKENS", "abc"), ("RAG_MAX_TOKENS", "0"),
    ("RAG_N_CTX", "-1"), ("RAG_READ_ONLY", "ture"), ("RAG_SHARE", "maybe"),
])
def test_the_app_names_a_bad_variable_in_one_line_and_starts_nothing(tmp_path, var, value):
    proc = run_app({var: value, "RAG_INDEX_DIR": str(tmp_path / "index")})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and var in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "index").exists()


def test_a_misspelt_read_only_switch_is_not_read_as_writable(tmp_path):
    """RAG_READ_ONLY=ture used to mean 'not read-only': a guest could then change the index."""
    import app

    os.environ.pop("RAG_READ_ONLY", None)
    for value, read_only in [("1", True), ("yes", True), ("0", False), ("off", False), ("", False)]:
        os.environ["RAG_READ_ONLY"] = value
        try:
            assert app.configure(["--index-dir", str(tmp_path)], environ={})[1].read_only is read_only
        finally:
            del os.environ["RAG_READ_ONLY"]


def test_the_help_lists_the_limits():
    proc = run_app({}, "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert " ".join(limits.describe().split()) in text
    assert "1 to 4096" in text and "1 to 1024" in text


def test_the_readme_lists_the_limits():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, bound in limits.SETTINGS.items():
        if name in ("k", "max_tokens", "n_ctx", "chunk_size"):
            assert f"{bound.low:g}–{bound.high:g}" in readme, name
    for value in (limits.MAX_QUESTION_CHARS, limits.MAX_URLS, limits.MAX_SOURCES, limits.MAX_UPLOADS,
                  limits.MAX_TEMPLATE_CHARS):
        assert f"{value:,}" in readme, value


# ---------------------------------------------------------------- the collection and the chains


@pytest.fixture
def empty_collection(settings):
    """A real, empty collection on disk; its embedding model is loaded only if a search gets that far."""
    from rag.collection import Collection
    from rag.embedding import embedder_model_id
    from rag.store import Store

    model_id = embedder_model_id(settings.embedding_model, settings.embedding_backend)
    return Collection(settings, Store(Path(settings.index_dir) / "default", model_id, 384))


@pytest.fixture
def no_connections(monkeypatch):
    """Any socket connection fails the test: refusals must come before any fetch."""
    def refuse(sock, address):
        pytest.fail(f"a connection to {address!r} was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_search_refuses_k_and_query_over_the_limits_before_any_work(empty_collection):
    refusal = r"Chunks to retrieve \(k\) 5000 is outside the allowed range 1 to 100"
    with pytest.raises(RagError, match=refusal) as caught:
        empty_collection.search("tides", k=5000)
    one_sentence(caught)
    with pytest.raises(RagError, match=r"Chunks to retrieve \(k\) 0 is outside"):
        empty_collection.search("tides", k=0)  # was silently replaced by the default
    with pytest.raises(RagError, match=f"the limit is {limits.MAX_QUESTION_CHARS:,}"):
        empty_collection.search("t" * (limits.MAX_QUESTION_CHARS + 1))
    assert empty_collection._embedder is None, "the refusal came after loading the model"


def test_ingest_refuses_too_many_urls_or_sources_before_fetching(empty_collection, no_connections, tmp_path):
    urls = [f"http://site{i}.example/page" for i in range(limits.MAX_URLS + 1)]
    with pytest.raises(RagError, match=f"{limits.MAX_URLS + 1} URLs at once is over the limit of "
                                       f"{limits.MAX_URLS}") as caught:
        empty_collection.ingest(urls)
    one_sentence(caught)
    files = [str(tmp_path / f"note{i}.txt") for i in range(limits.MAX_SOURCES + 1)]
    with pytest.raises(RagError, match=f"over the limit of {limits.MAX_SOURCES}"):
        empty_collection.ingest(files)
    assert empty_collection.documents() == []


def test_ingest_refuses_a_chunk_size_that_would_shred_a_document(empty_collection, tmp_path):
    from rag.documents import Document

    with pytest.raises(RagError, match=r"Chunk size \(chunk_size\) 1 is outside"):
        empty_collection.add_documents([Document("mem://a", "text " * 1000)], chunk_size=1, chunk_overlap=0)
    with pytest.raises(RagError, match="more than half the chunk size"):
        empty_collection.add_documents([Document("mem://a", "text " * 1000)], chunk_size=100, chunk_overlap=99)
    assert empty_collection.documents() == []


class RecordingGenerator:
    """Stands in for a model only to record whether a chain reached it; every limit is checked before."""

    name = "recording"

    def __init__(self):
        from rag.generators.base import GenerationParams

        self.defaults = GenerationParams(max_tokens=16)
        self.calls = 0

    def __getattr__(self, name):
        self.calls += 1
        raise AssertionError(f"the chain used the generator ({name}) before refusing")


def test_chains_refuse_k_max_tokens_and_long_questions_before_the_model():
    from rag.chains import ChatChain, QAChain, SummarizeChain

    gen = RecordingGenerator()
    search_calls = []

    def search(query, k, mode):
        search_calls.append(query)
        return []

    with pytest.raises(RagError, match=r"Chunks to retrieve \(k\) 5000 is outside"):
        QAChain(search, gen, k=5000)
    with pytest.raises(RagError, match=r"Max tokens \(max_tokens\) 1000000 is outside"):
        ChatChain(search, gen, max_tokens=1_000_000)
    long = "w" * (limits.MAX_QUESTION_CHARS + 1)
    with pytest.raises(RagError, match=f"the limit is {limits.MAX_QUESTION_CHARS:,}") as caught:
        SummarizeChain(search, gen).summarize(long)
    one_sentence(caught)
    assert gen.calls == 0 and search_calls == []
    # A question over the limit is cut to it, and the reader told (issue 8), never sent whole.
    from tests.fakes import ScriptedGenerator

    answer = QAChain(search, ScriptedGenerator(["x"], n_ctx=100_000)).ask("why " * limits.MAX_QUESTION_CHARS)
    assert len(search_calls[0]) <= limits.MAX_QUESTION_CHARS and "was cut" in answer.prepared.notes[0]


def test_a_chain_with_a_padding_template_is_refused():
    from rag.chains import QAChain

    with pytest.raises(RagError, match="only plain placeholders"):
        QAChain(lambda *a, **k: [], RecordingGenerator(), prompts=Prompts(qa="{context:>99999999}{question}"))



# ---------------------------------------------------------------- stopping work nobody waits for


class StopAfter:
    """An interrupt check that lets `n` checkpoints pass, then raises as the app does for a client that left."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls > self.n:
            raise RagError("Stopped: nobody is waiting for this request any more.")


def test_a_map_reduce_summary_stops_at_the_next_map_call():
    """The map calls happen before the summary's first token, where Gradio cannot stop a callback."""
    from tests.fakes import ScriptedGenerator

    from rag.chains import SummarizeChain
    from rag.interrupt import stop_when

    gen = ScriptedGenerator(lambda p: "a short summary", n_ctx=120, max_tokens=10)
    chain = SummarizeChain(lambda *a, **k: [], gen)
    long_text = " ".join(f"w{i}" for i in range(2000))  # about 25 map calls at this context size
    with stop_when(StopAfter(3)), pytest.raises(RagError, match="nobody is waiting"):
        chain.summarize(documents=[("a long document", long_text)], strategy="map_reduce").run()
    assert chain.map_calls == 3 and len(gen.prompts) == 3

    # no check installed: runs to the end
    chain.summarize(documents=[("a long document", long_text)], strategy="map_reduce").run()
    assert chain.map_calls > 3


def test_an_ingest_stops_between_sources(empty_collection, tmp_path):
    from rag.interrupt import stop_when

    files = []
    for i in range(3):
        files.append(tmp_path / f"note{i}.txt")
        files[-1].write_text(f"Note {i} about the harbour tides.", encoding="utf-8")
    seen = []
    with stop_when(StopAfter(1)), pytest.raises(RagError, match="nobody is waiting"):
        empty_collection.ingest([str(f) for f in files], progress=lambda stage, *a: seen.append(stage))
    assert seen.count("fetch") == 1 and empty_collection.documents() == []
    assert empty_collection._embedder is None, "it went on to embedding"
