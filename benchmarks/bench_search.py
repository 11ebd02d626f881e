"""Search latency p50/p95 per mode through `Collection.search`, against the bare libraries in the same run;
and dense recall@10 of the approximate (HNSW) index against exact search on real vectors.

    python benchmarks/bench_search.py [--sizes 10000 100000 1000000] [--queries 200] [--index DIR]
    python benchmarks/bench_search.py --recall [--recall-chunk-size 500]

Latency: chunk texts are real (SciFact abstracts split at 500 characters, repeated under new sources to
reach the size); the stored vectors are random unit vectors drawn with a fixed seed (numpy
`default_rng(0).standard_normal`, normalised), because embedding a million chunks on 2 cores takes
most of a day; an exact search's cost does not depend on the values, and a graph's depends on them
little, but its recall does, so recall is measured separately on real vectors. Every query is
embedded for real, as users' queries are, and k = 4. The reference ("bare") is the libraries doing the
same work alone: the query embedding, an exact `IndexFlatIP.search` over every vector, and an FTS5
`MATCH … ORDER BY rank LIMIT 4` over the same texts (a table of its own, built beside the collection),
each timed per query and summed. Built collections are kept under `--index` (default
`indexes/bench-search`, git ignores it) and reused. Target: hybrid p50 <= 15 ms at 1,000,000 chunks.

Recall: SciFact's corpus embedded for real by the model (`bench_retrieval.py` builds the same
collection and reuses it), the HNSW index built as the store builds it for a large collection, and
each SciFact query's top 10 compared with exact search. Target: >= 0.98.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scifact  # noqa: E402

from rag.chunking import split_document  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.retrieval import MODES  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from rag.store import query_words  # noqa: E402
from rag.store import vector_index  # noqa: E402


def build(index_dir: str, size: int, seed: int = 0) -> Collection:
    """A collection of exactly `size` chunks of real text with random unit vectors, reused when built."""
    coll = Collection.open(load_settings(environ={}, index_dir=index_dir, collection=f"synthetic-{size}"))
    made = coll.store.count_chunks()
    if made >= size:
        return coll
    rng = np.random.default_rng(seed + made)
    corpus = scifact.load_corpus()
    copy = made // 24_000
    started = time.perf_counter()
    while made < size:
        with coll.store.writer():
            for d in corpus:
                doc = Document(f"{d['_id']}#{copy}", f"{d['title']}\n\n{d['text']}", d["title"])
                if coll.store.find(doc.source):
                    continue
                chunks = split_document(doc)[: size - made]
                vectors = rng.standard_normal((len(chunks), coll.store.dimension)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                made += coll.store.put_document(doc, chunks, vectors, "chars:500/0")
                if made >= size:
                    break
        copy += 1
        print(f"<!-- {made:,} chunks written, {time.perf_counter() - started:.0f} s -->", file=sys.stderr, flush=True)
    coll.store.checkpoint()
    return coll


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def timed(fn, item) -> float:
    started = time.perf_counter()
    fn(item)
    return (time.perf_counter() - started) * 1000


def fts5_reference(coll: Collection, file: Path) -> sqlite3.Connection:
    """An FTS5 table (porter) over the collection's chunk texts, built once beside it."""
    db = sqlite3.connect(file, isolation_level=None)
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')")
    if db.execute("SELECT COUNT(*) FROM fts").fetchone()[0] < coll.store.count_chunks():
        started = time.perf_counter()
        db.execute("DELETE FROM fts")
        db.execute("BEGIN")
        rows = coll.store._reader().execute("SELECT id, text FROM chunks")
        while batch := rows.fetchmany(10_000):
            db.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)", batch)
        db.execute("COMMIT")
        print(f"<!-- FTS5 reference table built in {time.perf_counter() - started:.0f} s -->", flush=True)
    return db


def fts5_query(text: str) -> str:
    return " OR ".join(f'"{w}"' for w in query_words(text))


def bare(coll: Collection, queries: list[str], fts_file: Path) -> dict[str, list[float]]:
    """The libraries alone, per query: embedding, exact FAISS flat search, FTS5 top 4; and their sum."""
    import faiss

    ids, vectors = coll.store.vectors()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    del vectors
    db = fts5_reference(coll, fts_file)
    sql = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT 4"
    out = {"embed query": [], "FAISS IndexFlatIP.search (exact)": [], "FTS5 MATCH ORDER BY rank LIMIT 4": []}
    for q in queries:
        started = time.perf_counter()
        vector = coll.embedder.embed_query(q)
        out["embed query"].append((time.perf_counter() - started) * 1000)
        out["FAISS IndexFlatIP.search (exact)"].append(timed(lambda v: flat.search(v.reshape(1, -1), 4), vector))
        out["FTS5 MATCH ORDER BY rank LIMIT 4"].append(timed(lambda s: db.execute(sql, (fts5_query(s),)).fetchall(), q))
    out["sum: embed + exact flat + FTS5 (hybrid reference)"] = [sum(parts) for parts in zip(*out.values())]
    return out


def latency(args) -> None:
    queries = list(scifact.load_queries().values())[: args.queries]
    print("| chunks | what | p50 ms | p95 ms | note |")
    print("| ---: | --- | ---: | ---: | --- |")
    for size in args.sizes:
        started = time.perf_counter()
        coll = build(args.index, size)
        built = time.perf_counter() - started
        opened = time.perf_counter()
        coll.search(queries[0], 4, "hybrid")  # loads the model and the vector index (or rebuilds it)
        kind = "HNSW" if vector_index.is_graph(coll.store._vectors._index) else "exact flat"
        print(f"<!-- {coll.store.count_chunks():,} chunks ready in {built:.0f} s; first search (model and index load) "
              f"{time.perf_counter() - opened:.1f} s; index {kind} -->")
        for q in queries[:10]:  # warm-up: page cache, sessions
            coll.search(q, 4, "hybrid")
        for mode in MODES:
            p50, p95 = percentiles([timed(lambda q: coll.search(q, 4, mode), q) for q in queries])
            note = "target p50 <= 15" if mode == "hybrid" and size >= 1_000_000 else ""
            print(f"| {size:,} | search k=4 mode={mode} ({kind}) | {p50:.1f} | {p95:.1f} | {note} |", flush=True)
        for name, samples in bare(coll, queries, Path(args.index) / f"synthetic-{size}.fts5.sqlite").items():
            p50, p95 = percentiles(samples)
            print(f"| {size:,} | bare: {name} | {p50:.1f} | {p95:.1f} | reference |", flush=True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        db_mb = sum(f.stat().st_size for f in (Path(args.index) / f"synthetic-{size}").glob("*")) / 1e6
        print(f"| {size:,} | memory: peak RSS of this process {rss:,.0f} MB; collection on disk {db_mb:,.0f} MB "
              f"| | | |", flush=True)
        coll.store.close()


def load_note() -> str:
    """The machine's load when the run starts, as a comment beside the figures: timings taken beside
    other work are higher than idle ones."""
    loads = os.getloadavg()
    state = "idle" if loads[0] < 1.0 else "under load: timings are higher than on an idle machine"
    return f"<!-- load average {' '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores at the start ({state}) -->"


def recall(args) -> None:
    import faiss

    settings = load_settings(environ={}, index_dir=args.index, collection=f"scifact-{args.recall_chunk_size}",
                             chunk_size=args.recall_chunk_size)
    coll = Collection.open(settings)
    docs = [Document(d["_id"], f"{d['title']}\n\n{d['text']}", d["title"]) for d in scifact.load_corpus()]
    started = time.perf_counter()
    coll.add_documents(docs)
    ids, vectors = coll.store.vectors()
    print(f"<!-- {len(ids):,} real vectors (chunk size {args.recall_chunk_size}) ready in "
          f"{time.perf_counter() - started:.0f} s -->")
    queries = list(scifact.load_queries().values())
    qvecs = coll.embedder.embed(queries)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(qvecs, 10)
    saved = vector_index.EXACT_UP_TO
    vector_index.EXACT_UP_TO = 0  # the HNSW graph the store builds above the threshold, at this size
    try:
        started = time.perf_counter()
        graph = vector_index.build_index(vectors.shape[1], np.arange(len(ids), dtype=np.int64), vectors)
        built = time.perf_counter() - started
    finally:
        vector_index.EXACT_UP_TO = saved
    hnsw = faiss.downcast_index(graph.index)
    print(f"{len(queries)} SciFact queries, {len(ids):,} vectors, HNSW M={vector_index.HNSW_M} "
          f"efConstruction={vector_index.EF_CONSTRUCTION}, built in {built:.1f} s")
    print("| efSearch | recall@10 vs exact | p50 ms per query |")
    print("| ---: | ---: | ---: |")
    faiss.omp_set_num_threads(1)
    for ef in sorted({16, 32, 64, vector_index.EF_SEARCH, 256}):
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        times, found = [], []
        for q in qvecs:
            started = time.perf_counter()
            found.append(graph.search(q.reshape(1, -1), 10, params=params)[1][0])
            times.append((time.perf_counter() - started) * 1000)
        hit = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
        mark = " (the store's setting; target >= 0.98)" if ef == vector_index.EF_SEARCH else ""
        print(f"| {ef}{mark} | {hit:.4f} | {statistics.median(times):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index", default=str(ROOT / "indexes" / "bench-search"),
                        help="where built collections are kept and reused (default: indexes/bench-search)")
    parser.add_argument("--recall", action="store_true", help="measure HNSW recall@10 on real SciFact vectors")
    parser.add_argument("--recall-chunk-size", type=int, default=500)
    args = parser.parse_args()
    scifact.require_data()
    print(load_note())
    recall(args) if args.recall else latency(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
