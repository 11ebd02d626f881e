"""Ingest throughput of the whole pipeline (chunk, embed, SQLite, tantivy, FAISS, disk) in chunks/s,
against bare encodes of the same chunks, alternating in the same run: the ONNX Runtime int8 session the
pipeline embeds with by default (OnnxInt8Embedder.embed alone), and torch `SentenceTransformer.encode`.

    python benchmarks/bench_ingest.py [--docs 600] [--rounds 3]

Target: pipeline >= 0.9 x bare int8 encode. Documents are SciFact abstracts (title + text).
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
from rag.embedding import OnnxInt8Embedder, resolve_model_path  # noqa: E402
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
    bare_int8 = OnnxInt8Embedder(DEFAULT_EMBEDDING_MODEL)  # its own session, outside the pipeline
    bare_int8.embed(texts[:64])
    bare, bare8, ours = [], [], []
    for round_ in range(args.rounds):
        started = time.perf_counter()
        bare_model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        bare.append(len(texts) / (time.perf_counter() - started))

        started = time.perf_counter()
        bare_int8.embed(texts, batch_size=64)
        bare8.append(len(texts) / (time.perf_counter() - started))

        with tempfile.TemporaryDirectory() as tmp:
            coll = Collection.open(load_settings(environ={}, index_dir=tmp))
            coll.embedder.embed(texts[:64])  # the model is loaded once per process, as in the app
            started = time.perf_counter()
            report = coll.add_documents(docs)
            ours.append(report.chunks_added / (time.perf_counter() - started))
            coll.store.close()
        print(f"round {round_ + 1}: bare torch {bare[-1]:.1f} chunks/s, bare int8 {bare8[-1]:.1f} chunks/s, "
              f"pipeline ({coll.embedder.model_id}) {ours[-1]:.1f} chunks/s", flush=True)
    reference = statistics.median(bare8)
    print(f"\n{len(docs)} documents, {len(texts)} chunks, {args.rounds} alternating rounds (median)\n")
    print("| what | chunks/s (median) | ratio | target |")
    print("| --- | --- | --- | --- |")
    print(f"| bare SentenceTransformer.encode (torch) | {statistics.median(bare):.1f} "
          f"| {statistics.median(bare) / reference:.2f} | - |")
    print(f"| bare ONNX Runtime int8 encode (OnnxInt8Embedder.embed) | {reference:.1f} | 1.00 | reference |")
    print(f"| rag pipeline (Collection.add_documents) | {statistics.median(ours):.1f} "
          f"| {statistics.median(ours) / reference:.2f} | >= 0.90 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
