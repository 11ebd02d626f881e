"""Who may read, change and share a collection (rag.access), and where that is kept.

The rule is tested on its own; the record is a store contract: the local store and milvus-lite (a server
on 127.0.0.1, and embedded) keep it where the collection lives, read back by another opening.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag import access
from rag.access import EVERYONE, READ, WRITE, Access, AccessRule
from rag.collection import Collection
from rag.documents import Document
from rag.errors import RagError

ROOT = Path(__file__).resolve().parents[1]
RULE = AccessRule(users=("root", "alice", "bob", "carol"), admin="root")
NOTES = Document("mem://notes", "Alice keeps the harbour ledger in a blue box under the stairs.", "Notes")


# -- the rule --------------------------------------------------------------------------------------


def test_without_auth_the_one_person_may_do_everything():
    rule = AccessRule()
    for record in (None, Access("alice")):
        assert rule.can_read("", record) and rule.can_write("", record) and rule.can_manage("", record)


def test_a_private_collection_is_its_owners_and_the_admins_only():
    record = Access("alice")
    assert RULE.can_manage("alice", record) and RULE.can_manage("root", record)
    for user in ("bob", "carol", "", "mallory"):
        assert not RULE.can_read(user, record) and not RULE.can_write(user, record)


def test_shares_give_what_they_say_and_no_more():
    record = Access("alice").shared("bob", READ).shared("carol", WRITE)
    assert RULE.can_read("bob", record) and not RULE.can_write("bob", record)
    assert RULE.can_write("carol", record) and not RULE.can_manage("carol", record)
    taken_back = record.shared("bob", None)
    assert not RULE.can_read("bob", taken_back) and RULE.can_write("carol", taken_back)


def test_everyone_means_every_logged_in_user_not_an_anonymous_caller():
    record = Access("alice").shared(EVERYONE, READ)
    assert RULE.can_read("bob", record) and RULE.can_read("carol", record)
    assert not RULE.can_write("bob", record)
    assert not RULE.can_read("", record)


def test_a_collection_made_before_owners_belongs_to_the_admin():
    assert RULE.owner(None) == "root"
    assert RULE.can_manage("root", None) and not RULE.can_read("alice", None)


def test_a_share_names_a_user_of_the_notebook_or_everyone():
    assert RULE.check_user("everyone") == EVERYONE and RULE.check_user("bob") == "bob"
    with pytest.raises(RagError, match="not a user"):
        RULE.check_user("mallory")
    with pytest.raises(RagError, match="Unknown share level"):
        Access("alice").shared("bob", "admin")


def test_a_record_of_a_newer_format_is_refused_not_guessed():
    with pytest.raises(RagError, match="format 2"):
        Access.from_dict({"format_version": 2, "owner": "alice"})


# -- the record, where the collection lives (both stores) -------------------------------------------


def _make(settings, name: str = "alice-notes") -> Collection:
    coll = Collection.open(settings, name)
    coll.add_documents([NOTES])
    return coll


def test_the_record_is_kept_with_the_collection_and_read_back_by_another_opening(store_settings):
    coll = _make(store_settings)
    assert access.read(store_settings, "alice-notes") is None and coll.store.access() is None
    record = Access("alice").shared("bob", READ).shared(EVERYONE, WRITE)
    access.write(store_settings, "alice-notes", record)
    assert access.read(store_settings, "alice-notes") == record
    reopened = Collection.open(store_settings, "alice-notes", create=False)
    assert Access.from_dict(reopened.store.access()) == record
    reopened.store.set_access(record.shared("bob", None).to_dict())
    assert access.read(store_settings, "alice-notes") == Access("alice", {EVERYONE: WRITE})


def test_the_record_is_not_a_document_and_documents_are_not_a_record(store_settings):
    coll = _make(store_settings)
    access.write(store_settings, "alice-notes", Access("alice"))
    assert [d.source for d in coll.documents()] == ["mem://notes"]
    assert coll.store.count_chunks() == coll.store.chunk_count("mem://notes")
    assert coll.store.integrity_problems() == []
    coll.delete("mem://notes")
    assert access.read(store_settings, "alice-notes") == Access("alice")


def test_each_collection_has_its_own_record_and_a_missing_one_has_none(store_settings):
    _make(store_settings, "alice-notes")
    _make(store_settings, "bob-notes")
    access.write(store_settings, "alice-notes", Access("alice"))
    access.write(store_settings, "bob-notes", Access("bob", {"alice": READ}))
    assert access.read(store_settings, "alice-notes").owner == "alice"
    assert access.read(store_settings, "bob-notes").shares == {"alice": READ}
    assert access.read(store_settings, "nobody-notes") is None
    with pytest.raises(RagError):
        access.write(store_settings, "nobody-notes", Access("mallory"))


def test_the_first_record_is_written_once_and_a_second_creator_finds_the_first(store_settings):
    _make(store_settings)
    assert access.create(store_settings, "alice-notes", Access("alice")) == Access("alice")
    assert access.create(store_settings, "alice-notes", Access("bob")) == Access("alice")


def test_a_kill_during_share_changes_leaves_a_whole_record(settings):
    """A process killed while it rewrites the record over and over leaves one whole record: the last
    written or the one before, never a torn file."""
    _make(settings)
    access.write(settings, "alice-notes", Access("alice"))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from rag import access
        from rag.access import Access
        from rag.settings import load_settings
        settings = load_settings(environ={{}}, index_dir={str(settings.index_dir)!r})
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            access.write(settings, "alice-notes", Access("alice", {{f"user{{n}}": "read" for n in range(i % 50)}}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(20):
            record = access.read(settings, "alice-notes")  # read while it writes: never torn
            assert record.owner == "alice"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    record = access.read(settings, "alice-notes")
    assert record.owner == "alice" and all(v == READ for v in record.shares.values())
    leftovers = [p.name for p in (settings.index_dir / "alice-notes").iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the one temp file the kill interrupted, never read as the record


# -- quotas (rag/quota.py), checked before an ingest starts ------------------------------------------


class _Request:
    """What a callback reads of gradio's request: the logged-in user."""

    def __init__(self, username: str):
        self.username, self.session_hash = username, f"session-{username}"


def _quota_runtime(settings, **quota):
    from rag.quota import Quota
    from ui.runtime import Runtime

    return Runtime(settings, access_rule=RULE, quota=Quota(**quota))


def test_a_documents_quota_counts_what_the_owner_keeps_and_refuses_the_batch_that_passes_it(settings, tmp_path):
    from ui.library import Library
    from ui.state import Session

    runtime = _quota_runtime(settings, documents=2)
    library = Library(runtime)
    files = []
    for n in range(3):
        files.append(tmp_path / f"note{n}.txt")
        files[-1].write_text(f"Note {n}: the harbour ledger has {n} pages.\n", encoding="utf-8")
    alice = Session(collection="alice-notes")
    summary, *_ = library.ingest("", [str(f) for f in files[:2]], 500, 0, alice, request=_Request("alice"))
    assert "**2** added" in summary
    again, *_ = library.ingest("", [str(files[0])], 500, 0, alice, request=_Request("alice"))
    assert "**1** unchanged" in again  # the same upload again adds no document
    refused, *_ = library.ingest("", [str(files[2])], 500, 0, alice, request=_Request("alice"))
    assert refused.startswith("⚠️ Your collections hold 2 of the 2 documents you may keep, and this would add 1")
    assert not (runtime.uploads_dir("alice-notes", "alice") / "note2.txt").exists()  # refused before any work
    runtime.libraries.share("alice-notes", "alice", "bob", WRITE)  # bob adds to alice's collection: hers to count
    bob = Session(collection="alice/alice-notes")
    refused, *_ = library.ingest("", [str(files[2])], 500, 0, bob, request=_Request("bob"))
    assert "2 of the 2 documents" in refused
    root = Session(collection="root-notes")
    summary, *_ = library.ingest("", [str(f) for f in files], 500, 0, root, request=_Request("root"))
    assert "**3** added" in summary  # the admin has no quota


def test_a_disk_quota_counts_the_owners_collections_and_uploads(settings, tmp_path):
    from rag.quota import MB, QuotaExceeded

    runtime = _quota_runtime(settings, megabytes=0.5)
    runtime.collection("alice-notes", "alice", "create").add_documents([NOTES])
    big = tmp_path / "big.txt"
    big.write_text("harbour " * (MB // 8), encoding="utf-8")
    with pytest.raises(QuotaExceeded, match=r"of the 0.5 MB you may use, and this would add 1.0 MB"):
        runtime.check_quota("alice-notes", "alice", [], [str(big)])
    runtime.check_quota("alice-notes", "alice", ["https://example.com/small"])  # within the limit: no refusal
    runtime.check_quota("bob-notes", "bob", [], [])  # a new collection of bob's: nothing used yet


def test_quota_flags_need_auth_and_the_disk_quota_the_local_store(tmp_path):
    import app

    users = tmp_path / "users.txt"
    users.write_text("root:pw1\nalice:pw2\n", encoding="utf-8")
    _, launch = app.configure(["--auth", str(users), "--user-quota-docs", "100", "--user-quota-mb", "50"], {})
    assert (launch.quota.documents, launch.quota.megabytes) == (100, 50)
    for argv, message in ([["--user-quota-docs", "5"], "give --auth too"],
                          [["--auth", str(users), "--user-quota-docs", "-1"], "0 \\(no limit\\) or more"],
                          [["--auth", str(users), "--user-quota-mb", "5", "--store", "milvus://127.0.0.1:19530"],
                           "use --user-quota-docs there"]):
        with pytest.raises(RagError, match=message):
            app.configure(argv, {})
