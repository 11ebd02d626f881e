"""The int8 ONNX embedder against the torch one on real sentences; backend choice; the export cache."""

import json

import numpy as np
import pytest

from rag.collection import Collection
from rag.documents import Document
from rag.embedding import OnnxInt8Embedder, SentenceTransformerEmbedder, get_embedder
from rag.errors import RagError

SENTENCES = [
    "Cats purr when they are content.",
    "A cat sleeps most of the day.",
    "Dogs bark at strangers walking past the house.",
    "FAISS searches dense vectors by inner product.",
    "SQLite stores the whole database in a single file.",
    "The Eiffel Tower is in Paris.",
    "Mount Everest is the highest mountain above sea level.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The mitochondria produce most of the cell's energy.",
    "Interest rates rose for the third time this year.",
    "The central bank fears inflation will stay high.",
    "Python lists grow by over-allocating memory.",
    "A binary search halves the interval at every step.",
    "The recipe needs two eggs, flour and a pinch of salt.",
    "Bake the bread at 220 degrees for forty minutes.",
    "The football match ended in a draw after extra time.",
    "She won the marathon in just over two hours.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Antibiotics do not work against viruses.",
    "The train to Berlin leaves from platform nine.",
]
QUERIES = {
    "which animal purrs?": 0,
    "vector similarity search library": 3,
    "tallest mountain in the world": 6,
    "how do plants make food from light": 7,
    "central bank and rising prices": 10,
    "how to bake a loaf": 14,
    "medicine that kills bacteria": 18,
}


@pytest.fixture(scope="module")
def both():
    return get_embedder(backend="onnx-int8"), get_embedder(backend="torch")


def test_int8_vectors_are_normalised_and_close_to_torch(both):
    int8, torch_ = both
    a, b = int8.embed(SENTENCES), torch_.embed(SENTENCES)
    assert a.shape == b.shape == (len(SENTENCES), int8.dimension) and int8.dimension == torch_.dimension == 384
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() >= 0.97, cosines


def test_int8_ranks_queries_as_torch_does(both):
    int8, torch_ = both
    for model in both:
        docs = model.embed(SENTENCES)
        for query, expected in QUERIES.items():
            assert int(np.argmax(docs @ model.embed_query(query))) == expected, (model.model_id, query)
    a, b = int8.embed(SENTENCES), torch_.embed(SENTENCES)
    qa, qb = int8.embed(list(QUERIES)), torch_.embed(list(QUERIES))
    # The top two agree; further down, unrelated sentences nearly tie and may swap.
    assert [list(np.argsort(-row)[:2]) for row in qa @ a.T] == [list(np.argsort(-row)[:2]) for row in qb @ b.T]


def test_model_ids_differ_by_backend(both):
    int8, torch_ = both
    assert isinstance(int8, OnnxInt8Embedder) and isinstance(torch_, SentenceTransformerEmbedder)
    assert int8.model_id == "sentence-transformers/all-MiniLM-L6-v2#onnx-int8"
    assert torch_.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert get_embedder() is int8  # the default backend, cached per (model, backend)


def test_second_construction_reuses_the_export(both):
    int8, _ = both
    before = int8.model_path.stat().st_mtime_ns
    again = OnnxInt8Embedder()
    assert again.model_path == int8.model_path and again.model_path.stat().st_mtime_ns == before
    assert json.loads((again.cache_dir / "meta.json").read_text())["dimension"] == 384
    assert not [p for p in again.cache_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_unknown_backend_names_the_choices(settings):
    with pytest.raises(RagError, match="Unknown embedding backend 'gpu'; available: onnx-int8, torch"):
        get_embedder(backend="gpu")
    with pytest.raises(RagError, match="Unknown embedding backend"):
        Collection.open(settings.replace(embedding_backend="gpu"))


def test_torch_collection_refuses_the_int8_backend(settings):
    built = Collection.open(settings.replace(embedding_backend="torch"))
    built.add_documents([Document("mem://cats", "Cats purr when they are content.", "Cats")])
    built.store.close()
    with pytest.raises(RagError, match=r"was built with embedding model .*all-MiniLM-L6-v2'.*#onnx-int8"):
        Collection.open(settings)
    reopened = Collection.open(settings.replace(embedding_backend="torch"))
    assert reopened.search("which animal purrs?", k=1, mode="dense")[0].source == "mem://cats"
    reopened.store.close()


def test_missing_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(RagError, match=r"pip install onnxruntime==1\.32\.0 onnx==1\.23\.2"):
        OnnxInt8Embedder()
