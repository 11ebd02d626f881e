"""The Milvus store's own parts: addresses, errors, versioned writes, the CLI on a server, restarts,
two processes sharing a collection, and the embedded engine. The store contract itself runs in
tests/test_store.py on both stores. Every server here is milvus-lite on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import sys
from pathlib import Path

import pytest

from rag.chunking import split_document
from rag.collection import Collection, list_collections
from rag.documents import Document
from rag.errors import RagError
from rag.settings import load_settings
from rag.store.milvus_client import MilvusAddress, explain, parse_address
from rag.store.milvus_schema import logical_name, physical_name

ROOT = Path(__file__).resolve().parents[1]
CATS = Document("mem://cats", "Cats purr when they are content.\n\nA cat sleeps most of the day.", "Cats")
FAISS_DOC = Document("mem://faiss", "FAISS searches dense vectors by inner product.", "FAISS")


@pytest.fixture
def milvus_settings(settings, milvus_server):
    milvus_server.drop_all()
    return settings.replace(store=milvus_server.uri)


# -- addresses and errors (no server) --------------------------------------------------------------


@pytest.mark.parametrize("store, uri", [
    ("milvus://127.0.0.1:19530", "http://127.0.0.1:19530"),
    ("milvus://db.internal", "http://db.internal:19530"),
    ("milvus+https://in01-abc.zillizcloud.com:443", "https://in01-abc.zillizcloud.com:443"),
    ("milvus+lite:///data/notebook.db", "/data/notebook.db"),
])
def test_store_addresses_become_pymilvus_uris(store, uri):
    assert parse_address(store).uri == uri


@pytest.mark.parametrize("store, message", [
    ("qdrant://127.0.0.1:6333", "Unknown store address"),
    ("milvus://", "names no server"),
    ("milvus+lite:///data/notebook", "must end in .db"),
])
def test_bad_store_addresses_are_refused_in_one_sentence(store, message):
    with pytest.raises(RagError, match=message):
        parse_address(store)


def test_a_directory_in_rag_store_is_the_local_store(tmp_path):
    settings = load_settings(environ={"RAG_STORE": str(tmp_path / "idx")})
    assert (settings.store, settings.index_dir) == ("", tmp_path / "idx")
    assert load_settings(environ={"RAG_STORE": "milvus://127.0.0.1:1"}).store == "milvus://127.0.0.1:1"


def test_collection_names_map_both_ways():
    for name in ["default", "a_b", "beta-2.x_y", "x_d", "h1"]:
        assert logical_name(physical_name(name, "docs")) == name
    assert logical_name(physical_name("a", "chunks")) is None and logical_name("other_docs") is None


def test_the_token_comes_from_the_variable_or_the_first_line_of_its_file(tmp_path):
    from rag.store.milvus_client import read_token

    (tmp_path / "token").write_text("root:Milvus\nignored\n")
    assert read_token(load_settings(environ={"RAG_MILVUS_TOKEN_FILE": str(tmp_path / "token")})) == "root:Milvus"
    assert read_token(load_settings(environ={"RAG_MILVUS_TOKEN": "key", "RAG_MILVUS_TOKEN_FILE": "/none"})) == "key"
    assert "s3cr3t" not in repr(load_settings(environ={"RAG_MILVUS_TOKEN": "s3cr3t"}))
    with pytest.raises(RagError, match="Cannot read a Milvus token"):
        read_token(load_settings(environ={"RAG_MILVUS_TOKEN_FILE": str(tmp_path / "missing")}))


def test_a_refused_token_is_one_sentence():
    class Refused(Exception):
        code, message = 1800, "auth check failure, please check username and password are correct"

    error = explain(MilvusAddress("https://x", "milvus+https://x"), Refused())
    assert "refused the token" in str(error) and "RAG_MILVUS_TOKEN" in str(error)


def test_no_server_is_one_sentence_after_bounded_retries(settings, monkeypatch):
    from rag.store import milvus_client
    from tests.openai_server import free_port

    down = settings.replace(store=f"milvus://127.0.0.1:{free_port()}")
    with pytest.raises(RagError, match=r"cannot be reached; start it or check RAG_STORE"):
        Collection.open(down)
    monkeypatch.setattr(milvus_client, "BACKOFF", (0.01,))
    with pytest.raises(RagError, match="cannot be reached"):
        list_collections(down)


def test_loading_after_a_restart_is_retried_on_any_error_a_call_is_not(monkeypatch):
    """A collection load right after a restart may fail while the server reads its files back
    (milvus-lite once said "No data left in file" in a full run); it is retried within the same pauses.
    Other calls retry only while the server cannot be reached."""
    from rag.store import milvus_client
    from rag.store.milvus_client import Connection, MilvusAddress

    monkeypatch.setattr(milvus_client, "BACKOFF", (0.01, 0.01))
    conn = Connection.__new__(Connection)  # no client: only the retry logic is under test
    conn.address = MilvusAddress("http://127.0.0.1:1", "milvus://127.0.0.1:1")

    def failing_twice():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("No data left in file")
        return "loaded"

    calls = []
    assert conn.retry(failing_twice, patient=True) == "loaded" and len(calls) == 3
    calls = []
    with pytest.raises(RagError, match=r"refused the request \(No data left in file\)"):
        conn.retry(failing_twice)
    assert len(calls) == 1


# -- versioned writes ------------------------------------------------------------------------------


def test_an_unfinished_write_stays_invisible_and_is_swept(milvus_settings):
    """Rows written under a version that never became current (a writer killed before its flip) are
    seen by no read, and the sweep removes them."""
    from rag.store.milvus import new_version

    coll = Collection.open(milvus_settings)
    coll.add_documents([CATS], chunk_size=50)
    store = coll.store
    changed = Document(CATS.source, "Cats hunt mice at night.", "Cats")
    version = new_version()
    chunks = split_document(changed, 50, 0)
    store._insert("texts", store._text_rows(changed, version))
    store._insert("chunks", store._chunk_rows(changed, chunks, coll.embedder.embed([c.text for c in chunks]), version))
    for mode in ("dense", "bm25", "hybrid"):
        assert all("mice" not in h.text for h in coll.search("cats hunt mice", k=5, mode=mode))
    assert coll.document(CATS.source) == CATS and store.count_chunks() == 2
    assert store.integrity_problems() == []  # a write this young may still be finishing
    assert store.sweep(older_than=3600) == 0 and store.sweep(older_than=0) == 1
    ids, _ = store.vectors()
    assert len(ids) == 2 and store.integrity_problems() == []


def test_replaced_documents_never_crowd_out_the_top_k(milvus_settings, monkeypatch):
    """Old rows of a document that is being replaced are skipped, and the search asks for more."""
    from rag.store import milvus

    monkeypatch.setattr(milvus, "SLACK", 0)
    coll = Collection.open(milvus_settings)
    coll.add_documents([Document(f"mem://{i}", f"note {i} about cats", f"N{i}") for i in range(6)])
    version = milvus.new_version()
    ghost = Document("mem://0", "cats cats cats", "ghost")
    chunks = split_document(ghost, 500, 0)
    vectors = coll.embedder.embed(["cats cats cats"])
    coll.store._insert("chunks", coll.store._chunk_rows(ghost, chunks, vectors, version))
    hits = coll.search("cats", k=3, mode="bm25")
    assert len(hits) == 3 and all(h.title != "ghost" for h in hits)


def test_scores_make_sense_on_lite(milvus_settings):
    """Lite hands BM25 back negated; the store shows it positive and keeps Milvus's order."""
    coll = Collection.open(milvus_settings)
    coll.add_documents([CATS, FAISS_DOC, Document("mem://both", "cats and dense vectors", "Both")], chunk_size=50)
    hits = coll.search("cats dense vectors", k=3, mode="bm25")
    scores = [h.bm25_score for h in hits]
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    dense = coll.search("cats dense vectors", k=3, mode="dense")
    assert all(-1 <= h.dense_score <= 1 for h in dense)


# -- done when: the CLI on a server, a restart, two processes ------------------------------------


def _rag(store: str, *args: str, index: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_STORE": store, "RAG_INDEX_DIR": str(index)}
    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_on_a_server_survives_its_restart_and_shares_with_another_process(tmp_path, milvus_settings,
                                                                              milvus_server):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "cats.txt").write_text("Cats purr when they are content. A cat sleeps most of the day.")
    (notes / "faiss.txt").write_text("FAISS searches dense vectors by inner product.")
    store = milvus_server.uri
    first = _rag(store, "ingest", str(notes), "--json", index=tmp_path / "idx")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1])["documents_added"] == 2
    # This process opened nothing before; it sees what the other process wrote.
    here = Collection.open(milvus_settings)
    assert here.search("which animal purrs", k=1, mode="hybrid")[0].source.endswith("cats.txt")

    again = _rag(store, "ingest", str(notes), "--json", index=tmp_path / "idx")
    report = json.loads(again.stdout.splitlines()[-1])
    assert (report["documents_added"], report["documents_unchanged"], report["chunks_added"]) == (0, 2, 0)

    milvus_server.kill()  # kill -9: what the server had acknowledged must survive
    milvus_server.start()
    hits = _rag(store, "search", "inner product", "--mode", "hybrid", "--json", index=tmp_path / "idx")
    assert hits.returncode == 0, hits.stderr
    assert json.loads(hits.stdout)[0]["source"].endswith("faiss.txt")
    docs = _rag(store, "docs", "--json", index=tmp_path / "idx")
    sources = sorted(d["source"] for d in json.loads(docs.stdout))
    assert [Path(s).name for s in sources] == ["cats.txt", "faiss.txt"]
    deleted = _rag(store, "delete", sources[0], index=tmp_path / "idx")
    assert deleted.returncode == 0, deleted.stderr
    # The earlier connection of this process carries on after the restart.
    assert [d.source for d in here.documents()] == [sources[1]]
    assert here.store.integrity_problems() == []


def test_search_says_the_server_is_down_then_works_when_it_is_back(milvus_settings, milvus_server):
    coll = Collection.open(milvus_settings)
    coll.add_documents([CATS])
    milvus_server.kill()
    try:
        with pytest.raises(RagError, match="cannot be reached"):
            coll.search("purr", k=1, mode="hybrid")
    finally:
        milvus_server.start()
    assert coll.search("purr", k=1, mode="hybrid")[0].source == "mem://cats"


# -- the embedded engine -----------------------------------------------------------------------------


def test_embedded_engine_keeps_a_collection_in_a_path(tmp_path):
    store = f"milvus+lite://{tmp_path / 'notebook.db'}"
    child = ("import sys; from rag.collection import Collection; from rag.documents import Document; "
             "from rag.settings import load_settings; s = load_settings(environ={}, store=sys.argv[1], "
             "index_dir=sys.argv[2]); c = Collection.open(s); "
             "c.add_documents([Document('mem://cats', 'Cats purr when they are content.', 'Cats')]); "
             "print(c.search('purr', k=1, mode='hybrid')[0].source)")
    for _ in range(2):  # the second process reopens the path
        out = subprocess.run([sys.executable, "-c", child, store, str(tmp_path / "idx")], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "mem://cats"


# -- many instances ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_app_instances_share_one_collection_and_outlive_a_server_restart(tmp_path, milvus_server):
    """An upload ingested in one app is found by the other; with Milvus down, a search says so in one
    sentence and the app keeps serving; once the server is back, searches work again; with the first
    app stopped, the second serves on."""
    from gradio_client import handle_file

    from tests.e2e_harness import AppProcess, gradio_client

    milvus_server.drop_all()
    notes = tmp_path / "lighthouse.txt"
    notes.write_text("The lighthouse on Quillon is kept by Ingrid Halvorsen; its lamp is painted red.\n")
    apps = [AppProcess(tmp_path, "--store", milvus_server.uri, index_dir=tmp_path / f"index{n}") for n in (0, 1)]
    try:
        for app in apps:
            app.wait_ready()
        writer, reader = (gradio_client(app, workdir=tmp_path / f"client{n}") for n, app in enumerate(apps))
        for client in (writer, reader):
            client.predict("team", api_name="/choose_collection")
        summary, *_ = writer.predict("", [handle_file(str(notes))], 500, 0, api_name="/ingest")
        assert "**1** added" in summary
        note, hits, *_ = reader.predict("Who keeps the lighthouse?", 4, "hybrid", api_name="/search")
        assert "Ingrid Halvorsen" in hits

        milvus_server.kill()
        try:
            note, hits, *_ = reader.predict("Who keeps the lighthouse?", 4, "hybrid", api_name="/search")
            assert "cannot be reached" in note and "Ingrid" not in hits
            with urllib.request.urlopen(apps[1].url, timeout=10) as page:
                assert page.status == 200
        finally:
            milvus_server.start()
        note, hits, *_ = reader.predict("Who keeps the lighthouse?", 4, "hybrid", api_name="/search")
        assert "Ingrid Halvorsen" in hits, note
        apps[0].stop()  # the other instance goes on alone
        note, hits, *_ = reader.predict("What colour is the lamp?", 4, "bm25", api_name="/search")
        assert "painted red" in hits, note
    finally:
        for app in apps:
            app.stop()
