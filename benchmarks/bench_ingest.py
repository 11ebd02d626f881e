"""Ingest throughput of the whole pipeline (chunk, embed, SQLite + FTS5, FAISS, disk) in chunks/s,
against a bare `SentenceTransformer.encode` of the same chunks, alternating in the same run.

    python benchmarks/bench_ingest.py [--docs 600] [--rounds 3]

Target: pipeline >= 0.9 x bare encode. Documents are SciFact abstracts (title + text).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scifact  # noqa: E402

from rag.chunking import split_document  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.embedding import resolve_model_path  # noqa: E402
from rag.settings import DEFAULT_EMBEDDING_MODEL, load_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scifact.require_data()
    from sentence_transformers import SentenceTransformer

    docs = [Document(d["_id"], f"{d['title']}\n\n{d['text']}", d["title"]) for d in scifact.load_corpus()[: args.docs]]
    texts = [c.text for d in docs for c in split_document(d)]
    bare_model = SentenceTransformer(resolve_model_path(DEFAULT_EMBEDDING_MODEL), device="cpu")
    bare_model.encode(texts[:64], batch_size=64)  # warm-up
    bare, ours = [], []
    for round_ in range(args.rounds):
        started = time.perf_counter()
        bare_model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        bare.append(len(texts) / (time.perf_counter() - started))

        with tempfile.TemporaryDirectory() as tmp:
            coll = Collection.open(load_settings(environ={}, index_dir=tmp))
            coll.embedder.embed(texts[:64])  # the model is loaded once per process, as in the app
            started = time.perf_counter()
            report = coll.add_documents(docs)
            ours.append(report.chunks_added / (time.perf_counter() - started))
            coll.store.close()
        print(f"round {round_ + 1}: bare {bare[-1]:.1f} chunks/s, pipeline {ours[-1]:.1f} chunks/s", flush=True)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"\n{len(docs)} documents, {len(texts)} chunks, {args.rounds} alternating rounds (median)\n")
    print("| what | chunks/s (median) | ratio | target |")
    print("| --- | --- | --- | --- |")
    print(f"| bare SentenceTransformer.encode | {statistics.median(bare):.1f} | 1.00 | reference |")
    print(f"| rag pipeline (Collection.add_documents) | {statistics.median(ours):.1f} | {ratio:.2f} | >= 0.90 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
