"""Delete you can take back (rag/trash.py): a deleted document waits in the trash for 7 days, restorable, on
both stores; and through the real app, restored by its owner after the app restarted, never by another user."""

from __future__ import annotations

import secrets
import time

import pytest

from e2e_harness import AppProcess, gradio_client
from rag.collection import Collection
from rag.documents import Document
from rag.errors import RagError
from rag.trash import TRASH_DAYS, Trash, move_to_trash, restore

NOTES = Document("mem://notes", "The harbour ledger is kept in a blue box under the stairs of the old customs "
                 "house.\n\nShips are logged at dawn and at dusk by the harbour master.", "Harbour notes",
                 metadata={"author": "alice"}, pages=[(0, 40), (40, 120)])


def test_a_deleted_document_waits_in_the_trash_and_comes_back_whole(store_settings):
    coll = Collection.open(store_settings, "notes")
    coll.add_documents([NOTES], chunk_size=100, chunk_overlap=0)
    chunks = coll.store.chunk_count("mem://notes")
    (added,) = [d.added_at for d in coll.documents()]
    trash = Trash(store_settings.index_dir)
    entry = move_to_trash(trash, coll, "mem://notes", "alice")
    assert coll.documents() == [] and coll.search("blue box", k=2) == []
    assert [(e.source, e.title, e.deleted_by) for e in trash.entries("notes")] == [("mem://notes", "Harbour notes",
                                                                                     "alice")]
    assert move_to_trash(trash, coll, "mem://notes") is None  # gone already: nothing more to keep
    restore(trash, coll, entry.id)
    back = coll.document("mem://notes")
    assert (back.text, back.title, back.metadata, back.pages) == (NOTES.text, NOTES.title, NOTES.metadata, NOTES.pages)
    assert coll.store.chunk_count("mem://notes") == chunks  # chunked as it was, not with today's settings
    assert [d.added_at for d in coll.documents()] == [added]  # and added when it first was, not at the restore
    assert coll.search("blue box", k=1)[0].source == "mem://notes"
    assert trash.entries("notes") == []


def test_a_trash_entry_expires_after_seven_days(settings):
    trash = Trash(settings.index_dir)
    now = time.time()
    old = trash.keep("notes", NOTES, "chars:500/0", "alice", now=now - TRASH_DAYS * 86400 - 1)
    recent = trash.keep("notes", NOTES, "chars:500/0", "alice", now=now - 3600)
    assert [e.id for e in trash.entries("notes", now=now)] == [recent.id]
    assert not (trash.root / "notes" / f"{old.id}.json").exists()
    with pytest.raises(RagError, match="no longer in the trash"):
        trash.document("notes", old.id)


def test_restore_refuses_over_a_document_ingested_again_and_odd_ids(settings):
    coll = Collection.open(settings, "notes")
    coll.add_documents([NOTES])
    trash = Trash(settings.index_dir)
    entry = move_to_trash(trash, coll, "mem://notes")
    coll.add_documents([Document("mem://notes", "A newer text under the same source.", "New")])
    with pytest.raises(RagError, match="again"):
        restore(trash, coll, entry.id)
    assert coll.document("mem://notes").title == "New"
    for odd in ("../../notes/manifest", "", "0" * 17):
        with pytest.raises(RagError, match="no longer in the trash"):
            restore(trash, coll, odd)


def test_only_those_who_may_change_a_collection_see_and_restore_its_trash(settings):
    from rag.access import AccessDenied, AccessRule, EVERYONE, READ
    from ui.runtime import Runtime

    runtime = Runtime(settings, access_rule=AccessRule(users=("root", "alice", "bob"), admin="root"))
    runtime.collection("alice-notes", "alice", "create").add_documents([NOTES])
    assert runtime.delete_document("alice-notes", "alice", "mem://notes")
    (entry,) = runtime.trash_entries("alice-notes", "alice")
    with pytest.raises(AccessDenied, match="is empty") as refused:
        runtime.trash_entries("alice/alice-notes", "bob")
    with pytest.raises(AccessDenied, match="is empty"):
        runtime.restore("alice/alice-notes", "bob", entry.id)
    runtime.libraries.share("alice-notes", "alice", EVERYONE, READ)
    with pytest.raises(AccessDenied, match="read-only"):
        runtime.restore("alice/alice-notes", "bob", entry.id)
    assert "harbour" not in str(refused.value)
    assert [e.id for e in runtime.trash_entries("alice/alice-notes", "root")] == [entry.id]  # the admin sees all
    runtime.restore("alice-notes", "alice", entry.id)
    assert runtime.collection("alice/alice-notes", "bob").document("mem://notes").title == "Harbour notes"


# -- through the app, across a restart ------------------------------------------------------------

USERS = {"root": secrets.token_urlsafe(12), "alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}


def _app(tmp_path, index):
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()), encoding="utf-8")
    app = AppProcess(tmp_path, "--auth", str(users), index_dir=index)
    app.wait_ready()
    return app


def _client(app, tmp_path, user):
    return gradio_client(app, auth=(user, USERS[user]), workdir=tmp_path / user)


def test_the_owner_restores_a_deleted_document_after_a_restart_and_nobody_else_sees_it(tmp_path):
    from gradio_client import handle_file

    index = tmp_path / "index"
    notes = tmp_path / "ledger.txt"
    notes.write_text("The harbour ledger of Quillon is kept in a blue box under the stairs.\n", encoding="utf-8")
    app = _app(tmp_path, index)
    try:
        alice = _client(app, tmp_path, "alice")
        alice.predict("alice-notes", api_name="/choose_collection")
        summary, *_ = alice.predict("", [handle_file(str(notes))], 500, 0, api_name="/ingest")
        assert "**1** added" in summary
        _selected, status, table, text, meta = alice.predict("upload: ledger.txt", api_name="/delete")
        assert not table["data"] and text == "" and meta is None  # the preview empties with the table
    finally:
        app.stop()

    app = _app(tmp_path, index)
    try:
        alice, bob = _client(app, tmp_path, "alice"), _client(app, tmp_path, "bob")
        alice.predict("alice-notes", api_name="/choose_collection")
        bob.predict("alice/alice-notes", api_name="/choose_collection")  # hers, by the name a share would show
        assert _choices(bob.predict(api_name="/trash_choices")) == []
        trashed = _choices(alice.predict(api_name="/trash_choices"))
        assert len(trashed) == 1 and "harbour ledger" in trashed[0][0] and "by alice" in trashed[0][0]
        entry_id = trashed[0][1]
        with pytest.raises(Exception, match="not in the list of choices") as refused:  # his list is empty
            bob.predict(entry_id, api_name="/restore_document")
        assert "Quillon" not in str(refused.value)
        note, docs_note, table = alice.predict(entry_id, api_name="/restore_document")
        assert note.startswith("Restored") and "**1** document" in docs_note
        _note, hits, *_ = alice.predict("blue box", 4, "hybrid", api_name="/search")
        assert "Quillon" in hits
        assert _choices(alice.predict(api_name="/trash_choices")) == []
    finally:
        app.stop()


def _choices(update) -> list:
    return [tuple(c) for c in update["choices"]]
