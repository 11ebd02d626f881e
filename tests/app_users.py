"""Simulated users of the running app, each driving it through gradio's own client as its own session.

User `i` owns collection `user<i>` and one document holding a fact nobody else has (an island and
its keeper). It ingests that document (a page from the local site, or an uploaded text), searches,
asks about its fact and exports the conversation. Any other user's island or keeper in anything it
gets back means answers or sessions mixed. Shared by the load test and `benchmarks/bench_load.py`.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ISLANDS = ["Quillon", "Brastad", "Ormsund", "Tellwick", "Kaldvik", "Morrowby", "Silverholm", "Ashcombe"]
KEEPERS = ["Ingrid Halvorsen", "Tomas Reyes", "Aiko Tanabe", "Olu Adeyemi", "Marta Kowalczyk", "Ravi Menon",
           "Elsa Lindqvist", "Pedro Alvarez"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "violet"]


def island(i: int) -> str:
    return ISLANDS[i % len(ISLANDS)] + ("" if i < len(ISLANDS) else str(i // len(ISLANDS)))


def keeper(i: int) -> str:
    return KEEPERS[i % len(KEEPERS)] + ("" if i < len(KEEPERS) else f" {i // len(KEEPERS)}")


def fact(i: int) -> str:
    return (f"The lighthouse on the island of {island(i)} is kept by {keeper(i)}. "
            f"Its lamp is painted {COLOURS[i % len(COLOURS)]}, and the keeper logs every passing ship.")


def page_html(i: int) -> str:
    return (f"<!doctype html><html><head><title>The lighthouse of {island(i)}</title></head><body><article>"
            f"<h1>The lighthouse of {island(i)}</h1><p>{fact(i)}</p>"
            "<p>The island has a small harbour and a weather station that reports twice a day.</p>"
            "</article></body></html>")


def write_site(root: Path, users: int) -> None:
    """Each user's page for the local site, and the text file odd users upload instead."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(users):
        (root / f"user{i}.html").write_text(page_html(i), encoding="utf-8")
        (root / f"user{i}.txt").write_text(f"Notes about {island(i)}.\n\n{fact(i)}\n", encoding="utf-8")


def markers(i: int) -> list[str]:
    return [island(i), keeper(i)]


def foreign_markers(i: int, users: int, text: str) -> list[str]:
    """Other users' islands and keepers that appear, as whole words, in `text`."""
    found = []
    for j in range(users):
        if j != i:
            found += [m for m in markers(j) if re.search(rf"\b{re.escape(m)}\b", text)]
    return found


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


@dataclass
class UserRun:
    """What one simulated user did and saw; times are seconds on the shared monotonic clock."""

    user: int
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    search_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    chat_s: list[float] = field(default_factory=list)
    chat_joined: list[float] = field(default_factory=list)
    chat_first_token: list[float] = field(default_factory=list)
    finished: float | None = None
    history: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.errors or self.mixed or self.problems)


class SimulatedUser:
    """One person with their own client (so their own session and gr.State) working through the notebook."""

    def __init__(self, i: int, users: int, app_url: str, site_url: str, site_root: Path, downloads: Path,
                 auth: tuple[str, str] | None = None, turns: int = 1, searches: int = 2):
        self.i, self.users, self.app_url, self.site_url, self.site_root = i, users, app_url, site_url, site_root
        self.downloads, self.auth, self.turns, self.searches = downloads, auth, turns, searches
        self.run = UserRun(i)

    # -- the workflow ------------------------------------------------------------------------------

    def __call__(self, start: threading.Barrier | None = None) -> UserRun:
        from gradio_client import Client

        try:
            try:
                client = Client(self.app_url, auth=self.auth, verbose=False, analytics_enabled=False,
                                download_files=str(self.downloads / f"user{self.i}"))
            finally:
                if start is not None:
                    start.wait(timeout=300)  # everyone starts together, or nobody waits forever
            self._ingest(client)
            for query in self._queries():
                self._search(client, query)
            for turn in range(self.turns):
                self._chat(client, turn)
            self._export(client)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, none may happen
            self.run.errors.append(f"{type(exc).__name__}: {exc}")
        self.run.finished = time.monotonic()
        return self.run

    def _call(self, client, *args, api_name: str):
        result = client.predict(*args, api_name=api_name)
        self.run.calls += 1
        return result

    def _ingest(self, client) -> None:
        from gradio_client import handle_file

        note, _table = self._call(client, f"user{self.i}", api_name="/choose_collection")
        self._expect(f"user{self.i}" in note, f"choose_collection said {note!r}")
        if self.i % 2 == 0:
            args = (f"{self.site_url}/user{self.i}.html", [])
        else:
            args = ("", [handle_file(str(self.site_root / f"user{self.i}.txt"))])
        summary, lines, docs_note, *_ = self._call(client, *args, 500, 0, api_name="/ingest")
        self._expect("**1** added" in summary, f"ingest said {summary!r} {lines!r}")
        self._check(summary + lines + docs_note)

    def _queries(self) -> list[str]:
        return [f"Who keeps the lighthouse on {island(self.i)}?", "What colour is the lamp painted?"][: self.searches]

    def _search(self, client, query: str) -> None:
        started = time.monotonic()
        note, hits, _bars, _map = self._call(client, query, 4, "hybrid", api_name="/search")
        self.run.search_s.append(time.monotonic() - started)
        self._expect(island(self.i) in hits, f"search for {query!r} did not return this user's document")
        self._check(note + hits)

    def _question(self, turn: int) -> str:
        if turn == 0:
            return f"Who keeps the lighthouse on {island(self.i)}?"
        return "What colour is its lamp painted?"

    def _chat(self, client, turn: int) -> None:
        question = self._question(turn)
        self._call(client, question, api_name="/ask")
        joined = time.monotonic()
        job = client.submit(api_name="/chat")
        first = None
        for update in job:
            if first is None and "Answer" in str(update[1]):
                first = time.monotonic()
        outputs = job.outputs()
        self.run.calls += 1
        if not outputs:
            raise RuntimeError(f"/chat returned nothing for {question!r}")
        chatbot, status, standalone, prompt, _usage, _timings = outputs[-1]
        done = time.monotonic()
        first = first or done
        self.run.chat_joined.append(joined)
        self.run.chat_first_token.append(first)
        self.run.ttft_s.append(first - joined)
        self.run.chat_s.append(done - joined)
        self._expect("Answered by" in status, f"chat ended with status {status!r}")
        texts = [message_text(m) for m in chatbot]
        user_turns = [message_text(m) for m in chatbot if m.get("role") == "user"]
        self.run.history = user_turns
        self._expect(len(user_turns) == turn + 1 and question in user_turns[-1],
                     f"history after turn {turn + 1} holds {user_turns!r}")
        sources = [message_text(m) for m in chatbot if (m.get("metadata") or {}).get("title", "").startswith("Sources")]
        self._expect(bool(sources) and island(self.i) in sources[-1], "the answer's sources are not this user's")
        self.run.answers.append(texts[-2] if len(texts) >= 2 else "")
        self._check(" ".join(texts) + standalone + prompt)

    def _export(self, client) -> None:
        path, status = self._call(client, api_name="/export")
        self._expect("Exported" in status, f"export said {status!r}")
        if isinstance(path, dict):  # the callback returns gr.update(value=file, visible=True)
            path = path.get("value")
        text = Path(path).read_text(encoding="utf-8")
        for turn in range(self.turns):
            self._expect(self._question(turn) in text, f"the export lacks question {turn + 1}")
        self._check(text)

    # -- checks ------------------------------------------------------------------------------------

    def _expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.run.problems.append(problem)

    def _check(self, text: str) -> None:
        self.run.mixed += foreign_markers(self.i, self.users, text)


def run_users(users: int, app_url: str, site_url: str, site_root: Path, downloads: Path, **kwargs) -> list[UserRun]:
    """All users at once, one thread each, released together by a barrier."""
    start = threading.Barrier(users)
    people = [SimulatedUser(i, users, app_url, site_url, site_root, downloads, **kwargs) for i in range(users)]
    threads = [threading.Thread(target=person, args=(start,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [person.run for person in people]
