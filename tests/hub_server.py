"""A Hugging Face Hub-shaped file server on 127.0.0.1 for download tests.

It answers the hub's `resolve` URLs as the hub does for large files: HEAD is a redirect carrying the
LFS SHA-256 (`X-Linked-Etag`) and size (`X-Linked-Size`); GET serves the bytes and honours Range.
Files are real GGUF models from disk. Switches make it misbehave the ways the real one can: cut the
connection part-way once, serve damaged bytes, refuse (401) or not know (404) a file, go slowly.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class HubFile:
    data: bytes
    sha256: str = ""
    cut_at: float | None = None  # the first GET ends after this fraction of the file, connection closed
    damaged: bool = False  # the bytes served differ from the hash announced
    status: int = 200  # 401 (gated) or 404 (missing) refuse the file outright
    bytes_per_s: int = 0  # throttled when set
    announced_size: int = 0  # HEAD's X-Linked-Size when set (a file larger than the disk's free space)

    def __post_init__(self):
        self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class LocalHub:
    """`hub.serve(repo, filename, path)` then `hub.endpoint` is what the download code is given."""

    files: dict[str, HubFile] = field(default_factory=dict)
    gets: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header) of each GET
    _httpd: ThreadingHTTPServer | None = None

    def serve(self, repo: str, filename: str, source: Path | bytes, **switches) -> HubFile:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        hub_file = self.files[f"/{repo}/resolve/main/{filename}"] = HubFile(data, **switches)
        return hub_file

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "LocalHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub_file = hub.files.get(self.path)
                if hub_file is None or hub_file.status != 200:
                    return self._refuse(hub_file)
                self.send_response(302)  # the hub redirects a large file to its CDN
                self.send_header("X-Linked-Etag", f'"{hub_file.sha256}"')
                self.send_header("X-Linked-Size", str(hub_file.announced_size or len(hub_file.data)))
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                hub_file = hub.files.get(self.path)
                hub.gets.append((self.path, self.headers.get("Range")))
                if hub_file is None or hub_file.status != 200:
                    return self._refuse(hub_file)
                data = bytearray(hub_file.data)
                if hub_file.damaged:
                    data[len(data) // 2] ^= 0xFF
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                end = len(data)
                if hub_file.cut_at is not None:
                    end, hub_file.cut_at = int(len(data) * hub_file.cut_at), None  # once
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))  # promises the rest, as a cut does
                self.end_headers()
                self._send(bytes(data[start:end]), hub_file.bytes_per_s)
                if end < len(data):
                    self.close_connection = True

            def _send(self, body: bytes, rate: int) -> None:
                step = 64 << 10
                for i in range(0, len(body), step):
                    try:
                        self.wfile.write(body[i:i + step])
                    except OSError:  # the client went away (a cancel)
                        return
                    if rate:
                        time.sleep(step / rate)

            def _refuse(self, hub_file: HubFile | None):
                status = 404 if hub_file is None else hub_file.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
