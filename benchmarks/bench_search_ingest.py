"""Search latency while a long ingest writes to the same collection, against the same searches idle.

    python benchmarks/bench_search_ingest.py [--size 10000] [--docs 400] [--queries 200] [--ingest-in thread|process]

The collection starts with `--size` chunks (built as `bench_search.py` builds them, and reused). Idle:
every query is searched once (hybrid, k = 4, query embedding included). Then an ingest of `--docs`
SciFact abstracts with real embedding runs in another thread of the same process (as the app runs it)
or in another process (as the CLI beside a running app), and the same queries are searched in a loop
until it ends. The ingest's embedding shares the machine's cores with the searches. Target: p50 during
the ingest <= 3 x idle p50.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search  # noqa: E402
import scifact  # noqa: E402

from rag.collection import Collection  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.settings import load_settings  # noqa: E402

CHILD = """
import sys, json
sys.path.insert(0, sys.argv[1])
from rag.collection import Collection
from rag.documents import Document
from rag.settings import load_settings
coll = Collection.open(load_settings(environ={}, index_dir=sys.argv[2], collection=sys.argv[3]))
docs = [Document(**d) for d in json.load(open(sys.argv[4]))]
coll.embedder.embed(["warm up"])
print("ready", flush=True)
report = coll.add_documents(docs)
print(report.chunks_added, flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-in", choices=["thread", "process"], default="thread")
    parser.add_argument("--index", default=str(ROOT / "indexes" / "bench-search"))
    args = parser.parse_args()
    scifact.require_data()
    print(bench_search.load_note())
    queries = list(scifact.load_queries().values())[: args.queries]
    base = bench_search.build(args.index, args.size)
    name = base.name
    base.store.close()
    coll = Collection.open(load_settings(environ={}, index_dir=args.index, collection=name))
    for q in queries[:10]:
        coll.search(q, 4, "hybrid")
    idle = [bench_search.timed(lambda q: coll.search(q, 4, "hybrid"), q) for q in queries]

    stamp = time.time_ns()
    docs = [Document(f"ingest-{stamp}-{d['_id']}", f"{d['title']}\n\n{d['text']}", d["title"])
            for d in scifact.load_corpus()[: args.docs]]
    done = threading.Event()
    result = {}
    if args.ingest_in == "thread":
        coll.embedder.embed(["warm up"])

        def ingest():
            started = time.perf_counter()
            result["chunks"] = coll.add_documents(docs).chunks_added
            result["seconds"] = time.perf_counter() - started
            done.set()

        worker = threading.Thread(target=ingest)
    else:
        import json
        import tempfile

        spec = Path(tempfile.mkstemp(suffix=".json")[1])
        spec.write_text(json.dumps([{"source": d.source, "text": d.text, "title": d.title} for d in docs]))
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), args.index, name, str(spec)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"

        def ingest():
            started = time.perf_counter()
            result["chunks"] = int(child.stdout.readline())
            child.wait()
            result["seconds"] = time.perf_counter() - started
            spec.unlink()
            done.set()

        worker = threading.Thread(target=ingest)
    worker.start()
    busy, i = [], 0
    while not done.is_set():
        busy.append(bench_search.timed(lambda q: coll.search(q, 4, "hybrid"), queries[i % len(queries)]))
        i += 1
    worker.join()
    idle50, idle95 = bench_search.percentiles(idle)
    busy50, busy95 = bench_search.percentiles(busy)
    print(f"collection of {args.size:,} chunks; ingest of {len(docs)} documents ({result['chunks']} chunks) in "
          f"a {args.ingest_in}, {result['seconds']:.1f} s; {len(busy)} searches during it\n")
    print("| hybrid k=4 search | p50 ms | p95 ms | max ms | ratio p50 | target |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print(f"| idle | {idle50:.1f} | {idle95:.1f} | {max(idle):.1f} | 1.00 | reference |")
    print(f"| during the ingest | {busy50:.1f} | {busy95:.1f} | {max(busy):.1f} | {busy50 / idle50:.2f} | <= 3.00 |")
    with coll.store.writer():
        for d in docs:
            coll.store.delete_document(d.source)  # leave the shared base collection as it was
    coll.store.checkpoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
