"""A few simultaneous users on the real app through gradio's client: nothing errors and nothing mixes.

The bounded version of `benchmarks/bench_load.py` (which runs eight users and reports timings):
three users, each in their own session with their own collection, ingest (by URL or upload),
search and chat at the same moment; each gets back only their own sources and their own history.
"""

from __future__ import annotations

import pytest

from app_users import island, run_users, write_site
from e2e_harness import AppProcess, LocalSite

USERS = 3


@pytest.mark.slow
def test_simultaneous_users_each_get_their_own_answers_and_history(tmp_path):
    write_site(tmp_path / "site", USERS)
    site = LocalSite(tmp_path / "site")
    app = AppProcess(tmp_path, "--max-tokens", "8")
    try:
        app.wait_ready()
        runs = run_users(USERS, app.url, site.url, tmp_path / "site", tmp_path / "downloads", searches=1)
        assert app.proc.poll() is None, app.read_log()
    finally:
        app.stop()
        site.close()

    for run in runs:
        assert run.errors == [], run.errors
        assert run.mixed == [], f"user{run.user} saw another user's document: {run.mixed}"
        assert run.problems == [], run.problems
        assert run.history == [f"Who keeps the lighthouse on {island(run.user)}?"]
        assert len(run.ttft_s) == 1
    # choose collection, ingest, one search, ask, chat, export: six requests served per user.
    assert sum(run.calls for run in runs) == 6 * USERS
