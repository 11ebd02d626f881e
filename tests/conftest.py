"""Shared fixtures: settings on a temporary index, where the shared data sits, and for the end-to-end
modules a work folder, a local site, the app and a browser, one of each per module."""

from pathlib import Path

import pytest

from rag.settings import load_settings

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={}, index_dir=tmp_path / "index", models_dir=tmp_path / "models")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data sits beside the checkout, not in a user's clone")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, request) -> Path:
    """One folder for an end-to-end module: its site, its app's index and models, its screenshots."""
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2].removeprefix("test_"))


@pytest.fixture(scope="module")
def site(workdir, request):
    """The module's SITE_PAGES ({file name: HTML}) served on 127.0.0.1; `site.requests` lists what was asked."""
    from tests.e2e_harness import LocalSite

    root = workdir / "site"
    root.mkdir()
    for name, html in request.module.SITE_PAGES.items():
        (root / name).write_text(html, encoding="utf-8")
    server = LocalSite(root)
    yield server
    server.close()


@pytest.fixture(scope="module")
def app(workdir):
    """The notebook as `python app.py` starts it, on the module's folder."""
    from tests.e2e_harness import AppProcess

    proc = AppProcess(workdir)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    from tests.e2e_harness import ARGS, CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """One milvus-lite server on 127.0.0.1 for the session's Milvus tests (started only when one asks)."""
    pytest.importorskip("milvus_lite", reason="the Milvus store's tests need milvus-lite (requirements.txt)")
    from tests.milvus_server import MilvusLiteServer

    server = MilvusLiteServer(tmp_path_factory.mktemp("milvus-lite") / "data").start()
    yield server
    server.kill()


@pytest.fixture(params=["local", "milvus", "milvus-embedded"])
def store_settings(request, settings, tmp_path):
    """Settings on each store the contract tests cover: the local directory, a milvus-lite server, and
    milvus-lite embedded in this process (a path of the test's own)."""
    if request.param == "local":
        return settings
    if request.param == "milvus-embedded":
        pytest.importorskip("milvus_lite", reason="the Milvus store's tests need milvus-lite (requirements.txt)")
        return settings.replace(store=f"milvus+lite://{tmp_path / 'milvus.db'}")
    server = request.getfixturevalue("milvus_server")
    server.drop_all()
    return settings.replace(store=server.uri)
