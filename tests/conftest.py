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
