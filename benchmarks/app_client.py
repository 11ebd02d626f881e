"""The notebook as a benchmark asks it: the real `app.py` process on 127.0.0.1, questions sent through its
own API with gradio's client, and the Chat's Markdown read back as the plain text the chain produced.

    with Notebook(settings, workdir) as app:
        turn = app.ask(app.client(), "Who built the lighthouse?")   # answer, sources, abstained, status, error

`bench_answers.py --via app` measures answers through this, so its figures are what a person reads in Chat.
"""

from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Settings that app.py takes no flag for reach it as the environment variables rag.settings reads;
# the chat settings (temperature, k, mode, ...) are applied in each session through the settings panel.
_ENV_OF = {"n_threads": "RAG_THREADS", "n_ctx": "RAG_N_CTX", "answer_style": "RAG_ANSWER_STYLE",
           "models_dir": "RAG_MODELS_DIR", "embedding_model": "RAG_EMBEDDING_MODEL",
           "embedding_backend": "RAG_EMBEDDING_BACKEND", "n_gpu_layers": "RAG_GPU_LAYERS"}

# ui/chat_format.py: answer_md links a cited [n] as [\[n\]](#cite-turn-n); escape_markdown puts a backslash
# before Markdown's special characters and list or heading starts, after escaping HTML.
_CITE_LINK = re.compile(r"\[\\\[(\d{1,3})\\\]\]\(#cite-\d+-\d+\)")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+!|>~$.=\-])")
# Lines chat_messages adds under an answer, in italics: the quote label, "(stopped)". An answer's own
# underscores are escaped, so no line of the answer itself starts with a bare "_".
_LABEL = re.compile(r"(?:\n\n|^)_[^\n]*_\s*$")
_SOURCE = re.compile(r"<details><summary>.*?</summary>(.*?)</details>", re.DOTALL)
_SOURCES_TITLE = re.compile(r"^Sources \((\d+)\)$")
# ui/chat_format.done_note: "Not answered: ..." when the model was not asked; any abstention ends so.
_ABSTAINED = ("Not answered", "The sources listed are the closest passages.")


def plain_markdown(markdown: str) -> str:
    """Text as it was before ui.escaping.escape_markdown."""
    return html.unescape(_ESCAPED.sub(r"\1", markdown))


def plain_answer(markdown: str) -> str:
    """The chain's answer from the Chat's answer message: cite links back to [n], labels under it dropped."""
    text = markdown.strip()
    while (label := _LABEL.search(text)) is not None:
        text = text[: label.start()].rstrip()
    return plain_markdown(_CITE_LINK.sub(lambda m: f"\\[{m[1]}\\]", text))


def plain_sources(markdown: str) -> list[str]:
    """The passages of a "Sources (n)" message (ui.chat_format.sources_md), in their order."""
    return [plain_markdown(body.strip()) for body in _SOURCE.findall(markdown)]


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def _title(message: dict) -> str:
    return (message.get("metadata") or {}).get("title") or ""


def read_turn(chatbot: list[dict], status: str) -> dict:
    """The last turn on screen as plain data: answer, sources, abstained, status, error (None if none)."""
    if (status or "").startswith("⚠️"):
        return {"answer": "", "sources": [], "abstained": False, "status": status,
                "error": plain_markdown(status.removeprefix("⚠️").strip())}
    assistant = [m for m in chatbot if m.get("role") == "assistant"]
    answers = [m for m in assistant if not _title(m)]
    listed = [m for m in assistant if _SOURCES_TITLE.match(_title(m))]
    if not answers or not listed:
        raise ValueError(f"The chat shows no answer or no sources; status {status!r}")
    sources = plain_sources(message_text(listed[-1]))
    expected = int(_SOURCES_TITLE.match(_title(listed[-1]))[1])
    if len(sources) != expected:  # the sources' Markdown changed under this parser
        raise ValueError(f"Read {len(sources)} passages from a message titled {_title(listed[-1])!r}")
    answer = plain_answer(message_text(answers[-1]))
    return {"answer": answer, "sources": sources, "abstained": any(s in status for s in _ABSTAINED),
            "status": plain_markdown(status), "error": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Notebook:
    """`python app.py` over `settings.index_dir` on a free port, started with `settings`; as a context manager
    it is stopped on the way out, whatever happened, and its log printed when something failed."""

    def __init__(self, settings, workdir: Path):
        self.settings = settings
        self.workdir = Path(workdir)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = self.workdir / f"app-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        s = self.settings
        flags = ["--host", "127.0.0.1", "--port", str(self.port), "--index-dir", str(s.index_dir),
                 "--collection", s.collection, "--backend", s.backend, "--max-tokens", str(s.max_tokens)]
        flags += ["--model", s.model] if s.model else []
        flags += ["--base-url", s.base_url] if s.base_url else []
        return [sys.executable, "app.py", *flags]

    def environment(self) -> dict[str, str]:
        """This process's environment without RAG_ and GRADIO_ variables, then the settings app.py has no flag for."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
        env.update({var: str(getattr(self.settings, name)) for name, var in _ENV_OF.items()})
        env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
                   GRADIO_TEMP_DIR=str(self.workdir / f"gradio-{self.port}"))
        return env

    def __enter__(self) -> "Notebook":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.environment(), stdout=log,
                                         stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.stop()
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            print(f"--- the app's log ({self.log_path}), its end:\n{self.log()}", file=sys.stderr)

    def wait_ready(self, deadline_s: float = 180) -> None:
        """Until `/` answers 200; RuntimeError if the app exits first or never answers."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode} before serving {self.url}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"app.py did not answer on {self.url} within {deadline_s:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self, chars: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log_path.exists() else ""

    def client(self):
        """gradio's own client on the app, talking to nothing else."""
        from gradio_client import Client

        return Client(self.url, verbose=False, analytics_enabled=False, download_files=False)

    def chat_form(self) -> tuple:
        """The settings panel's values for `settings`: what Apply would send."""
        from ui.settings_form import settings_values
        from ui.state import ChatSettings

        s = self.settings
        return settings_values(ChatSettings(backend=s.backend, model=s.model, temperature=s.temperature,
                                            max_tokens=s.max_tokens, n_ctx=s.n_ctx, k=s.k, mode=s.mode,
                                            answer_style=s.answer_style))

    def ask(self, client, question: str, apply: bool = True) -> dict:
        """`question` in a fresh session: the settings applied (unless not `apply`), /ask, then /chat;
        the turn as read_turn gives it."""
        client.reset_session()
        if apply:
            applied = client.predict(*self.chat_form(), api_name="/apply_settings")[0]
            if not applied.startswith("Applied:"):
                raise RuntimeError(f"The app refused the settings: {plain_markdown(applied)}")
        client.predict(question, api_name="/ask")
        chatbot, status, *_ = client.predict(api_name="/chat")
        return read_turn(chatbot, status)
