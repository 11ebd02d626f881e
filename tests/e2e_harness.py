"""What the end-to-end tests and benchmarks share: the real app in a subprocess, a local web site, a browser.

Everything listens on 127.0.0.1 on a free port; nothing here reaches another machine.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder without logging, and records every request path it was asked for."""

    def log_message(self, *args):
        pass

    def send_head(self):
        self.server.requests.append(self.path)
        return super().send_head()


class LocalSite:
    """A folder served by http.server on 127.0.0.1; `requests` lists the paths it has been asked for."""

    def __init__(self, root: Path):
        handler = functools.partial(QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.requests = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AppProcess:
    """`python app.py` on a free port, with its index in the test's directory."""

    def __init__(self, workdir: Path, *flags: str, index_dir: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
        # Gradio's upload cache goes in the test's directory too, so nothing is left in the shared /tmp.
        env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
                   GRADIO_TEMP_DIR=str(workdir / f"gradio-{self.port}"))
        self.index_dir = index_dir or workdir / "index"
        self.log = open(workdir / f"app-{self.port}.log", "w")
        self.started = time.monotonic()
        self.first_200_s: float | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port), "--index-dir", str(self.index_dir),
             "--max-tokens", "24", *flags],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, deadline_s: float = 120, poll_s: float = 0.2) -> None:
        """Wait for the first HTTP 200 of `/`, noting how long after the process start it came."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}: {self.read_log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        self.first_200_s = time.monotonic() - self.started
                        return
            except OSError:
                time.sleep(poll_s)
        raise RuntimeError(f"app did not answer on {self.url}: {self.read_log()}")

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def gradio_client(app: AppProcess, auth: tuple[str, str] | None = None, workdir: Path | None = None):
    """gradio's own client on the app, with its analytics off so it only talks to the app."""
    from gradio_client import Client

    downloads = (workdir or app.index_dir.parent) / "client-downloads"
    return Client(app.url, auth=auth, verbose=False, analytics_enabled=False, download_files=str(downloads))
