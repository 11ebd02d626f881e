"""Two people in two browser contexts on one notebook under --auth: alice shares a collection read-only with
bob; bob searches it but cannot delete from it; alice takes the share back and bob's next search is refused.

Needs Debian's chromium and the Playwright Python package, as tests/test_e2e_browser.py does.
"""

from __future__ import annotations

import secrets

import pytest

from e2e_harness import CHROMIUM, AppProcess

SLOW_MS = 120_000  # the first ingest loads the embedding model: a wait, not a limit
USERS = {name: secrets.token_urlsafe(12) for name in ("root", "alice", "bob")}
FACT = "The lighthouse on the island of Quillon is kept by Ingrid Halvorsen, who paints its lamp red.\n"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium); the browser test needs it"
)


@pytest.fixture(scope="module")
def app(workdir):
    users = workdir / "users.txt"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()), encoding="utf-8")
    proc = AppProcess(workdir, "--auth", str(users))
    proc.wait_ready()
    yield proc
    proc.stop()


def _person(browser, app, name: str):
    """A browser context of its own (its own cookies), logged in as `name`, on the notebook."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    response = context.request.post(app.url + "login", form={"username": name, "password": USERS[name]})
    assert response.ok, response.text()
    page = context.new_page()
    page.set_default_timeout(SLOW_MS)
    page.goto(app.url)
    page.wait_for_selector("#header")
    return page


def _choose(page, collection: str) -> None:
    box = page.locator("#collection input")
    box.fill(collection)
    box.press("Enter")
    page.wait_for_function(f"document.querySelector('#docs-note').innerText.includes({collection!r})")


def _wait_text(page, selector: str, text: str) -> None:
    # Null-safe: a component inside a group shown only now is not on the page before it.
    page.wait_for_function(f"document.querySelector({selector!r})?.innerText.includes({text!r})")


def _search(page, query: str, expect: str) -> None:
    """Search, and wait for the note to say `expect` (while the search runs, it shows the progress line)."""
    page.get_by_role("tab", name="2 · Search").click()
    page.locator("#search-query textarea").fill(query)
    page.locator("#search-btn").click()
    _wait_text(page, "#search-note", expect)


def test_a_read_only_share_seen_from_both_sides_and_taken_back(app, browser, workdir):
    alice, bob = _person(browser, app, "alice"), _person(browser, app, "bob")
    notes = workdir / "alice-notes.txt"
    notes.write_text(FACT, encoding="utf-8")

    _choose(alice, "alice-notes")
    alice.locator("#files input[type=file]").set_input_files(str(notes))
    alice.locator("#ingest-btn").click()
    _wait_text(alice, "#documents", "alice-notes.txt")

    # Before any share, bob's list does not hold it and choosing it by name finds it empty.
    _choose(bob, "alice/alice-notes")
    assert "is empty" in bob.locator("#docs-note").inner_text()
    assert "alice-notes.txt" not in bob.locator("#documents").inner_text()

    alice.get_by_text("👥 Sharing").click()
    alice.locator("#share-who input").click()
    alice.get_by_role("option", name="bob", exact=True).click()
    alice.locator("#share-btn").click()
    alice.wait_for_selector("#sharing-view >> text=Shared.")
    assert "**" not in alice.locator("#sharing-view").inner_text()  # Markdown, rendered
    assert "bob (read-only)" in alice.locator("#sharing-view").inner_text()
    alice.screenshot(path=str(workdir / "alice-shared.png"), full_page=True)

    _choose(bob, "alice/alice-notes")  # how a collection shared with him is named in his list
    _wait_text(bob, "#documents", "alice-notes.txt")
    _search(bob, "Who keeps the lighthouse?", "Retrieved")
    assert "Quillon" in bob.locator("#hits").inner_text()

    # On a read-only share the page offers him nothing that changes it (the server refuses those calls anyway:
    # tests/test_access_app.py makes them).
    bob.get_by_role("tab", name="1 · Ingest").click()
    for button in ("#delete-btn", "#ingest-btn", "#delete-collection-btn", "#site-btn"):
        bob.wait_for_selector(f"{button}[disabled]", state="attached")
    bob.get_by_role("tab", name="4 · Chat").click()
    bob.get_by_text("Add a web page").click()
    bob.wait_for_selector("#quick-add-btn[disabled]", state="attached")
    bob.get_by_role("tab", name="1 · Ingest").click()
    assert not bob.locator("#owners").is_visible()  # the admin's panel is the admin's
    bob.screenshot(path=str(workdir / "bob-read-only.png"), full_page=True)
    alice.get_by_role("tab", name="1 · Ingest").click()
    alice.get_by_role("button", name="Refresh table").click()  # read again: her document is still there
    _wait_text(alice, "#documents", "alice-notes.txt")

    alice.locator("#unshare-btn").click()
    alice.wait_for_selector("#sharing-view >> text=Taken back.")
    _search(bob, "Who keeps the lighthouse?", "is empty")
    assert "Quillon" not in bob.locator("#search-note").inner_text() + bob.locator("#hits").inner_text()
    bob.screenshot(path=str(workdir / "bob-refused-search.png"), full_page=True)

    # alice deletes the whole collection, after a second press, and takes it back out of the trash.
    alice.locator("#delete-collection-btn").click()
    _wait_text(alice, "#delete-collection-note", "1 document")
    alice.locator("#delete-collection-yes").click()
    _wait_text(alice, "#docs-note", "is empty")
    assert "alice-notes.txt" not in alice.locator("#documents").inner_text()
    alice.get_by_text("🗑 Trash").click()
    alice.locator("#trashed-collections input").click()
    alice.get_by_role("option", name="deleted").filter(has_text="alice-notes").click()
    alice.locator("#restore-collection-btn").click()
    _wait_text(alice, "#restored-note", "Restored the collection")
    _wait_text(alice, "#documents", "alice-notes.txt")
    _wait_text(alice, "#sharing-view", "is owned by alice")  # the sharing line follows it back too
    alice.screenshot(path=str(workdir / "alice-restored-collection.png"), full_page=True)
    alice.context.close()
    bob.context.close()
