"""Kill -9 an ingesting process at random moments, many times in a row, and count what survives.

    python benchmarks/bench_faults.py [--kills 20] [--docs 40] [--seed 0] [--store URI | --milvus-lite]

Each round starts a child that re-ingests every document in a new version (so each write replaces
an old one) and prints each source as soon as its transaction has committed; the child is killed
with SIGKILL at a random point: once a random number of documents has committed, plus a random
fraction of a second (so the kill lands while embedding, inside a transaction or between them,
however fast the machine is). After every kill the collection
must open, pass `Store.integrity_problems() == []`, hold every document the child reported finished
(in the version it wrote) and every other one in its previous or new version, whole. The child's
stdout reaches us after the commit, so "finished" never over-reports.

`--store milvus://host:port` runs the same rounds on a Milvus store (the collection "default" there is
replaced); `--milvus-lite` starts a milvus-lite server on 127.0.0.1 for the run.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.chunking import split_document  # noqa: E402
from rag.documents import Document  # noqa: E402

CHUNK_SIZE = 50


def make_doc(i: int, version: int) -> Document:
    """Document `i` as written in round `version`: its words, and so its hash, change every round."""
    words = " ".join(f"v{version}w{i}-{j}" for j in range(25 * (i % 5 + 1)))
    return Document(f"mem://doc{i}", words, f"Doc {i}")


# -- the child ----------------------------------------------------------------------------------


def _settings(index_dir, store: str = ""):
    from rag.settings import load_settings

    return load_settings(environ={}, index_dir=str(index_dir), store=store)


def child(index_dir: str, version: int, docs: int, store: str = "") -> None:
    """Ingest every document in `version`, printing `done <source>` after each commit."""
    import rag.collection as collection

    collection.EMBED_GROUP = 8  # write often, so kills land between and inside transactions
    coll = collection.Collection.open(_settings(index_dir, store))
    coll.embedder.embed(["warm up"])

    def progress(stage: str, done: int, total: int, source: str | None) -> None:
        if stage == "index":
            print(f"done {source}", flush=True)

    print("ready", flush=True)
    coll.add_documents((make_doc(i, version) for i in range(docs)), progress, chunk_size=CHUNK_SIZE)
    print("finished", flush=True)


# -- the parent ---------------------------------------------------------------------------------


@dataclass
class Round:
    version: int
    finished: list[str] = field(default_factory=list)  # sources the child reported committed
    completed: bool = False  # the child ended its ingest before the kill
    seconds: float = 0.0  # from the kill point (or "ready", unkilled) to the end of the ingest or the kill
    problems: list[str] = field(default_factory=list)  # integrity and lost-document findings


@dataclass
class Kill:
    """When to kill: `delay` seconds after the child has committed `after_docs` documents."""

    after_docs: int
    delay: float


def run_child(index_dir: Path, version: int, docs: int, kill: Kill | None, store: str = "") -> Round:
    """Run one child and kill it as `kill` says (None: let it finish)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(index_dir), str(version), str(docs),
                             *(["--store", store] if store else [])], stdout=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()  # the child is ready and, when killing, has committed enough documents
    ended: list[float] = []
    wanted = kill.after_docs if kill else 0

    def read() -> None:
        done = 0
        for line in proc.stdout:
            lines.append(line.strip())
            done += line.startswith("done ")
            if line.strip() == "finished":
                ended.append(time.perf_counter())
            if "ready" in lines and done >= wanted:
                ready.set()
        ready.set()  # the child ended (or died) first

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=600)
        started = time.perf_counter()
        if kill is None:
            proc.wait(timeout=600)
        else:
            time.sleep(kill.delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        stopped = time.perf_counter()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    seconds = (ended[0] if ended else stopped) - started
    result = Round(version)
    result.finished = [line.split(" ", 1)[1] for line in lines if line.startswith("done ")]
    result.completed = "finished" in lines
    result.seconds = seconds
    return result


def check(index_dir: Path, result: Round, expected: dict[str, str], docs: int, store: str = "") -> dict[str, str]:
    """Open the collection and record problems in `result`; return source -> hash as stored now."""
    from rag.collection import Collection

    coll = Collection.open(_settings(index_dir, store))
    try:
        result.problems += coll.store.integrity_problems()
        stored = {d.source: d for d in coll.documents()}
        for source in result.finished:
            expected[source] = make_doc(int(source.removeprefix("mem://doc")), result.version).content_hash
        for i in range(docs):
            source = make_doc(i, 0).source
            new = make_doc(i, result.version).content_hash
            info = stored.get(source)
            if source in expected and info is None:
                result.problems.append(f"{source} lost")
            elif info is not None and info.content_hash not in (expected.get(source), new):
                result.problems.append(f"{source} holds neither its last finished version nor the new one")
            elif info is not None and info.chunks != len(split_document(coll.document(source), CHUNK_SIZE)):
                result.problems.append(f"{source} has {info.chunks} chunks, not all of its own")
        return {source: info.content_hash for source, info in stored.items()}
    finally:
        coll.store.close()


def kill_rounds(index_dir: Path, kills: list[Kill], docs: int, log=print, store: str = "") -> list[Round]:
    """Kill one child per entry; documents a killed child committed are what the next round expects."""
    from rag.store.locate import collection_exists

    expected: dict[str, str] = {}
    if collection_exists(_settings(index_dir, store), "default"):
        expected = check(index_dir, Round(0), {}, docs, store)
    rounds = []
    for n, kill in enumerate(kills, start=1):
        result = run_child(index_dir, n, docs, kill, store)
        now = check(index_dir, result, expected, docs, store)
        expected.update(now)  # committed but killed before it could say so is still committed
        rounds.append(result)
        where = "after the ingest ended" if result.completed else f"after {len(result.finished)}/{docs} documents"
        log(f"kill {n}: {kill.delay:.2f} s after document {kill.after_docs}, {where}; {len(now)} documents stored; "
            f"problems: {result.problems or 'none'}")
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default="", help="a Milvus store to run on (its collection 'default' is replaced)")
    parser.add_argument("--milvus-lite", action="store_true", help="start a milvus-lite server on 127.0.0.1 for it")
    parser.add_argument("--child", nargs=3, metavar=("INDEX", "VERSION", "DOCS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.store)
        return 0
    import tempfile

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        server = None
        if args.milvus_lite:
            from tests.milvus_server import MilvusLiteServer

            server = MilvusLiteServer(Path(tmp) / "milvus").start()
            args.store = server.uri
        try:
            first = run_child(index_dir, 0, args.docs, None, args.store)  # every document in: later writes replace
            print(f"first ingest: {len(first.finished)} documents unkilled in {first.seconds:.1f} s", flush=True)
            gap = first.seconds / max(1, args.docs)  # about one document's time
            kills = [Kill(rng.randrange(args.docs), rng.uniform(0, 2 * gap)) for _ in range(args.kills)]
            rounds = kill_rounds(index_dir, kills, args.docs, lambda line: print(line, flush=True), args.store)
        finally:
            if server is not None:
                server.kill()
    survived = sum(not r.problems for r in rounds)
    lost = sum(p.endswith(" lost") for r in rounds for p in r.problems)
    mid = sum(not r.completed for r in rounds)
    committed = sum(len(r.finished) for r in rounds)
    print(f"\n{survived}/{len(rounds)} kills survived, {lost} documents lost "
          f"({mid} kills landed mid-ingest; {committed} document commits reported before the kills)")
    return 0 if survived == len(rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
