"""Search latency p50/p95 per mode at 10k and 100k chunks, through `Collection.search`.

    python benchmarks/bench_search.py [--sizes 10000 100000] [--queries 200]

Chunk texts are real: SciFact abstracts split at 500 characters, repeated under new sources to reach
the size. Embedding 100k chunks on a 2-core machine takes most of an hour, so stored vectors are
random unit vectors (FAISS's cost does not depend on their values); each query is embedded for real
by the model, as users' queries are. Target: p50 <= 20 ms at 100k, hybrid included. The bare
`IndexFlatIP.search` and FTS5 `MATCH` timings are printed beside as the floor it is measured against.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scifact  # noqa: E402

from rag.chunking import split_document  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.retrieval import MODES  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from rag.store import keyword_query  # noqa: E402


def build(index_dir: str, size: int, seed: int = 0) -> Collection:
    coll = Collection.open(load_settings(environ={}, index_dir=index_dir, collection=f"synthetic-{size}"))
    rng = np.random.default_rng(seed)
    corpus = scifact.load_corpus()
    made, copy = coll.store.count_chunks(), 0
    with coll.store.writer():
        while made < size:
            for d in corpus:
                doc = Document(f"{d['_id']}#{copy}", f"{d['title']}\n\n{d['text']}", d["title"])
                chunks = split_document(doc)[: size - made]
                vectors = rng.standard_normal((len(chunks), coll.store.dimension)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                made += coll.store.put_document(doc, chunks, vectors)
                if made >= size:
                    break
            copy += 1
    return coll


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def time_calls(fn, items) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def bare_floor(coll: Collection, queries: list[str]) -> dict[str, list[float]]:
    """Time the libraries alone: FAISS flat search, and an FTS5 query ranked by bm25."""
    import faiss

    ids, vectors = coll.store.vectors()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    qvecs = coll.embedder.embed(queries)
    db = coll.store._db
    sql = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT 4"
    return {
        "faiss IndexFlatIP.search": time_calls(lambda v: flat.search(v.reshape(1, -1), 4), qvecs),
        "FTS5 MATCH ... ORDER BY rank": time_calls(lambda q: db.execute(sql, (keyword_query(q),)).fetchall(), queries),
        "embed query (model)": time_calls(lambda q: coll.embedder.embed_query(q), queries),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index", help="keep the built collections here and reuse them")
    args = parser.parse_args()
    scifact.require_data()
    queries = list(scifact.load_queries().values())[: args.queries]
    index_dir = args.index or tempfile.mkdtemp(prefix="search-bench-")
    print("| chunks | what | p50 ms | p95 ms | target |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        started = time.perf_counter()
        coll = build(index_dir, size)
        print(f"<!-- built {coll.store.count_chunks()} chunks in {time.perf_counter() - started:.0f} s -->")
        for q in queries[:10]:  # warm-up: model, index load, page cache
            coll.search(q, 4, "hybrid")
        for mode in MODES:
            p50, p95 = percentiles(time_calls(lambda q: coll.search(q, 4, mode), queries))
            target = "p50 <= 20" if size >= 100_000 else ""
            print(f"| {size:,} | search k=4 mode={mode} | {p50:.1f} | {p95:.1f} | {target} |")
        for name, samples in bare_floor(coll, queries).items():
            p50, p95 = percentiles(samples)
            print(f"| {size:,} | bare: {name} | {p50:.1f} | {p95:.1f} | reference |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
