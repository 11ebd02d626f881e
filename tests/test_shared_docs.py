"""Every shared sample document through the whole ingest: indexed with text, or refused with one sentence.

Chunks of 20,000 characters keep this bounded (the embedding model reads the first 256 tokens of
each), while loading, splitting, SQLite and FAISS see every character; benchmarks/bench_docs.py
runs the recipe's 500 and reports time and peak memory. The 619-page PDF is left to that benchmark:
reading it takes pypdf most of a minute, and test_loaders already loads it.
"""

import pytest

from conftest import shared_data
from rag.collection import Collection
from test_loaders import EXPECTED_ERRORS

BIG = {"book-war-and-peace-1225p.txt": 3_000_000, "handbook-872p.docx": 800_000}
LEFT_TO_THE_BENCHMARK = {"DA-619p.pdf"}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from rag.settings import load_settings

    docs = shared_data("docs")
    settings = load_settings(environ={}, index_dir=tmp_path_factory.mktemp("shared") / "index", chunk_size=20_000)
    coll = Collection.open(settings)
    indexed: list[str] = []
    files = [str(p) for p in sorted(docs.iterdir()) if p.name not in LEFT_TO_THE_BENCHMARK]
    report = coll.ingest(files, progress=lambda stage, done, total, source: stage == "index"
                         and indexed.append(source))
    yield coll, {r.source.rsplit("/", 1)[-1]: r for r in report.results}, indexed
    coll.store.close()


def test_every_file_is_indexed_or_refused_with_one_sentence(ingested):
    coll, results, indexed = ingested
    assert len(results) == len(list(shared_data("docs").iterdir())) - len(LEFT_TO_THE_BENCHMARK)
    for name, result in results.items():
        if name in EXPECTED_ERRORS:
            assert result.status == "failed" and EXPECTED_ERRORS[name] in result.error, (name, result)
            assert "\n" not in result.error and result.error.endswith(".")
        else:
            assert result.status == "added" and result.chunks > 0, (name, result)
    assert sorted(s.rsplit("/", 1)[-1] for s in indexed) == sorted(
        n for n, r in results.items() if r.status == "added")
    assert coll.store.integrity_problems() == []


def test_big_documents_are_stored_whole(ingested):
    coll, results, _ = ingested
    for name, least in BIG.items():
        doc = coll.document(results[name].source)
        assert len(doc.text) > least, name
    war = coll.search("Natasha Rostova at the ball", k=1, mode="bm25")[0]
    assert war.source.endswith("book-war-and-peace-1225p.txt")
