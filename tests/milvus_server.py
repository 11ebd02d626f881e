"""A milvus-lite server for the Milvus store's tests: a child process on 127.0.0.1, never another address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.openai_server import free_port


class MilvusLiteServer:
    """`python -m milvus_lite server` on a free port over `data_dir`; `kill()` and `start()` again restart it."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir, self.port = Path(data_dir), port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = None

    @property
    def uri(self) -> str:
        return f"milvus://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "MilvusLiteServer":
        cmd = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
               "--port", str(self.port), "--max-workers", "8"]
        self.log = tempfile.TemporaryFile()  # a file: a pipe nobody reads would fill and stall the server
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"milvus-lite exited: {self.log.read()[-2000:].decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                self._answer()  # listening is not yet serving: it may still be reading its data back
                return self
            except Exception:  # noqa: BLE001 - not up yet, whatever the client says
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("milvus-lite did not start in time")

    def _answer(self) -> None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", timeout=5)
        try:
            for name in client.list_collections():
                client.describe_collection(name)
        finally:
            client.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        if self.log is not None:
            self.log.close()
        self.proc, self.log = None, None

    def drop_all(self, tries: int = 4) -> None:
        """Remove every collection, so that each test starts on an empty server."""
        for attempt in range(tries):
            try:
                return self._drop_all()
            except Exception:  # noqa: BLE001 - pymilvus's connection error; the last one is raised
                # The first call after a long pause in the session (app tests in between) can meet a channel
                # the server sent away and fail to connect; a fresh client a moment later reconnects.
                if attempt == tries - 1:
                    raise
                time.sleep(1 + attempt)

    def _drop_all(self) -> None:
        from pymilvus import MilvusClient

        from rag.store.milvus_client import _GRPC_OPTIONS

        # The app's channel options: pymilvus's own keep-alive pings get its cached channel sent away
        # by the server ("too many pings") when tests run slowly on a busy machine.
        client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", grpc_options=_GRPC_OPTIONS)
        try:
            for name in client.list_collections():
                client.drop_collection(name)
        finally:
            client.close()
