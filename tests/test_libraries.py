"""Each person's library (rag.libraries): names in a space of one's own, shares by "owner/name", and the trash
of whole collections. A store contract: the local store and milvus-lite (a server on 127.0.0.1, and embedded)
keep the same libraries, read back by a fresh `Libraries` as an app restarted on the same store would.
"""

from __future__ import annotations

import pytest

from rag import access
from rag.access import EVERYONE, READ, WRITE, AccessDenied, AccessRule
from rag.collection import Collection
from rag.documents import Document
from rag.errors import RagError
from rag.libraries import Libraries
from rag.store.locate import collection_exists, collection_names

RULE = AccessRule(users=("root", "alice", "bob", "carol"), admin="root")
DAY = 86400
HIDDEN = "Collection 'alice/notes' is empty; ingest something in step 1 first."
NOT_YOURS = "You can add documents only to your own collections"


def _ingest(libraries: Libraries, name: str, user: str, text: str) -> Collection:
    """What the notebook does on a first ingest: check, open under the stored name, write the maker's record."""
    stored = libraries.check(name, user, "create")
    coll = Collection.open(libraries.settings, stored)
    coll.add_documents([Document(f"mem://{user}/{name}", text, f"{user}'s {name}")])
    access.create(libraries.settings, stored, RULE.new_record(user))
    return coll


def _read(libraries: Libraries, name: str, user: str) -> str:
    stored = libraries.check(name, user, "read")
    return Collection.open(libraries.settings, stored, create=False).documents()[0].title


def test_two_people_keep_a_collection_of_one_name_and_neither_learns_of_the_others(store_settings):
    libraries = Libraries(store_settings, RULE)
    # bob asks for alice's collection before it exists and after: the same sentences, nothing to tell apart.
    before = [_refusal(libraries, "alice/notes", "bob", want) for want in ("read", "write", "create", "manage")]
    _ingest(libraries, "notes", "alice", "Alice keeps the harbour ledger in a blue box.")
    after = [_refusal(libraries, "alice/notes", "bob", want) for want in ("read", "write", "create", "manage")]
    assert before == after and after[0] == HIDDEN and after[2].startswith(NOT_YOURS)

    _ingest(libraries, "notes", "bob", "Bob runs the ferry at seven.")  # his own "notes": never "taken"
    assert _read(libraries, "notes", "alice") == "alice's notes" and _read(libraries, "notes", "bob") == "bob's notes"
    assert libraries.names("alice") == ["notes"] and libraries.names("bob") == ["notes"]
    assert libraries.names("carol") == []
    assert sorted(libraries.names("root")) == ["alice/notes", "bob/notes"]  # the admin sees every owner
    stored = collection_names(store_settings)
    assert len(stored) == 2 and not any("alice" in s or "bob" in s for s in stored)  # a name names no one


def test_a_share_is_listed_by_owner_and_name_and_taking_it_back_hides_it_again(store_settings):
    libraries = Libraries(store_settings, RULE)
    _ingest(libraries, "notes", "alice", "Alice keeps the harbour ledger in a blue box.")
    libraries.share("notes", "alice", "bob", READ)
    assert libraries.names("bob") == ["alice/notes"] and libraries.level("alice/notes", "bob") == READ
    assert _read(libraries, "alice/notes", "bob") == "alice's notes"
    with pytest.raises(AccessDenied, match="shared with you read-only"):
        libraries.check("alice/notes", "bob", "write")
    libraries.share("notes", "alice", EVERYONE, WRITE)
    assert libraries.level("alice/notes", "carol") == WRITE
    libraries.share("notes", "alice", EVERYONE, None)
    libraries.share("notes", "alice", "bob", None)
    assert libraries.names("bob") == [] and _refusal(libraries, "alice/notes", "bob", "read") == HIDDEN


def test_a_collection_moved_to_another_owner_is_theirs_by_its_name(store_settings):
    libraries = Libraries(store_settings, RULE)
    _ingest(libraries, "ledger", "alice", "Alice keeps the harbour ledger in a blue box.")
    libraries.move_owner("alice/ledger", "root", "bob")
    assert libraries.names("bob") == ["ledger"] and _read(libraries, "ledger", "bob") == "alice's ledger"
    assert libraries.names("alice") == [] and _refusal(libraries, "bob/ledger", "alice", "read").endswith("first.")
    _ingest(libraries, "ledger", "alice", "Alice starts a new ledger.")
    with pytest.raises(RagError, match="alice has a collection named 'ledger' already"):
        libraries.move_owner("bob/ledger", "root", "alice")  # two of one name: one would hide the other


def test_a_deleted_collection_leaves_every_list_and_comes_back_whole_after_a_restart(store_settings):
    libraries = Libraries(store_settings, RULE)
    _ingest(libraries, "notes", "alice", "Alice keeps the harbour ledger in a blue box.")
    libraries.share("notes", "alice", "bob", READ)
    with pytest.raises(AccessDenied, match="Only the owner"):
        libraries.delete("alice/notes", "bob")
    libraries.delete("notes", "alice", now=1000 * DAY)
    assert libraries.names("alice") == [] and libraries.names("bob") == [] and libraries.owners("root") == []
    assert _refusal(libraries, "alice/notes", "bob", "read") == HIDDEN
    assert _refusal(libraries, "notes", "alice", "read") == HIDDEN.replace("alice/notes", "notes")
    with pytest.raises(RagError, match="'notes' is in the trash; restore it"):
        libraries.check("notes", "alice", "create")  # a new one would hide the one in the trash

    restarted = Libraries(store_settings, RULE)
    (entry,) = restarted.deleted("alice", now=1003 * DAY)
    assert (entry.name, entry.deleted_by) == ("notes", "alice")
    assert restarted.deleted("bob", now=1003 * DAY) == []  # a share is no say over the trash
    assert [e.name for e in restarted.deleted("root", now=1003 * DAY)] == ["alice/notes"]
    with pytest.raises(RagError, match="no longer in the trash"):
        restarted.restore(entry.stored, "bob")
    assert restarted.restore(entry.stored, "alice") == "notes"
    assert _read(restarted, "alice/notes", "bob") == "alice's notes"  # its documents and shares, as they were


def test_after_its_days_in_the_trash_a_collection_is_dropped_for_good(store_settings):
    libraries = Libraries(store_settings, RULE)
    _ingest(libraries, "notes", "alice", "Alice keeps the harbour ledger in a blue box.")
    stored = libraries.delete("notes", "alice", now=1000 * DAY)
    assert [e.stored for e in libraries.deleted("alice", now=1006 * DAY)] == [stored]
    assert libraries.deleted("alice", now=1007 * DAY + 1) == []
    assert not collection_exists(store_settings, stored) and collection_names(store_settings) == []
    _ingest(libraries, "notes", "alice", "A new notebook of Alice's.")  # the name is free again
    assert _read(libraries, "notes", "alice") == "alice's notes"


def test_without_auth_names_are_the_stores_and_the_one_person_has_a_trash_too(store_settings):
    libraries = Libraries(store_settings)
    stored = libraries.check("notes", "", "create")
    assert stored == "notes"
    Collection.open(store_settings, stored).add_documents([Document("mem://n", "A note.", "Note")])
    libraries.delete("notes", "")
    assert libraries.names("") == [] and [e.name for e in libraries.deleted("")] == ["notes"]
    libraries.restore("notes", "")
    assert libraries.names("") == ["notes"]


def test_names_kept_for_the_store_and_names_too_long_for_a_namespace_are_refused_in_a_sentence(settings):
    libraries = Libraries(settings, RULE)
    with pytest.raises(RagError, match="kept for the notebook's own use"):
        libraries.check("notes" + access.namespace("bob"), "root", "create")
    with pytest.raises(RagError, match="use up to 52 characters"):
        libraries.check("n" * 60, "alice", "create")
    with pytest.raises(RagError, match="is not allowed"):
        libraries.check("bob/..", "bob", "read")
    assert "/" not in libraries.stored("alice/../../etc", "bob")  # only the last part is a name: no way out
    assert libraries.check("n" * 60, "root", "create") == "n" * 60  # the admin's names are the store's


def _refusal(libraries: Libraries, name: str, user: str, want: str) -> str:
    with pytest.raises(RagError) as refused:
        libraries.check(name, user, want)
    return str(refused.value)


def test_the_cli_lists_each_collection_with_whose_it_is_and_whether_it_is_in_the_trash(settings, capsys):
    from rag.cli import main

    libraries = Libraries(settings, RULE)
    _ingest(libraries, "notes", "alice", "Alice keeps the harbour ledger in a blue box.")
    _ingest(libraries, "team", "root", "The team meets on Tuesdays.")
    stored = libraries.delete("notes", "alice")
    assert main(["collections", "--index", str(settings.index_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{stored}  (alice's 'notes'; in the trash since ") and lines[1] == "team"
