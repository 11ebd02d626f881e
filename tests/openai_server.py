"""Servers for the openai backend's tests, all on 127.0.0.1: llama-cpp-python's real OpenAI-compatible
server on the default GGUF, and a scripted one for faults a real server cannot be made to produce
on demand (a 500, a silent socket) that records what it was asked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

API_KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` in a child process; `kill()` takes it away mid-chat."""

    def __init__(self, model: Path, port: int | None = None, n_ctx: int = 2048, api_key: str = API_KEY,
                 extra: tuple[str, ...] = ()):
        self.model, self.port, self.n_ctx, self.api_key = model, port or free_port(), n_ctx, api_key
        self.extra = extra  # more server flags: ("--embedding", "True", "--model_alias", NAME)
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> "LlamaServer":
        import httpx

        # Without --interrupt_requests False a second request silently cuts the first one's stream.
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", "2",
               "--interrupt_requests", "False", "--api_key", self.api_key, "--seed", "0", "--verbose", "False",
               *self.extra]
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one stalls it.
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read()[-2000:].decode(errors='replace')}")
            try:
                r = httpx.get(self.base_url + "/models", headers={"Authorization": f"Bearer {self.api_key}"},
                              timeout=2)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError("llama_cpp.server did not start in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc is not None:
            self.log.close()
        self.proc = None


class ScriptedServer:
    """An OpenAI-shaped HTTP server whose /chat/completions does what `mode` says:
    'ok' streams `pieces`, '500' fails, 'silent' never answers, 'cut' streams two pieces then hangs
    up without ending the stream. It records each request body in `requests`."""

    def __init__(self, mode: str = "ok", pieces: tuple[str, ...] = ("Hello", " there", "!"),
                 model_id: str = "scripted"):
        self.mode, self.pieces, self.requests, self.model_id = mode, pieces, [], model_id
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": server.model_id, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.requests.append((self.path, body))
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                if server.mode == "500":
                    return self._json(500, {"error": {"message": "CUDA out of memory", "type": "server_error"}})
                if server.mode == "silent":
                    server.release.wait(30)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                pieces = server.pieces[:2] if server.mode == "cut" else server.pieces
                for piece in pieces:
                    self._chunk({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                if server.mode == "cut":
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # no final chunk: the body ends early
                    return
                self._chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._raw(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, event: dict) -> None:
                self._raw(f"data: {json.dumps(event)}\n\n".encode())

            def _raw(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, status: int, data: dict) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
