"""Shared fixtures: settings on a temporary index, and where the shared data sits."""

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
