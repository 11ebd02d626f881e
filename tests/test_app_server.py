"""The real app process against clients that are not the page: plain HTTP, gradio's client, crafted uploads.

Proves, on a running server, that `--auth` guards every route that runs work, that an exposed app
refuses to fetch loopback and link-local addresses, that uploaded file names cannot leave the upload
folder, and that `--read-only` refuses changes whatever the client sends. All traffic goes to
servers this module starts on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import shutil
from pathlib import Path

import pytest

from e2e_harness import AppProcess, gradio_client

USER = "ann"
PASSWORD = secrets.token_urlsafe(12)
UPLOAD_TEXT = "Harbour notes. The ferry to Brastad leaves at seven and carries forty passengers.\n"


# A page on 127.0.0.1 that no test may make the app fetch (conftest's `site` serves it and records every request).
SITE_PAGES = {"private.html": "<html><body><p>internal only</p></body></html>"}


@pytest.fixture(scope="module")
def exposed(workdir):
    """The app as shared on a network: listening on all interfaces, behind a login."""
    app = AppProcess(workdir, "--host", "0.0.0.0", "--auth", f"{USER}:{PASSWORD}")
    app.wait_ready()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(exposed, workdir):
    return gradio_client(exposed, auth=(USER, PASSWORD), workdir=workdir)


@pytest.fixture(scope="module")
def notes(client, workdir) -> str:
    """One uploaded document in the exposed app's default collection; its source as the table shows it."""
    from gradio_client import handle_file

    path = workdir / "harbour-notes.txt"
    path.write_text(UPLOAD_TEXT, encoding="utf-8")
    summary, *_ = client.predict("", [handle_file(str(path))], 500, 0, api_name="/ingest")
    assert "**1** added" in summary
    return "upload: harbour-notes.txt"


def http(app: AppProcess, cookies=None):
    import httpx

    return httpx.Client(base_url=app.url.rstrip("/"), timeout=30, cookies=cookies)


@contextlib.contextmanager
def login(app: AppProcess):
    with http(app) as session:
        response = session.post("/login", data={"username": USER, "password": PASSWORD})
        assert response.status_code == 200, response.text
        yield session


def sse_call(session, api_name: str, data: list) -> str:
    """Gradio's two-step REST call: POST the inputs, then read the event stream of the result."""
    response = session.post(f"/gradio_api/call/{api_name}", json={"data": data})
    response.raise_for_status()
    event_id = response.json()["event_id"]
    return session.get(f"/gradio_api/call/{api_name}/{event_id}", timeout=300).text


# ---------------------------------------------------------------- --auth


WORK_ROUTES = [
    ("GET", "/config", None),
    ("GET", "/gradio_api/info", None),
    ("GET", "/gradio_api/openapi.json", None),
    ("POST", "/gradio_api/queue/join", {"data": ["storm", 4, "hybrid"], "fn_index": 0, "session_hash": "x1"}),
    ("GET", "/gradio_api/queue/data?session_hash=x1", None),
    ("GET", "/gradio_api/queue/status", None),
    ("POST", "/gradio_api/call/search", {"data": ["storm", 4, "hybrid"]}),
    ("POST", "/gradio_api/call/ingest", {"data": ["", [], 500, 0]}),
    ("POST", "/gradio_api/run/search", {"data": ["storm", 4, "hybrid"]}),
    ("POST", "/gradio_api/component_server", {"session_hash": "x1", "component_id": 1, "fn_name": "x", "data": None}),
    ("GET", "/gradio_api/upload_progress?upload_id=x1", None),
    ("GET", "/gradio_api/file=/etc/hostname", None),
]


@pytest.mark.parametrize("method,path,body", WORK_ROUTES, ids=[f"{m} {p}" for m, p, _ in WORK_ROUTES])
def test_routes_that_run_work_refuse_an_unauthenticated_client(exposed, method, path, body):
    with http(exposed) as anonymous:
        response = anonymous.request(method, path, json=body)
    assert response.status_code == 401, (path, response.status_code, response.text[:200])
    assert "Not authenticated" in response.text


# Gradio 6.31 serves these without its own login check; ui.guard.LoginRequired adds it.
SESSION_ROUTES = [
    ("POST", "/gradio_api/cancel", {"session_hash": "x1", "fn_index": 0, "event_id": "e1"}),
    ("GET", "/gradio_api/heartbeat/x1", None),
    ("POST", "/gradio_api/stream/e1", {"data": [], "fn_index": 0, "session_hash": "x1"}),
    ("POST", "/gradio_api/stream/e1/close", None),
    ("GET", "/gradio_api/stream/x1/0/1/playlist.m3u8", None),
    ("POST", "/gradio_api/reset", {"event_id": "e1"}),
    ("POST", "/gradio_api/cancel/", {"session_hash": "x1", "fn_index": 0, "event_id": "e1"}),
]


@pytest.mark.parametrize("method,path,body", SESSION_ROUTES, ids=[f"{m} {p}" for m, p, _ in SESSION_ROUTES])
def test_gradio_session_routes_refuse_an_unauthenticated_client(exposed, method, path, body):
    """Cancel, heartbeat, stream and reset act on a session or event; without a login they answer 401."""
    with http(exposed) as anonymous:
        # Streamed, and only the status read: an unguarded heartbeat would hold the connection open.
        with anonymous.stream(method, path, json=body, timeout=10) as response:
            status = response.status_code
            text = response.read().decode() if status == 401 else ""
    assert status in (401, 307), (path, status)
    if status == 307:  # a trailing slash is redirected first; the target must refuse too
        with http(exposed) as anonymous:
            assert anonymous.request(method, path.rstrip("/"), json=body).status_code == 401
    else:
        assert "Not authenticated" in text


def test_gradio_session_routes_still_serve_a_logged_in_client(exposed):
    with login(exposed) as session:
        with session.stream("GET", "/gradio_api/heartbeat/x1", timeout=10) as beat:
            assert beat.status_code == 200
            assert next(beat.iter_lines()).startswith("data: ALIVE")
        cancel = session.post("/gradio_api/cancel", json={"session_hash": "x1", "fn_index": 0, "event_id": "e1"})
        assert cancel.status_code == 200 and cancel.json() == {"success": True}


def test_startup_events_is_open_but_starts_nothing_after_launch(exposed, notes):
    """Blocks.launch calls /startup-events itself, without a cookie, so it stays open: once run, it only
    answers false, and it reads no user data."""
    with http(exposed) as anonymous:
        response = anonymous.get("/gradio_api/startup-events")
    assert response.status_code == 200 and response.json() is False
    assert "Brastad" not in response.text and "harbour" not in response.text


def test_uploads_need_a_login_and_a_forged_cookie_is_no_login(exposed):
    payload = ("files", ("intruder.txt", b"written by nobody", "text/plain"))
    with http(exposed) as anonymous:
        assert anonymous.post("/gradio_api/upload", files=[payload]).status_code == 401
    with http(exposed, cookies={f"access-token-{exposed.port}": "forged"}) as forged:
        assert forged.post("/gradio_api/upload", files=[payload]).status_code == 401
        assert forged.get("/config").status_code == 401
    assert not list(exposed.index_dir.parent.rglob("intruder.txt"))


def test_the_page_without_login_is_only_the_login_form(exposed):
    with http(exposed) as anonymous:
        page = anonymous.get("/")
        wrong = anonymous.post("/login", data={"username": USER, "password": "not-" + PASSWORD})
    assert page.status_code == 200
    assert "ingest-btn" not in page.text and "Lighthouse" not in page.text
    assert wrong.status_code in (400, 401)


def test_gradio_client_needs_the_credentials(exposed, workdir):
    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        gradio_client(exposed, workdir=workdir)
    # Gradio answers a wrong password with 400, which this client version reports as a ValueError.
    with pytest.raises((AuthenticationError, ValueError), match="Could not login"):
        gradio_client(exposed, auth=(USER, "wrong"), workdir=workdir)

    client = gradio_client(exposed, auth=(USER, PASSWORD), workdir=workdir)
    assert {"/ingest", "/search", "/ask", "/chat", "/delete"} <= set(client.view_api(print_info=False,
                                                                                     return_format="dict")
                                                                      ["named_endpoints"])
    note, _table = client.predict("default", api_name="/choose_collection")
    assert "default" in note


def test_rest_calls_work_after_logging_in(exposed, notes):
    with login(exposed) as session:
        result = sse_call(session, "search", ["ferry passengers", 4, "hybrid"])
    assert "event: complete" in result and "Brastad" in result


# ---------------------------------------------------------------- an exposed app fetches no private address


def test_exposed_app_refuses_loopback_and_metadata_addresses_before_connecting(client, site, exposed):
    port = site.url.rsplit(":", 1)[1]
    urls = [f"{site.url}/private.html", f"http://localhost:{port}/private.html",
            f"http://[::1]:{port}/private.html", f"http://2130706433:{port}/private.html",
            "http://169.254.169.254/latest/meta-data/"]
    summary, lines, *_ = client.predict("\n".join(urls), [], 500, 0, api_name="/ingest")
    assert f"**{len(urls)}** failed" in summary and "**0** added" in summary
    refusals = [line for line in lines.splitlines() if "private or local address" in line]
    assert len(refusals) == len(urls), lines
    assert "169.254.169.254" in lines

    status, *_ = client.predict(f"{site.url}/private.html", [], api_name="/preview")
    assert "private or local address" in status
    assert site.requests == [], "the app connected to the local server"
    assert exposed.proc.poll() is None


# ---------------------------------------------------------------- upload names


@pytest.mark.parametrize("name", ["../../../escape-up.txt", "/tmp/escape-abs.txt", "..\\..\\escape-back.txt",
                                  "....escape-dots.txt", "a" * 230 + ".txt"])
def test_uploaded_file_names_stay_in_the_upload_folder(exposed, notes, workdir, name):
    with login(exposed) as session:
        response = session.post("/gradio_api/upload", files=[("files", (name, UPLOAD_TEXT.encode(), "text/plain"))])
        assert response.status_code == 200, response.text
        [cached] = response.json()
        result = sse_call(session, "ingest", ["", [{"path": cached, "meta": {"_type": "gradio.FileData"}}], 500, 0])
    assert "event: complete" in result, result[:500]
    uploads = (exposed.index_dir / "_uploads" / "default").resolve()
    stem = Path(name.replace("\\", "/")).name[:40].strip(".")
    written = [p.resolve() for p in workdir.parent.rglob(f"*{stem}*")]
    assert written, "the upload was not stored"
    outside = [p for p in written if not (p.is_relative_to(uploads) or p.is_relative_to(workdir / "gradio-"
                                                                                          f"{exposed.port}"))]
    assert outside == []


def test_a_path_that_was_never_uploaded_is_refused_with_a_sentence(exposed):
    with login(exposed) as session:
        result = sse_call(session, "ingest", ["", [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}],
                                              500, 0])
    assert "event: error" in result
    message = json.loads(result.split("data:", 1)[1].splitlines()[0])["error"]
    assert message and "not uploaded" in message


def test_stash_upload_keeps_every_name_inside_the_collection_folder(settings, tmp_path):
    from rag.errors import RagError
    from ui.runtime import Runtime

    runtime = Runtime(settings)
    folder = runtime.uploads_dir("default").resolve()
    for name in ["..\\..\\evil.txt", "....", ".bashrc", "b" * 250 + ".txt", "new\nline.md", "ünï cödé.txt"]:
        src = tmp_path / "in" / name
        src.parent.mkdir(exist_ok=True)
        src.write_text("x", encoding="utf-8")
        dest = runtime.stash_upload("default", str(src)).resolve()
        assert dest.parent == folder and dest.read_text() == "x", name
        assert len(dest.name) <= 120
    with pytest.raises(RagError, match="not allowed"):
        runtime.stash_upload("../../outside", str(src))
    assert sorted(p.name for p in Path(settings.index_dir).iterdir()) == ["_uploads"]


# ---------------------------------------------------------------- --read-only


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's hash, except SQLite's shared-memory index, which any reader rewrites, and tantivy's
    empty lock file, which a reader creates to read the index's list of segments."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith("-shm") and p.name != ".tantivy-meta.lock"}


@pytest.fixture(scope="module")
def guest(exposed, notes, workdir):
    """A read-only app over a copy of the exposed app's index, which holds one document."""
    index = workdir / "read-only-index"
    shutil.copytree(exposed.index_dir, index, ignore=shutil.ignore_patterns("_uploads", "*.lock"))
    app = AppProcess(workdir, "--read-only", index_dir=index)
    app.wait_ready()
    yield app
    app.stop()


def test_read_only_server_refuses_changes_sent_straight_to_its_endpoints(guest, notes, site, workdir):
    from gradio_client import handle_file

    before = tree_digest(guest.index_dir)
    client = gradio_client(guest, workdir=workdir)
    upload = workdir / "guest.txt"
    upload.write_text("A guest's note.", encoding="utf-8")
    # Each refusal is the sentence in the step's status line (the first output, or the documents note for delete).
    refused = {
        "ingest": lambda: client.predict(f"{site.url}/private.html", [handle_file(str(upload))], 500, 0,
                                         api_name="/ingest")[0],
        "preview": lambda: client.predict("", [handle_file(str(upload))], api_name="/preview")[0],
        "delete": lambda: client.predict(notes, api_name="/delete")[1],
        "settings": lambda: client.predict("gpt4all", "", 0.5, 64, 2048, 4, "hybrid", "auto", "", "",
                                           api_name="/apply_settings")[0],
        "quick add": lambda: client.predict(f"{site.url}/private.html", api_name="/quick_add")[0],
    }
    for action, call in refused.items():
        status = call()
        assert "read-only" in status and "demo mode" in status, action
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError):  # Gradio itself refuses a name outside the read-only dropdown's choices
        client.predict("fresh", api_name="/choose_collection")

    # Still serving, still holding the document, and nothing on disk changed.
    note, hits, *_ = client.predict("ferry passengers", 4, "hybrid", api_name="/search")
    assert "Brastad" in hits
    assert tree_digest(guest.index_dir) == before
    assert sorted(p.name for p in guest.index_dir.iterdir()) == ["default"]
    assert site.requests == []


# ---------------------------------------------------------------- work nobody waits for


class GatedSite:
    """A web site on 127.0.0.1 whose every page waits until the test lets it through; it notes each request."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.arrived: list[str] = []
        self.request_seen = threading.Condition()
        self.gate = threading.Semaphore(0)
        self.closing = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                with site.request_seen:
                    site.arrived.append(self.path)
                    site.request_seen.notify_all()
                while not site.gate.acquire(timeout=0.1):
                    if site.closing.is_set():
                        return
                body = f"<html><head><title>Tides {self.path}</title></head><body><p>The tide at the harbour " \
                       f"turns twice a day ({self.path}).</p></body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> bool:
        """True once `count` requests have arrived; False if `timeout` passes first."""
        with self.request_seen:
            return self.request_seen.wait_for(lambda: len(self.arrived) >= count, timeout)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated_site():
    site = GatedSite()
    yield site
    site.close()


@pytest.fixture(scope="module")
def local_app(workdir):
    """The app as on a laptop (loopback, no login), which may fetch the local test site."""
    app = AppProcess(workdir, index_dir=workdir / "local-index")
    app.wait_ready()
    yield app
    app.stop()


def twenty_urls(site: GatedSite) -> str:
    return "\n".join(f"{site.url}/tide{i}.html" for i in range(20))


@pytest.mark.slow
def test_a_cancelled_ingest_fetches_nothing_more(local_app, gated_site, workdir):
    """Gradio runs a plain callback in a thread to its end even after /cancel; the ingest must stop itself."""
    client = gradio_client(local_app, workdir=workdir)
    job = client.submit(twenty_urls(gated_site), [], 500, 0, api_name="/ingest")
    assert gated_site.wait_for(1, timeout=120), "the ingest never started fetching"
    assert job.cancel()
    gated_site.gate.release()  # the first page now arrives, after the cancel
    # Before the fix the second page was asked for at once; the wait is only a bound for the failure.
    assert not gated_site.wait_for(2, timeout=10), f"the cancelled ingest went on: {gated_site.arrived}"
    note, *_ = client.predict(api_name="/refresh")
    assert "tide1.html" not in note and local_app.proc.poll() is None


@pytest.mark.slow
def test_an_ingest_whose_page_was_closed_fetches_nothing_more(local_app, gated_site, workdir):
    """A closed tab: the queue's event stream is dropped mid-ingest, with no /cancel."""
    import httpx

    client = gradio_client(local_app, workdir=workdir)
    session_hash, fn_index = client.session_hash, client._infer_fn_index("/ingest", None)
    client.close()  # from here on only the "tab" below speaks for this session

    def join(data: list) -> None:
        joined = tab.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
            "trigger_id": None})
        assert joined.status_code == 200, joined.text

    with httpx.Client(base_url=local_app.url.rstrip("/"), timeout=30) as tab:
        join([twenty_urls(gated_site), [], 500, 0, None])
        with tab.stream("GET", f"/gradio_api/queue/data?session_hash={session_hash}"):
            assert gated_site.wait_for(1, timeout=120), "the ingest never started fetching"
        # The tab is closed. A second ingest queued behind the first sends the session a message,
        # which is when the server looks at the dropped stream and marks the session's events.
        join(["", [], 500, 0, None])
    gated_site.gate.release()
    assert not gated_site.wait_for(2, timeout=10), f"the abandoned ingest went on: {gated_site.arrived}"


# ---------------------------------------------------------------- conversations per user under --auth


@pytest.mark.slow
def test_each_user_sees_only_their_own_conversations(workdir):
    """ann's saved conversation reopens for ann after a restart, and bob's notebook lists none."""
    from gradio_client import handle_file

    users = workdir / "two-users.txt"
    users.write_text(f"ann:{PASSWORD}\nbob:{PASSWORD}\n", encoding="utf-8")
    index = workdir / "two-users-index"
    note = workdir / "ferry.txt"
    note.write_text("The ferry to Brastad leaves at seven and carries forty passengers.", encoding="utf-8")

    app = AppProcess(workdir, "--auth", str(users), "--max-tokens", "8", index_dir=index)
    app.wait_ready()
    try:
        ann = gradio_client(app, auth=("ann", PASSWORD), workdir=workdir)
        ann.predict("", [handle_file(str(note))], 500, 0, api_name="/ingest")
        ann.predict("When does the ferry leave?", api_name="/ask")
        chatbot, status, *_ = ann.submit(api_name="/chat").result(timeout=600)
        assert "Answered by" in status
    finally:
        app.stop()

    again = AppProcess(workdir, "--auth", str(users), index_dir=index)
    again.wait_ready()
    try:
        ann = gradio_client(again, auth=("ann", PASSWORD), workdir=workdir)
        bob = gradio_client(again, auth=("bob", PASSWORD), workdir=workdir)
        chatbot, status, title, *_ = ann.predict(api_name="/restore")
        assert title == "When does the ferry leave?" and "Opened" in status
        chatbot, status, title, *_ = bob.predict(api_name="/restore")
        assert (chatbot, title) == ([], "")
    finally:
        again.stop()
