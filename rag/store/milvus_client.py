"""The Milvus connection: where the store lives (`RAG_STORE`), the token, retries, errors in one sentence.

`milvus://host:port` is a server over plain gRPC, `milvus+https://host[:port]` one over TLS (a Milvus
cluster, Zilliz Cloud), `milvus+lite:///path/name.db` the embedded engine in this process (one process
per data directory). pymilvus is imported only when a Milvus address is used.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from rag.errors import RagError
from rag.settings import read_secret

# A call that may be repeated safely (reads, upserts, deletes) is tried again after each of these pauses.
BACKOFF = (0.25, 0.75, 1.5)  # the pauses between tries: four tries in all, 2.5 s
# Loading a collection right after a restart waits longer: the server reads its files back first, and on a
# busy machine that took more than 2.5 s (milvus-lite kept answering "No data left in file").
PATIENT_BACKOFF = BACKOFF + (3.0, 5.0, 8.0)  # 18.5 s in all
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
# gRPC waits up to two minutes between reconnects to a server that went away; a restarted server should
# answer the next search, so it tries again within a second. Keep-alive pings only during calls: an idle
# app pinging every 10 s is sent away by servers that allow one ping in 5 minutes (milvus-lite's "too_many_pings").
_GRPC_OPTIONS = {"grpc.initial_reconnect_backoff_ms": 200, "grpc.min_reconnect_backoff_ms": 200,
                 "grpc.max_reconnect_backoff_ms": 1000, "grpc.keepalive_permit_without_calls": 0}
_UNREACHABLE = {2}  # MilvusException's code for "could not connect"
_AUTH_WORDS = ("auth", "token", "credential", "password", "unauthenticated", "permission denied")

T = TypeVar("T")


def is_store_uri(text: str) -> bool:
    """Whether `text` names a store on a Milvus engine (else it is a directory for the local store)."""
    return "://" in text


@dataclass(frozen=True)
class MilvusAddress:
    """What pymilvus is given: the URI it understands, and what to call the place in messages."""

    uri: str
    shown: str
    embedded: bool = False


def parse_address(store: str) -> MilvusAddress:
    """The pymilvus URI of a `milvus://`, `milvus+https://` or `milvus+lite://` address; RagError otherwise."""
    scheme, _, rest = store.partition("://")
    if scheme == "milvus+lite":
        path = Path(rest).expanduser()
        if path.suffix != ".db":
            raise RagError(f"The embedded Milvus path {str(path)!r} must end in .db (a directory Milvus creates); "
                           "for example milvus+lite:///data/notebook.db.")
        return MilvusAddress(str(path), store, embedded=True)
    if scheme not in ("milvus", "milvus+https"):
        raise RagError(f"Unknown store address {store!r}; use a directory, milvus://host:port, "
                       "milvus+https://host[:port] or milvus+lite:///path/name.db.")
    host = rest.rstrip("/")
    if not host or "/" in host:
        raise RagError(f"The store address {store!r} names no server; write it as milvus://host:port.")
    if scheme == "milvus":
        return MilvusAddress(f"http://{host}" if ":" in host else f"http://{host}:19530", store)
    return MilvusAddress(f"https://{host}", store)


def read_token(settings) -> str:
    """The token from RAG_MILVUS_TOKEN, else the first line of the token file, else none ("user:password"
    for a cluster with authentication, an API key for Zilliz Cloud)."""
    return read_secret(settings.milvus_token, settings.milvus_token_file, "a Milvus token")


def _quiet_pymilvus() -> None:
    # pymilvus logs every failed call with its traceback; this module turns them into one sentence instead.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


def explain(address: MilvusAddress, exc: BaseException) -> RagError:
    """A pymilvus or gRPC error as one sentence naming the server and what to do."""
    code = getattr(exc, "code", None)
    message = str(getattr(exc, "message", "") or exc)
    lowered = message.lower()
    if any(word in lowered for word in _AUTH_WORDS) or code in (1800, 16):
        return RagError(f"The Milvus server at {address.shown} refused the token; check RAG_MILVUS_TOKEN or the "
                        "token file (user:password, or the cluster's API key).")
    if unreachable(exc):
        return RagError(f"The Milvus server at {address.shown} cannot be reached; start it or check RAG_STORE "
                        "(searches work again as soon as it answers).")
    reason = message.strip() or type(exc).__name__
    return RagError(f"The Milvus server at {address.shown} refused the request ({reason}).")


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the server could not be reached (worth retrying), not that it refused the call."""
    code = getattr(exc, "code", None)
    text = str(getattr(exc, "message", "") or exc).lower()
    if code in _UNREACHABLE or "unavailable" in text or "deadline" in text or "connection refused" in text:
        return True
    return isinstance(exc, (ConnectionError, TimeoutError))


def released(exc: BaseException) -> bool:
    """Whether `exc` says the collection is not loaded (as after the server restarted)."""
    text = str(getattr(exc, "message", "") or exc).lower()
    return getattr(exc, "code", None) == 101 or "not loaded" in text or "call load()" in text


class Connection:
    """One pymilvus client per address and token, shared by every store in the process; calls retried."""

    _clients: dict[tuple[str, str], object] = {}
    _lock = threading.Lock()

    def __init__(self, address: MilvusAddress, token: str = ""):
        self.address = address
        self.token = token
        self.client = self._connect()

    def _connect(self):
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise RagError("A Milvus store needs pymilvus; install it with pip install pymilvus milvus-lite.") from None
        _quiet_pymilvus()
        key = (self.address.uri, self.token)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self.retry(lambda: MilvusClient(uri=self.address.uri, token=self.token,
                                                         timeout=CONNECT_TIMEOUT, grpc_options=_GRPC_OPTIONS))
                self._clients[key] = client
            return client

    def retry(self, call: Callable[[], T], reload: Callable[[], None] | None = None, patient: bool = False) -> T:
        """`call()` with bounded retries while the server is unreachable; any failure as a RagError.

        A server that restarted has its collections released: `reload` loads them, and the call is repeated.
        `patient` retries any failure, within longer pauses: loading a collection right after a restart
        can fail while the server is still reading its files back (milvus-lite: "No data left in file").
        """
        pauses = list(PATIENT_BACKOFF if patient else BACKOFF)
        while True:
            try:
                return call()
            except RagError:
                raise
            except Exception as exc:  # pymilvus raises its own and gRPC's errors
                if reload is not None and released(exc):
                    reload()
                    reload = None  # once: a collection that will not stay loaded is an error to report
                    continue
                if not pauses or not (patient or unreachable(exc)):
                    raise explain(self.address, exc) from None
                time.sleep(pauses.pop(0))

    def once(self, call: Callable[[], T]) -> T:
        """`call()` without retries (an insert repeated after a lost reply would add its rows twice)."""
        try:
            return call()
        except Exception as exc:
            raise explain(self.address, exc) from None


def connect(settings) -> Connection:
    """The connection to the Milvus engine `settings.store` names."""
    return Connection(parse_address(settings.store), read_token(settings))
