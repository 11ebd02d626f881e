"""SciFact nDCG@10 and search latency per mode on the Milvus store, next to the local store, in one run.

    python benchmarks/bench_milvus.py [--store milvus://host:port] [--queries N] [--docs N]

Both stores get the same documents through `Collection.add_documents` (the embeddings are computed once
and shared) and answer the same train queries at depth 100, as bench_retrieval.py does; a document's
score is its best chunk's. Latency is per `Collection.search` with the query vector given, so it is the
store's part (and the fusion's), not the embedding's. Without `--store`, a milvus-lite server is started
on 127.0.0.1: lite is a Python emulation of Milvus (brute-force vectors, BM25 statistics per segment), so
its latency and its BM25 scores are not a cluster's; its nDCG shows the store's logic, not Milvus's speed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scifact  # noqa: E402

from rag import retrieval  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from rag.store.locate import open_store  # noqa: E402

DEPTH = 100


def shared_embeddings(embedder) -> None:
    """Embed each text once for both stores: the benchmark is about the stores, not the model."""
    original, cache = embedder.embed_batch, {}

    def embed_batch(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, original(missing)))
        return np.stack([cache[t] for t in texts])

    embedder.embed_batch = embed_batch


def corpus(limit: int | None, qrels: dict, qids: list[str]) -> list[Document]:
    """The abstracts; with `limit`, every one relevant to the queries asked plus others drawn at random."""
    docs = scifact.load_corpus()
    if limit and limit < len(docs):
        needed = {d for q in qids for d in qrels[q]}
        rest = [d for d in docs if d["_id"] not in needed]
        random.Random(0).shuffle(rest)
        keep = needed | {d["_id"] for d in rest[: max(0, limit - len(needed))]}
        docs = [d for d in docs if d["_id"] in keep]
    return [Document(source=d["_id"], title=d["title"], text=f"{d['title']}\n\n{d['text']}") for d in docs]


def build(settings, embedder, docs: list[Document], label: str) -> Collection:
    store = open_store(settings, settings.collection, embedder.model_id, embedder.dimension)
    coll = Collection(settings, store, embedder)
    started = time.perf_counter()
    report = coll.add_documents(docs)
    print(f"{label}: {report.documents_added} added, {report.documents_unchanged} unchanged, "
          f"{store.count_chunks()} chunks, {time.perf_counter() - started:.1f} s", flush=True)
    return coll


def run(coll: Collection, queries: dict, qids: list[str], vectors: np.ndarray, mode: str):
    rankings, seconds = {}, []
    for q, vector in zip(qids, vectors):
        started = time.perf_counter()
        hits = coll.search(queries[q], DEPTH, mode, vector)
        seconds.append(time.perf_counter() - started)
        rankings[q] = scifact.doc_ranking([(h.source, h.score) for h in hits])
    return rankings, np.asarray(seconds) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="a Milvus store (default: a milvus-lite server started for the run)")
    parser.add_argument("--queries", type=int, help="the first N train queries only (default: all)")
    parser.add_argument("--docs", type=int, help="N abstracts: those the queries need, the rest at random")
    parser.add_argument("--modes", nargs="+", default=list(retrieval.MODES), choices=retrieval.MODES)
    args = parser.parse_args()
    scifact.require_data()
    queries, qrels = scifact.load_queries(), scifact.load_qrels("train")
    qids = sorted(qrels)[: args.queries] if args.queries else sorted(qrels)
    docs = corpus(args.docs, qrels, qids)
    with tempfile.TemporaryDirectory(prefix="bench-milvus-") as tmp:
        server = None
        if not args.store:
            from tests.milvus_server import MilvusLiteServer

            server = MilvusLiteServer(Path(tmp) / "milvus").start()
        store = args.store or server.uri
        try:
            local_settings = load_settings(index_dir=Path(tmp) / "index", collection="scifact", store="")
            coll = Collection.open(local_settings)
            embedder = coll.embedder
            shared_embeddings(embedder)
            stores = {"local": build(local_settings, embedder, docs, "local")}
            stores["milvus"] = build(local_settings.replace(store=store), embedder, docs, f"milvus ({store})")
            if server is not None:
                size = sum(f.stat().st_size for f in server.data_dir.rglob("*") if f.is_file())
                chunks = stores["milvus"].store.count_chunks()
                print(f"milvus-lite data on disk: {size / 2**20:.1f} MiB, {size / chunks / 1024:.2f} KiB per chunk")
            vectors = embedder.embed([queries[q] for q in qids])
            print(f"\nSciFact nDCG@10 over {len(qids)} train queries, {len(docs)} abstracts, depth {DEPTH}; latency "
                  f"per search in ms, query vector given ({'milvus-lite: an emulation' if server else store})\n")
            print("| mode | store | nDCG@10 | p50 ms | p95 ms |")
            print("| --- | --- | --- | --- | --- |")
            for mode in args.modes:
                for name, c in stores.items():
                    rankings, ms = run(c, queries, qids, vectors, mode)
                    ndcg = scifact.mean_ndcg(rankings, qrels, qids)
                    print(f"| {mode} | {name} | {ndcg:.4f} | {np.percentile(ms, 50):.1f} | "
                          f"{np.percentile(ms, 95):.1f} |", flush=True)
        finally:
            if server is not None:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
