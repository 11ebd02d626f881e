"""Two people on one notebook under --auth, through gradio's own client against the real app on 127.0.0.1.

alice keeps a private collection; bob has his own; root is the admin (the users file's first user). bob is
given alice's collection read-write, uses it, and has it taken back; then every route the app serves, listed
from the app itself, is called by bob in that same session, and none may hand him anything of alice's.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from e2e_harness import AppProcess, gradio_client
from rag.access import namespace

USERS = {name: secrets.token_urlsafe(12) for name in ("root", "alice", "bob")}
ALICE_FACT = "The lighthouse on the island of Quillon is kept by Ingrid Halvorsen, who paints its lamp red."
BOB_FACT = "The ferry to Brastad is run by Tomas Reyes and leaves the harbour at seven."
ALICE_MARKERS = ("Quillon", "Ingrid Halvorsen", "Halvorsen")
REFUSED = "Collection 'alice/alice-notes' is empty; ingest something in step 1 first."
NOT_YOURS = "You can add documents only to your own collections and to those shared with you read-write"
ALICE_STORED = "alice-notes" + namespace("alice")  # where the store keeps her "alice-notes" (rag.access)
QUESTION = "Who keeps the lighthouse?"  # none of her words: what comes back of hers is hers


@pytest.fixture(scope="module")
def app(workdir):
    users = workdir / "users.txt"
    users.write_text("".join(f"{name}:{password}\n" for name, password in USERS.items()), encoding="utf-8")
    server = AppProcess(workdir, "--auth", str(users))
    server.wait_ready()
    yield server
    server.stop()


def _client(app, workdir, name):
    return gradio_client(app, auth=(name, USERS[name]), workdir=workdir / name)


@pytest.fixture(scope="module")
def alice(app, workdir):
    return _client(app, workdir, "alice")


@pytest.fixture(scope="module")
def bob(app, workdir):
    return _client(app, workdir, "bob")


@pytest.fixture(scope="module")
def root(app, workdir):
    return _client(app, workdir, "root")


def _ingest(client, workdir: Path, collection: str, name: str, text: str) -> None:
    from gradio_client import handle_file

    path = workdir / name
    path.write_text(text + "\n", encoding="utf-8")
    note, _table = client.predict(collection, api_name="/choose_collection")
    assert collection in note
    summary, *_ = client.predict("", [handle_file(str(path))], 500, 0, api_name="/ingest")
    assert "**1** added" in summary, summary


@pytest.fixture(scope="module")
def libraries(alice, bob, workdir):
    _ingest(alice, workdir, "alice-notes", "alice-notes.txt", ALICE_FACT)
    _ingest(bob, workdir, "bob-notes", "bob-notes.txt", BOB_FACT)


def _choices(update) -> list[str]:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in update["choices"]]


def test_each_person_lists_only_their_own_collections_and_the_admin_lists_all(libraries, alice, bob, root, app):
    assert not any("alice" in c for c in _choices(bob.predict(api_name="/collection_choices")))
    assert not any("bob" in c for c in _choices(alice.predict(api_name="/collection_choices")))
    assert {"alice/alice-notes", "bob/bob-notes"} <= set(_choices(root.predict(api_name="/collection_choices")))
    owners = root.predict(api_name="/owners")
    assert "**alice/alice-notes** is owned by **alice**" in owners and "**bob/bob-notes** is owned by **bob**" in owners
    assert "Only the notebook's admin" in bob.predict(api_name="/owners")
    assert not (app.index_dir / "alice-notes").exists()  # her name is hers: it takes no name from anyone else
    record = json.loads((app.index_dir / ALICE_STORED / "access.json").read_text())
    assert record["owner"] == "alice" and record["shares"] == {}


def test_bob_choosing_alices_collection_by_name_finds_it_empty_and_her_name_is_free_for_his_own(libraries, bob):
    note, table = bob.predict("alice/alice-notes", api_name="/choose_collection")
    assert note == "Collection **alice/alice-notes** is empty." and not table["data"]
    note, *_ = bob.predict(QUESTION, 4, "hybrid", api_name="/search")
    assert note == "⚠️ " + REFUSED
    note, table = bob.predict("alice-notes", api_name="/choose_collection")  # a name of his own: nothing of hers
    assert note == "Collection **alice-notes** is empty." and not table["data"]
    bob.predict("bob-notes", api_name="/choose_collection")


def _text(value, downloads: Path) -> str:
    """Everything a call handed back, files it named included (an export is a file)."""
    parts = []

    def walk(v):
        if isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, str):
            parts.append(v)
            path = Path(v)
            if len(v) < 4096 and path.is_file() and downloads in path.parents:
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        elif v is not None:
            parts.append(str(v))

    walk(value)
    return "\n".join(parts)


def _arguments(endpoint: str, info: dict, workdir: Path) -> list:
    """Arguments for any route: the route's own defaults, else what a curious bob would send."""
    from gradio_client import handle_file

    bobs_file = workdir / "bob-upload.txt"
    bobs_file.write_text("bob was here\n", encoding="utf-8")
    special = {"/delete": ["upload: alice-notes.txt"], "/open_citation": ["0-1"],
               "/choose_collection": ["alice/alice-notes"], "/share": ["bob", "read-write"], "/take_back": ["bob"],
               "/move": ["bob"], "/ingest": ["", [handle_file(str(bobs_file))], 500, 0],
               "/preview": ["", [handle_file(str(bobs_file))]], "/quick_add": ["https://example.invalid/"]}
    if endpoint in special:
        return special[endpoint]
    args = []
    for p in info["parameters"]:
        kind = (p.get("python_type") or {}).get("type", "")
        if p.get("parameter_has_default"):
            args.append(p["parameter_default"])
        elif p["component"] in ("Textbox", "Dropdown") and "List" not in kind:
            args.append(QUESTION)
        elif "List" in kind or p["component"] in ("CheckboxGroup",):
            args.append([])
        elif kind in ("float", "int"):
            args.append(4)
        else:
            args.append(None)
    return args


def test_no_route_hands_bob_anything_of_alices_once_her_share_is_taken_back(libraries, alice, bob, workdir, app):
    # Shared read-write, bob uses her collection: he sees her document, and his conversation quotes it.
    assert "Shared." in alice.predict("bob", "read-write", api_name="/share")
    assert "alice/alice-notes" in _choices(bob.predict(api_name="/collection_choices"))
    note, _table = bob.predict("alice/alice-notes", api_name="/choose_collection")
    assert "**1** document" in note
    _note, hits, *_ = bob.predict(QUESTION, 4, "hybrid", api_name="/search")
    assert "Quillon" in hits  # the check below would see her text: it can fail
    bob.predict(QUESTION, api_name="/ask")
    chatbot, *_ = bob.predict(api_name="/chat")
    assert "Halvorsen" in json.dumps(chatbot)

    assert "Taken back." in alice.predict("bob", api_name="/take_back")
    endpoints = bob.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/search", "/chat", "/summarize", "/export", "/open_citation", "/delete", "/ingest", "/refresh",
            "/source_choices", "/document_choices", "/collection_choices", "/restore", "/owners",
            "/delete_collection", "/restore_collection", "/collection_trash"} <= set(endpoints)
    downloads = workdir / "bob"
    outputs = {}
    # Routes that move the session to another collection go last, so the others all meet hers.
    moves = {"/choose_collection", "/landing_collection"}
    for endpoint, info in sorted(endpoints.items(), key=lambda item: (item[0] in moves, item[0])):
        try:
            outputs[endpoint] = _text(bob.predict(*_arguments(endpoint, info, workdir), api_name=endpoint), downloads)
        except Exception as exc:  # noqa: BLE001 - a refusal may come back as an error: it must not quote her either
            outputs[endpoint] = f"{type(exc).__name__}: {exc}"
    leaks = {e: [m for m in ALICE_MARKERS if m in text] for e, text in outputs.items()}
    assert not {e: m for e, m in leaks.items() if m}, {e: outputs[e][:500] for e, m in leaks.items() if m}
    for endpoint in ("/search", "/chat", "/summarize", "/export", "/open_citation", "/delete", "/restore",
                     "/delete_collection"):
        assert REFUSED in outputs[endpoint], (endpoint, outputs[endpoint][:500])
    assert NOT_YOURS in outputs["/ingest"]
    assert "Only the owner" not in outputs["/share"] and REFUSED in outputs["/share"]

    # Nothing of hers changed, and nothing of his landed in her folders.
    note, table = alice.predict(api_name="/refresh")
    assert "**1** document" in note and table["data"][0][1] == "upload: alice-notes.txt"
    assert not (app.index_dir / "_uploads" / ALICE_STORED / "bob-upload.txt").exists()
    assert json.loads((app.index_dir / ALICE_STORED / "access.json").read_text()) == {
        "format_version": 1, "owner": "alice", "shares": {}}  # not deleted, not shared


def test_a_read_only_share_lets_bob_search_but_not_change_and_everyone_means_everyone(libraries, alice, bob, root):
    assert "Shared." in alice.predict("everyone", "read-only", api_name="/share")
    bob.predict("alice/alice-notes", api_name="/choose_collection")
    _note, hits, *_ = bob.predict(QUESTION, 4, "hybrid", api_name="/search")
    assert "Quillon" in hits
    assert "alice/alice-notes" in _choices(bob.predict(api_name="/collection_choices"))
    _selected, status, *_ = bob.predict("upload: alice-notes.txt", api_name="/delete")
    assert "shared with you read-only" in status
    assert "shared with you read-only" in bob.predict(api_name="/view")
    assert "Only the owner" in bob.predict("bob", "read-write", api_name="/share")
    assert "Taken back." in alice.predict("everyone", api_name="/take_back")
    note, hits, *_ = bob.predict(QUESTION, 4, "hybrid", api_name="/search")
    assert note == "⚠️ " + REFUSED and hits == ""  # the hits he saw while it was shared leave the screen


def test_the_admin_moves_a_collection_to_another_owner(libraries, alice, bob, root):
    root.predict("bob/bob-notes", api_name="/choose_collection")
    assert "Only the notebook's admin" in alice.predict("alice", api_name="/move")[0]
    note, chosen = root.predict("alice", api_name="/move")
    # The page follows it: the admin now calls it alice's, and its owner line says so.
    assert note == "Moved. **alice/bob-notes** is owned by **alice** and shared with nobody: it is private."
    assert chosen["value"] == "alice/bob-notes"
    assert "bob-notes" in _choices(alice.predict(api_name="/collection_choices"))
    assert "bob-notes" not in _choices(bob.predict(api_name="/collection_choices"))
    note, chosen = root.predict("bob", api_name="/move")
    assert "owned by **bob**" in note and chosen["value"] == "bob/bob-notes"


def test_a_person_whose_start_collection_is_anothers_lands_on_their_own(libraries, root, app, workdir):
    from gradio_client import handle_file

    path = workdir / "team.txt"
    path.write_text("The team meets on Tuesdays.\n", encoding="utf-8")
    # Not made yet: the admin starts on it, anyone else on their own (nobody but the admin takes the team's name).
    assert _client(app, workdir, "alice").predict("", api_name="/landing_collection")["value"] == "alice-notes"
    assert _client(app, workdir, "root").predict("", api_name="/landing_collection")["value"] == "default"
    root.predict("default", api_name="/choose_collection")  # the app's start collection, now the admin's
    summary, *_ = root.predict("", [handle_file(str(path))], 500, 0, api_name="/ingest")
    assert "**1** added" in summary
    fresh_bob = _client(app, workdir, "bob")
    assert fresh_bob.predict("", api_name="/landing_collection")["value"] == "bob-notes"
    assert root.predict("", api_name="/landing_collection")["value"] == "default"
    # The collection a browser kept from its last choice opens only where the server lets this user read it.
    assert fresh_bob.predict("default", api_name="/landing_collection")["value"] == "bob-notes"
    assert root.predict("default", api_name="/landing_collection")["value"] == "default"


def test_a_personal_collection_name_is_a_valid_name_for_any_user_name():
    from ui.library import personal_collection

    assert personal_collection("bob") == "bob-notes"
    assert personal_collection("Élise Dupont") == "lise-Dupont-notes"
    assert personal_collection("__") == "user-notes"
    assert len(personal_collection("x" * 200)) <= 64


def test_the_file_routes_serve_bob_none_of_alices_files(libraries, alice, app, workdir):
    """Her upload and her collection's files, by their paths on the server, and her export by its own address."""
    import httpx

    alice.predict("alice-notes", api_name="/choose_collection")
    alice.predict(QUESTION, api_name="/ask")
    alice.predict(api_name="/chat")
    _export, status = alice.predict(api_name="/export")
    assert "Exported" in status
    paths = [app.index_dir / "_uploads" / ALICE_STORED / "alice-notes.txt", app.index_dir / ALICE_STORED /
             "store.sqlite", app.index_dir / ALICE_STORED / "access.json", app.index_dir / "_conversations.sqlite"]
    assert all(p.exists() for p in paths)
    with httpx.Client(base_url=app.url.rstrip("/"), timeout=30) as bob:
        assert bob.post("/login", data={"username": "bob", "password": USERS["bob"]}).status_code == 200
        for path in paths:
            for route in (f"/gradio_api/file={path}", f"/file={path}"):
                response = bob.get(route)
                assert response.status_code >= 400 and "Quillon" not in response.text, (route, response.status_code)


@pytest.mark.parametrize("store", ["local", "milvus"])
def test_two_app_instances_on_one_store_agree_on_shares(store, tmp_path, request):
    """alice shares and takes back on one instance; bob, on another over the same store, follows at once."""
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{name}:{password}\n" for name, password in USERS.items()), encoding="utf-8")
    flags = ["--auth", str(users)]
    if store == "milvus":
        server = request.getfixturevalue("milvus_server")
        server.drop_all()
        flags += ["--store", server.uri]
    index = tmp_path / "index"  # both instances: the same index directory (and, for Milvus, the same server)
    first, second = AppProcess(tmp_path, *flags, index_dir=index), AppProcess(tmp_path, *flags, index_dir=index)
    try:
        first.wait_ready()
        second.wait_ready()
        alice, bob = _client(first, tmp_path, "alice"), _client(second, tmp_path, "bob")
        _ingest(alice, tmp_path, "alice-notes", "alice-notes.txt", ALICE_FACT)
        assert "is empty" in bob.predict("alice/alice-notes", api_name="/choose_collection")[0]
        assert "Shared." in alice.predict("bob", "read-only", api_name="/share")
        _note, hits, *_ = bob.predict(QUESTION, 4, "hybrid", api_name="/search")
        assert "Quillon" in hits
        assert "Taken back." in alice.predict("bob", api_name="/take_back")
        note, hits, *_ = bob.predict(QUESTION, 4, "hybrid", api_name="/search")
        assert note == "⚠️ " + REFUSED
    finally:
        first.stop()
        second.stop()

