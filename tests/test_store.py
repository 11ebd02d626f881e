"""The collection with the real embedding model: dedupe, replace, delete, reopen, mismatch, crash.

Tests taking `coll` or `store_settings` are the store contract: they run on the local store and on a
milvus-lite server (tests/milvus_server.py). Those taking `local_coll` test the local store's own parts.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rag.chunking import split_document
from rag.collection import Collection, list_collections
from rag.documents import Document
from rag.errors import RagError

ROOT = Path(__file__).resolve().parents[1]

CATS = Document("mem://cats", "Cats purr when they are content.\n\nA cat sleeps most of the day.", "Cats")
FAISS_DOC = Document("mem://faiss", "FAISS searches dense vectors by inner product.", "FAISS")


@pytest.fixture
def coll(store_settings):
    return Collection.open(store_settings)


@pytest.fixture
def local_coll(settings):
    return Collection.open(settings)


def test_add_search_and_report(coll):
    report = coll.add_documents([CATS, FAISS_DOC], chunk_size=50)
    assert (report.documents_added, report.chunks_added, report.errors) == (2, 3, [])
    hits = coll.search("which animal purrs?", k=2, mode="dense")
    assert hits[0].source == "mem://cats" and hits[0].text == "Cats purr when they are content."
    assert hits[0].dense_score > hits[1].dense_score
    assert CATS.text[hits[0].start : hits[0].end] == hits[0].text


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_every_mode_finds_the_right_chunk_with_both_scores(coll, mode):
    coll.add_documents([CATS, FAISS_DOC], chunk_size=50)
    hits = coll.search("inner product vectors", k=3, mode=mode)
    assert hits[0].source == "mem://faiss"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits[0].bm25_score > 0
    assert (hits[0].dense_score is None) == (mode == "bm25")


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_a_passage_a_document_repeats_is_one_hit_and_leaves_room_for_others(coll, mode):
    """A deck repeating one slide's words: one hit for them, so another document holding them is in the top k."""
    line = "All people are born free and equal in dignity and rights."
    deck = Document("mem://deck", "\n\n".join([line] * 6 + ["A closing slide on something else."]), "Deck")
    book = Document("mem://book", line + "\n\nA chapter on rivers and their bridges.", "Book")
    coll.add_documents([deck, book], chunk_size=60)
    hits = coll.search("born free and equal in dignity", k=3, mode=mode)
    assert [h.text for h in hits[:2]] == [line, line] and {h.source for h in hits[:2]} == {"mem://deck", "mem://book"}
    shown = 2 if mode == "bm25" else 3  # keywords match the two copies of the line only
    assert [h.rank for h in hits] == list(range(1, shown + 1)) and len({(h.source, h.text) for h in hits}) == shown


def test_unchanged_source_adds_nothing_and_changed_source_replaces(coll):
    coll.add_documents([CATS])
    again = coll.add_documents([CATS])
    assert (again.documents_added, again.documents_unchanged, again.chunks_added) == (0, 1, 0)
    changed = Document(CATS.source, "Cats hunt mice at night.", "Cats")
    report = coll.add_documents([changed])
    assert report.documents_replaced == 1
    assert [h.text for h in coll.search("purr", k=5, mode="bm25")] == []
    assert coll.search("mice", k=5, mode="bm25")[0].text == "Cats hunt mice at night."
    assert coll.store.count_chunks() == 1
    assert coll.store.integrity_problems() == []


def test_delete_removes_document_and_vectors(coll):
    coll.add_documents([CATS, FAISS_DOC])
    assert coll.delete("mem://cats") is True
    assert coll.delete("mem://cats") is False
    assert [d.source for d in coll.documents()] == ["mem://faiss"]
    assert {h.source for h in coll.search("cats purr", k=5, mode="dense")} == {"mem://faiss"}
    assert coll.store.integrity_problems() == []


def test_reopen_from_disk_gives_the_same_results(store_settings, coll):
    coll.add_documents([CATS, FAISS_DOC], chunk_size=50)
    before = [h.to_dict() for h in coll.search("cat sleeps", k=3)]
    coll.store.close()
    reopened = Collection.open(store_settings)
    assert [h.to_dict() for h in reopened.search("cat sleeps", k=3)] == before
    assert [d.source for d in reopened.documents()] == ["mem://cats", "mem://faiss"]


def test_stale_faiss_file_is_rebuilt_from_the_database(settings, local_coll):
    coll = local_coll
    coll.add_documents([CATS, FAISS_DOC])
    coll.store.close()
    for f in (settings.index_dir / "default").glob("faiss-*.index"):
        f.unlink()
    reopened = Collection.open(settings)
    assert reopened.search("purr", k=1, mode="dense")[0].source == "mem://cats"
    assert reopened.store.integrity_problems() == []


def test_other_embedding_model_is_refused(store_settings, coll):
    coll.add_documents([CATS])
    with pytest.raises(RagError, match="was built with embedding model"):
        Collection.open(store_settings.replace(embedding_model="intfloat/e5-small"))


def test_collections_are_separate(store_settings):
    Collection.open(store_settings, "alpha").add_documents([CATS])
    Collection.open(store_settings, "beta-2.x_y").add_documents([FAISS_DOC])
    assert list_collections(store_settings) == ["alpha", "beta-2.x_y"]
    assert [d.source for d in Collection.open(store_settings, "beta-2.x_y").documents()] == ["mem://faiss"]


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "x" * 65])
def test_bad_collection_names_are_refused(settings, name):
    with pytest.raises(RagError, match="Collection name"):
        Collection.open(settings, name)


def test_opening_a_missing_collection_for_reading_is_an_error(store_settings):
    with pytest.raises(RagError, match="ingest something"):
        Collection.open(store_settings, "nothing", create=False)
    assert not (store_settings.index_dir / "nothing").exists()
    assert list_collections(store_settings) == []


def test_document_text_and_pages_are_kept(coll):
    doc = Document("mem://book", "first page\n\nsecond page", "Book", {"kind": "pdf"}, pages=[(1, 0), (2, 12)])
    coll.add_documents([doc], chunk_size=12)
    assert coll.document("mem://book") == doc
    assert [h.page for h in sorted(coll.search("page", k=2, mode="bm25"), key=lambda h: h.start)] == [1, 2]
    deck = Document("mem://deck", "first slide\n\nsecond slide", "Deck", {"location": "slide", "ocr_pages": [2]},
                    pages=[(1, 0), (2, 13)])
    coll.add_documents([deck], chunk_size=100)  # one chunk a slide, however big the chunks may be
    hits = sorted(coll.search("slide", k=3, mode="bm25"), key=lambda h: h.start)
    assert [(h.where, h.ocr) for h in hits] == [("slide 1", False), ("slide 2", True)]
    with pytest.raises(RagError, match="not in collection"):
        coll.document("mem://none")


# -- searching the ticked documents only ----------------------------------------------------------

# 160 chunks that match the query strongly, and a one-chunk document that matches it weakly (a word of
# it, and less meaning): collection-wide, the small one is outside the top 100 in every mode.
LOUD = Document("mem://loud", "\n\n".join(f"Cats purr by the warm fire, note {i}." for i in range(160)), "Cats")
QUIET = Document("mem://quiet", "Dogs bark at the fire engine.", "Dogs")
TICK_QUERY = "cats purr by the fire"


def test_search_reads_the_ticked_documents_even_outside_the_collection_wide_top_100(coll):
    coll.add_documents([LOUD, QUIET, FAISS_DOC], chunk_size=40)
    assert coll.store.chunk_count("mem://loud") == 160
    for mode in ("dense", "bm25", "hybrid"):
        assert "mem://quiet" not in {h.source for h in coll.search(TICK_QUERY, k=100, mode=mode)}, mode
        hits = coll.search(TICK_QUERY, k=4, mode=mode, sources=["mem://quiet", "mem://not-stored"])
        assert [(h.source, h.rank) for h in hits] == [("mem://quiet", 1)], mode
        assert (hits[0].dense_score is None) == (mode == "bm25") and hits[0].bm25_score > 0
        two = coll.search(TICK_QUERY, k=100, mode=mode, sources=["mem://quiet", "mem://faiss"])
        assert {h.source for h in two} in ({"mem://quiet"}, {"mem://quiet", "mem://faiss"}), mode
        loud = coll.search(TICK_QUERY, k=7, mode=mode, sources=["mem://loud"])
        assert len(loud) == 7 and {h.source for h in loud} == {"mem://loud"}, mode
        assert coll.search(TICK_QUERY, k=4, mode=mode, sources=["mem://not-stored"]) == []
    vector = coll.embedder.embed_query(TICK_QUERY)
    among, everywhere = coll.store.dense(vector, 5, sources=["mem://loud"]), coll.store.dense(vector, 5)
    assert [i for i, _ in among] == [i for i, _ in everywhere]  # the loud document's best are the best overall
    assert [s for _, s in among] == pytest.approx([s for _, s in everywhere], abs=1e-5)


def test_ticked_sources_are_matched_exactly_whatever_characters_they_hold(coll):
    """A source is a value, never part of a query's syntax: quotes, backslashes and newlines in it match
    only itself, and a source built to widen a filter matches nothing."""
    odd = Document("mem://say \"hi\" \\ it's\nnext\r\t🙂", "The marmot whistles from its burrow.", "Odd")
    coll.add_documents([odd, CATS, FAISS_DOC])
    hostile = ['" or source != "', "mem://cats' or source != '", 'x"] or source != "', "mem://cats\\", "\udcff"]
    for mode in ("dense", "bm25", "hybrid"):
        hits = coll.search("marmot whistles, cats purr", k=5, mode=mode, sources=[odd.source])
        assert [h.source for h in hits] == [odd.source], mode
        assert coll.search("marmot whistles, cats purr", k=5, mode=mode, sources=hostile) == [], mode
    with pytest.raises(RagError, match=r"^No document is ticked in Sources; tick at least one"):
        coll.search("cats", sources=[])


CHILD = textwrap.dedent(
    """
    import sys, time
    import rag.collection as c
    from rag.documents import Document
    from rag.settings import load_settings
    c.EMBED_GROUP = 4  # write often, so the kill lands between and inside writes
    coll = c.Collection.open(load_settings(environ={}, index_dir=sys.argv[1], store=sys.argv[2]))
    coll.embedder.embed(["warm up"])
    def docs():
        for i in range(40):
            yield Document(f"mem://doc{i}", " ".join(f"word{i}-{j}" for j in range(30 * (i % 5 + 1))), f"Doc {i}")
    print("ready", flush=True)
    coll.add_documents(docs(), chunk_size=50)
    print("finished", flush=True)
    """
)


def test_kill_during_ingest_leaves_whole_documents_only(store_settings, coll):
    if store_settings.store.startswith("milvus+lite"):
        pytest.skip("an embedded path is open in one process only; the server mode is the one to share")
    coll.add_documents([CATS])
    coll.store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.0, 0.4, 1.2):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(store_settings.index_dir), store_settings.store],
                                 stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reopened = Collection.open(store_settings)
        assert reopened.store.integrity_problems() == []
        docs = {d.source: d for d in reopened.documents()}
        assert "mem://cats" in docs
        for source, info in docs.items():
            assert info.chunks == len(split_document(reopened.document(source), 50 if source != "mem://cats" else 500))
        reopened.store.close()


def test_second_writer_waits_then_is_refused(settings, local_coll):
    coll = local_coll
    coll.add_documents([CATS])
    other = Collection.open(settings)
    other.store.lock_timeout = 0.3
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(30)", str(settings.index_dir / "default" / "lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        # Reading needs no lock: while another process holds it, every mode still answers.
        assert [other.search("cats purr", k=1, mode=m)[0].source for m in ("dense", "bm25", "hybrid")] == ["mem://cats"] * 3
        with pytest.raises(RagError, match="being written by another process"):
            other.add_documents([FAISS_DOC])
    finally:
        holder.kill()
        holder.wait()
    assert [d.source for d in other.documents()] == ["mem://cats"]
    assert other.add_documents([FAISS_DOC]).documents_added == 1


def test_manifest_records_model_and_dimension(settings, local_coll):
    manifest = json.loads((settings.index_dir / "default" / "manifest.json").read_text())
    assert manifest["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2#onnx-int8"
    assert manifest["dimension"] == 384 and manifest["format_version"] == 2


# -- chunk settings are part of a document's identity ---------------------------------------------


def test_new_chunk_settings_rechunk_an_unchanged_source(coll):
    assert coll.add_documents([CATS], chunk_size=50).chunks_added == 2
    again = coll.add_documents([CATS], chunk_size=500)
    assert (again.documents_replaced, again.chunks_added) == (1, 1)
    assert coll.add_documents([CATS], chunk_size=500).documents_unchanged == 1
    overlap = coll.add_documents([CATS], chunk_size=500, chunk_overlap=10)
    assert overlap.documents_replaced == 1 and coll.store.integrity_problems() == []


def test_chunks_longer_than_the_model_reads_are_warned_about(coll):
    long_doc = Document("mem://long", " ".join(f"token{i}" for i in range(800)), "Long")
    report = coll.add_documents([long_doc], chunk_size=5000)
    (result,) = report.results
    assert result.status == "added" and "longer than the 256 word pieces" in result.warning
    assert report.warnings == [{"source": "mem://long", "warning": result.warning}]
    fine = coll.add_documents([long_doc], chunk_size=500)
    assert fine.warnings == [] and fine.results[0].warning == ""


# -- reads never wait for a writer ----------------------------------------------------------------


def test_search_and_other_writers_go_on_while_an_ingest_fetches_or_embeds(store_settings, coll):
    """The ingest is paused between documents (where a fetch or an embedding would run): the writer
    lock is free, searches answer, and a second writer with a short lock timeout gets through."""
    import threading

    coll.add_documents([CATS])
    paused, resume = threading.Event(), threading.Event()

    def slow_docs():
        yield FAISS_DOC
        paused.set()
        resume.wait(30)
        yield Document("mem://late", "Late arrivals are indexed too.", "Late")

    ingest = threading.Thread(target=lambda: coll.add_documents(slow_docs()))
    ingest.start()
    try:
        assert paused.wait(60)
        other = Collection.open(store_settings)
        other.store.lock_timeout = 0.3
        assert other.search("cats purr", k=1, mode="hybrid")[0].source == "mem://cats"
        assert other.add_documents([Document("mem://dogs", "Dogs bark.", "Dogs")]).documents_added == 1
        assert coll.search("dogs bark", k=1, mode="bm25")[0].source == "mem://dogs"
    finally:
        resume.set()
        ingest.join(60)
    assert {d.source for d in coll.documents()} == {"mem://cats", "mem://faiss", "mem://dogs", "mem://late"}
    assert coll.store.integrity_problems() == []


def test_a_reader_never_sees_a_writers_uncommitted_rows(local_coll):
    coll = local_coll

    class Abort(Exception):
        pass

    coll.add_documents([CATS])
    with pytest.raises(Abort):
        with coll.store.writer(), coll.store._transaction() as db:
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            db.execute("INSERT INTO documents(source, content_hash, text, added_at) VALUES (?, ?, ?, 0)",
                       (FAISS_DOC.source, FAISS_DOC.content_hash, FAISS_DOC.text))
            db.execute("INSERT INTO chunks(doc_id, ord, text, start, \"end\", vector) "
                       "VALUES (last_insert_rowid(), 0, 'inner product', 0, 13, zeroblob(1536))")
            assert db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 2  # the writer sees them
            assert [d.source for d in coll.documents()] == ["mem://cats"]
            assert coll.search("inner product", k=5, mode="bm25") == []
            assert coll.store.count_chunks() == 1
            raise Abort
    assert [d.source for d in coll.documents()] == ["mem://cats"]


def test_another_writers_changes_are_applied_incrementally(settings, local_coll):
    """A second process's ingest and delete reach this one's vector index through the change log,
    without rebuilding it from every stored vector."""
    coll = local_coll
    coll.add_documents([CATS])
    assert coll.search("purr", k=1, mode="dense")[0].source == "mem://cats"
    rebuilds = []
    original = coll.store._vectors.rebuild
    coll.store._vectors.rebuild = lambda db: rebuilds.append(1) or original(db)
    other = Collection.open(settings)
    other.add_documents([FAISS_DOC], chunk_size=500)
    assert coll.search("inner product of dense vectors", k=1, mode="dense")[0].source == "mem://faiss"
    other.delete("mem://cats")
    assert {h.source for h in coll.search("cats purr", k=5, mode="dense")} == {"mem://faiss"}
    assert rebuilds == [] and coll.store.integrity_problems() == []
    other.store.close()


def test_searches_neither_do_nor_wait_for_a_writers_work_on_the_vector_index(settings, local_coll):
    """While a thread of this process holds the writer lock, a search answers from the vector index as it
    is and the writer takes in its commits when its hold ends; while another thread is changing the
    index, a search does not wait for it either."""
    import threading

    coll = local_coll
    coll.add_documents([CATS])
    vectors = coll.store._vectors
    assert coll.search("purr", k=1, mode="dense")[0].source == "mem://cats"  # the index is loaded
    applied = []
    original = vectors._apply
    vectors._apply = lambda changes: applied.append(threading.current_thread().name) or original(changes)

    def search_in_a_thread(query):
        found = []
        searcher = threading.Thread(target=lambda: found.extend(coll.search(query, k=2, mode="dense")))
        searcher.start()
        searcher.join(20)
        assert not searcher.is_alive()
        return {h.source for h in found}

    chunks = split_document(FAISS_DOC)
    with coll.store.writer():
        coll.store.put_document(FAISS_DOC, chunks, coll.embedder.embed([c.text for c in chunks]))
        assert search_in_a_thread("inner product of dense vectors") == {"mem://cats"}
        assert applied == []
    assert applied == [threading.current_thread().name]
    assert "mem://faiss" in search_in_a_thread("inner product of dense vectors")

    other = Collection.open(settings)
    other.add_documents([Document("mem://dogs", "Dogs bark at the postman.", "Dogs")])
    with vectors._update:  # another thread is changing the index
        assert "mem://dogs" not in search_in_a_thread("dogs bark")
    assert "mem://dogs" in search_in_a_thread("dogs bark")
    other.store.close()


# -- the approximate index --------------------------------------------------------------------------


def test_large_collections_use_a_graph_that_skips_removed_chunks_and_reloads(settings, monkeypatch):
    """HNSW above the exact threshold (lowered here): the same top 5 as exact search on a small set, a
    removed chunk skipped (a tombstone) before and after a reload, and rebuilt without it once the
    removed share passes SAVE_SHARE."""
    from rag.store import vector_index

    monkeypatch.setattr(vector_index, "EXACT_UP_TO", 40)
    coll = Collection.open(settings)
    docs = [Document(f"mem://n{i}", f"Note {i} about topic{i % 7} and item{i}.", f"N{i}") for i in range(90)]
    coll.add_documents(docs)
    assert vector_index.is_graph(coll.store._vectors._index)
    ids, vectors = coll.store.vectors()
    query = coll.embedder.embed_query("item42 topic0")
    exact = ids[np.argsort(-(vectors @ query))[:5]].tolist()
    assert [i for i, _ in coll.store.dense(query, 5)] == exact
    n42 = coll.store.chunks(exact)  # the chunk ids of mem://n42, by source
    removed = [i for i, row in n42.items() if row.source == "mem://n42"]
    monkeypatch.setattr(vector_index, "SAVE_SHARE", 0.5)  # one removal stays a tombstone
    assert coll.delete("mem://n42") and coll.store.integrity_problems() == []
    assert coll.store._vectors._tombstones == set(removed)
    assert "mem://n42" not in {h.source for h in coll.search("item42", k=5, mode="dense")}
    coll.store.close()
    reopened = Collection.open(settings)
    assert reopened.search("item17 topic3", k=1, mode="hybrid")[0].source == "mem://n17"
    assert vector_index.is_graph(reopened.store._vectors._index)
    assert reopened.store._vectors._tombstones == set(removed)  # what the file holds beyond the database
    assert "mem://n42" not in {h.source for h in reopened.search("item42", k=5, mode="dense")}
    assert reopened.store.integrity_problems() == []
    monkeypatch.setattr(vector_index, "SAVE_SHARE", 0.01)
    assert reopened.delete("mem://n43")
    assert reopened.store._vectors._tombstones == set()  # rebuilt at the save, without them
    assert reopened.store.integrity_problems() == []


def test_a_graph_searches_only_the_ticked_documents(settings, monkeypatch):
    """HNSW (threshold lowered): a few ticked chunks are scored exactly from the graph's own vectors, a
    ticked share larger than EXACT_UP_TO walks the graph with the filter, and a tombstone is skipped
    even when a choice of ids (read before its removal, say) names it."""
    from rag.store import vector_index

    monkeypatch.setattr(vector_index, "EXACT_UP_TO", 40)
    coll = Collection.open(settings)
    coll.add_documents([LOUD, QUIET, FAISS_DOC], chunk_size=40)
    store = coll.store
    assert vector_index.is_graph(store._vectors._index)
    vector = coll.embedder.embed_query(TICK_QUERY)
    few = store.dense(vector, 4, sources=["mem://quiet", "mem://faiss"])
    assert dict(few) == pytest.approx(store.dense_scores(vector, [i for i, _ in few]))
    assert {store.chunks([i])[i].source for i, _ in few} == {"mem://quiet", "mem://faiss"}
    for mode in ("dense", "hybrid"):
        assert [h.source for h in coll.search(TICK_QUERY, k=4, mode=mode, sources=["mem://quiet"])] == ["mem://quiet"]
    ids, vectors = store.vectors()
    loud = np.sort([i for i, row in store.chunks(ids.tolist()).items() if row.source == "mem://loud"])
    exact = loud[np.argsort(-(vectors[np.isin(ids, loud)] @ vector))[:5]]
    walked = store.dense(vector, 5, sources=["mem://loud"])
    assert len(loud) > vector_index.EXACT_UP_TO and len(set(i for i, _ in walked) & set(exact.tolist())) >= 4
    quiet = [i for i, _ in store.dense(vector, 4, sources=["mem://quiet"])]
    monkeypatch.setattr(vector_index, "SAVE_SHARE", 0.5)  # one removal stays a tombstone
    assert coll.delete("mem://quiet") and store._vectors._tombstones == set(quiet)
    assert store.dense(vector, 4, sources=["mem://quiet"]) == []
    faiss_ids = [i for i, _ in few if i not in quiet]
    assert [i for i, _ in store._vectors.search(vector, 4, only=np.array(quiet + faiss_ids))] == faiss_ids
    walked_again = store._vectors.search(vector, 5, only=np.array(quiet + loud.tolist()))
    assert len(walked_again) == 5 and not set(quiet) & {i for i, _ in walked_again}


# -- the keyword index ------------------------------------------------------------------------------


def test_keyword_search_stems_english_words(local_coll):
    local_coll.add_documents([Document("mem://run", "The runner was running; she runs daily.", "Run"), FAISS_DOC])
    assert [h.source for h in local_coll.search("runs", k=2, mode="bm25")] == ["mem://run"]
    assert [h.source for h in local_coll.search("searching vector", k=2, mode="bm25")] == ["mem://faiss"]


def test_every_chunk_is_found_by_its_documents_title_and_an_index_built_otherwise_is_rebuilt(settings):
    """Keywords index each chunk with its document's title (once, when the chunk starts with it); an index
    whose marker names no or other analysis is rebuilt from the database on opening."""
    coll = Collection.open(settings)
    long_doc = Document("mem://felines", "Whiskers twitch at dawn.\n\nThey nap in the afternoon sun.", "Felines")
    coll.add_documents([long_doc, FAISS_DOC], chunk_size=30)
    hits = coll.search("felines", k=5, mode="bm25")
    assert {h.source for h in hits} == {"mem://felines"} and len(hits) == coll.store.chunk_count("mem://felines") == 2
    path, generation = coll.store.path, coll.store._keywords.generation()
    coll.store.close()
    (path / "keywords" / "generation").write_text(str(generation))  # as written before the title was indexed
    reopened = Collection.open(settings)
    assert reopened.store._keywords.generation() == generation
    assert len(reopened.search("felines", k=5, mode="bm25")) == 2
    assert reopened.store.integrity_problems() == []


def test_keyword_index_catches_up_after_a_crash_between_the_two_commits(settings, monkeypatch):
    """The database committed, the keyword index did not (its commit failed, as when a process dies
    between them): the next opening replays the log, and a replay of what tantivy had already taken
    in (its marker written before the crash said otherwise) adds nothing twice."""
    from rag.store import keyword_index

    coll = Collection.open(settings)
    coll.add_documents([CATS])
    generation = coll.store._keywords.generation()
    monkeypatch.setattr(keyword_index.KeywordIndex, "catch_up", lambda self, db: None)
    coll.add_documents([FAISS_DOC])
    assert coll.search("inner product", k=1, mode="bm25") == []  # the keyword index lags
    assert any("keyword index at generation" in p for p in coll.store.integrity_problems())
    coll.store.close()
    monkeypatch.undo()
    reopened = Collection.open(settings)
    assert reopened.search("inner product", k=1, mode="bm25")[0].source == "mem://faiss"
    assert reopened.store.integrity_problems() == []
    reopened.store._keywords._write_marker(generation)  # tantivy committed, its marker did not
    reopened.store.close()
    again = Collection.open(settings)
    assert [h.source for h in again.search("purr inner product", k=5, mode="bm25")] == ["mem://faiss", "mem://cats"]
    assert again.store.integrity_problems() == []


def test_a_collection_from_before_the_keyword_index_is_upgraded_on_opening(settings):
    """Files written when FTS5 held the keywords (format 1): the table and its triggers are dropped, the
    keyword index is built from the stored chunks, and the manifest says format 2, so that a program
    which reads only format 1 refuses the collection instead of searching an empty FTS5 table."""
    import shutil
    import sqlite3

    coll = Collection.open(settings)
    coll.add_documents([CATS, FAISS_DOC])
    path = coll.store.path
    coll.store.close()
    shutil.rmtree(path / "keywords")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    db = sqlite3.connect(path / "store.sqlite")
    db.executescript("""
        CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id');
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
        INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
    """)
    db.close()
    reopened = Collection.open(settings)
    assert reopened.search("cats purr", k=1, mode="bm25")[0].source == "mem://cats"
    db = sqlite3.connect(path / "store.sqlite")
    assert db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'chunks_%'").fetchall() == [("chunks_doc",), ("chunks_gen",)]
    db.close()
    assert reopened.store.integrity_problems() == []
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 2


def test_a_collection_of_a_newer_format_is_refused_in_one_sentence(settings):
    coll = Collection.open(settings)
    coll.add_documents([CATS])
    path = coll.store.path
    coll.store.close()
    before = (path / "store.sqlite").read_bytes()
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 3}))
    with pytest.raises(RagError, match=r"has format version 3, this program reads 2; re-ingest into a new collection\.$"):
        Collection.open(settings).search("cats", k=1, mode="bm25")
    assert (path / "store.sqlite").read_bytes() == before


def test_hybrid_asks_bm25_only_for_candidates_that_can_matter_and_ranks_as_full_scoring_would(local_coll,
                                                                                              monkeypatch):
    """Short candidate lists, so the keyword list is cut: the fused top k must equal convex fusion over
    every candidate with every BM25 score, while fewer BM25 lookups are made than candidates."""
    coll = local_coll
    from rag import retrieval

    monkeypatch.setattr(retrieval, "CANDIDATES", 6)
    topics = ["cats purr", "dogs bark", "birds sing", "fish swim", "cows moo", "bees buzz"]
    coll.add_documents([Document(f"mem://{i}", f"{t} and {topics[(i + 1) % 6]} near item{i}.", t)
                        for i, t in enumerate(topics * 4)])
    asked = []
    original = coll.store.bm25_for
    monkeypatch.setattr(coll.store, "bm25_for", lambda q, ids: asked.append(list(ids)) or original(q, ids))
    saved = []
    for query in ["cats purr near dogs", "bees buzz", "item3 fish swim", "birds"]:
        asked.clear()
        hits = coll.search(query, k=3, mode="hybrid")
        vector = coll.embedder.embed_query(query)
        dense = dict(coll.store.dense(vector, 6))
        keyword = coll.store.bm25_scores(query)
        lexical = dict(sorted(keyword.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
        ids = list(dense.keys() | lexical.keys())
        full = retrieval.convex(coll.store.dense_scores(vector, ids), {i: keyword[i] for i in ids if i in keyword})
        expected = retrieval.top_k(full, 3)
        assert [h.chunk_id for h in hits] == [i for i, _ in expected]
        assert [h.score for h in hits] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert [h.bm25_score for h in hits] == [keyword.get(i, 0.0) for i, _ in expected]
        unknown = [i for i in dense if i not in lexical]
        assert sum(map(len, asked)) <= len(unknown)
        saved.append(len(unknown) - sum(map(len, asked)))
    assert max(saved) > 0, "no lookup was ever skipped; the pruning was not exercised"


def test_runtime_opens_one_collection_while_another_is_still_opening(settings, monkeypatch):
    """A slow open (the first ONNX export, say) holds up only the callers of that collection."""
    import threading

    from rag import collection as collection_module
    from ui.runtime import Runtime

    entered, release = threading.Event(), threading.Event()
    real_open = collection_module.Collection.open.__func__

    def open_(cls, settings_, name=None, create=True):
        if name == "slow":
            entered.set()
            release.wait(600)  # set by the test once "fast" is open; the load of a busy machine can take a while
        return real_open(cls, settings_, name, create)

    monkeypatch.setattr(collection_module.Collection, "open", classmethod(open_))
    runtime = Runtime(settings)
    slow = threading.Thread(target=runtime.collection, args=("slow",))
    slow.start()
    try:
        assert entered.wait(30)
        assert runtime.collection("fast").name == "fast"  # would wait for "slow" under one lock
        assert not release.is_set() and slow.is_alive()
    finally:
        release.set()
        slow.join(60)
    assert runtime.collection("slow") is runtime.collection("slow")


def test_a_damaged_keyword_index_is_rebuilt_from_the_database(settings, monkeypatch):
    coll = Collection.open(settings)
    coll.add_documents([CATS, FAISS_DOC])
    path = coll.store.path
    coll.store.close()
    for file in (path / "keywords").iterdir():
        if file.name != "generation":
            file.write_bytes(b"\x00garbage")
    from rag.store.local import LocalStore

    opening = LocalStore._catch_up_keywords_if_free
    monkeypatch.setattr(LocalStore, "_catch_up_keywords_if_free", lambda self: None)  # a writer is busy
    busy = Collection.open(settings)
    assert busy.search("cats purr", k=1, mode="bm25") == []  # damaged: no keyword hits, and no error
    assert busy.search("cats purr", k=1, mode="hybrid")[0].source == "mem://cats"
    busy.store.close()
    monkeypatch.setattr(LocalStore, "_catch_up_keywords_if_free", opening)
    reopened = Collection.open(settings)  # rebuilt on opening, no writer being busy
    assert reopened.search("cats purr", k=1, mode="bm25")[0].source == "mem://cats"
    reopened.add_documents([Document("mem://dogs", "Dogs bark at the mail carrier.", "Dogs")])
    assert [reopened.search(q, k=1, mode="bm25")[0].source for q in ("purr", "inner product", "bark")] == [
        "mem://cats", "mem://faiss", "mem://dogs"]
    assert reopened.store.integrity_problems() == []
