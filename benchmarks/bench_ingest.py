"""Ingest throughput of the whole pipeline (chunk, embed, SQLite, tantivy, FAISS, disk) in chunks/s,
against bare encodes of the same chunks, alternating in the same run: the ONNX Runtime int8 session the
pipeline embeds with by default (OnnxInt8Embedder.embed alone), and torch `SentenceTransformer.encode`.

    python benchmarks/bench_ingest.py [--docs 600] [--rounds 3] [--server | --embed-url URL --embedding-model NAME]

Target: pipeline >= 0.9 x bare int8 encode. Documents are SciFact abstracts (title + text).
With --server, the pipeline also embeds through a server's /v1/embeddings (rag/embedding_server.py):
llama-cpp-python's server in embedding mode on the pip-shipped SmolLM2 GGUF, started here on 127.0.0.1,
or the server --embed-url names; beside it, the same server's raw /v1/embeddings, one request per batch.
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
    parser.add_argument("--server", action="store_true", help="also measure embedding through a server")
    parser.add_argument("--embed-url", help="a running server's /v1 root (default: start llama-cpp-python's)")
    parser.add_argument("--embedding-model", default="smollm2-embed", help="the server's model name")
    parser.add_argument("--api-key", default="", help="the server's API key, if it wants one")
    args = parser.parse_args()
    if args.server or args.embed_url:
        return server_rounds(args)
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


def server_rounds(args) -> int:
    """Chunks/s through the server: the pipeline (Collection.add_documents with --embed-url) against the same
    server's raw /v1/embeddings, one request per batch of 64, alternating in the same run."""
    import httpx

    docs = [Document(d["_id"], f"{d['title']}\n\n{d['text']}", d["title"]) for d in scifact.load_corpus()[: args.docs]]
    texts = [c.text for d in docs for c in split_document(d)]
    server = None
    if not args.embed_url:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from openai_server import API_KEY, LlamaServer  # the tests' launcher of llama-cpp-python's server

        from rag.models import default_model_path

        args.api_key = API_KEY
        server = LlamaServer(default_model_path(), n_ctx=512, extra=("--embedding", "True", "--model_alias", args.embedding_model)).start()
        args.embed_url = server.base_url
    raw, ours = [], []
    try:
        for round_ in range(args.rounds):
            started = time.perf_counter()
            with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {args.api_key}"}) as client:
                for i in range(0, len(texts), 64):
                    for text in texts[i:i + 64]:  # one text per request: its batches mix texts up (see the module)
                        response = client.post(args.embed_url + "/embeddings",
                                               json={"model": args.embedding_model, "input": [text]})
                        response.raise_for_status()
                        response.json()  # read, as any client must
            raw.append(len(texts) / (time.perf_counter() - started))
            with tempfile.TemporaryDirectory() as tmp:
                coll = Collection.open(load_settings(environ={}, index_dir=tmp, embed_url=args.embed_url,
                                                     embedding_model=args.embedding_model, api_key=args.api_key))
                started = time.perf_counter()
                report = coll.add_documents(docs)
                ours.append(report.chunks_added / (time.perf_counter() - started))
                coll.store.close()
            print(f"round {round_ + 1}: raw server {raw[-1]:.1f} chunks/s, pipeline through it {ours[-1]:.1f} "
                  "chunks/s", flush=True)
    finally:
        if server is not None:
            server.kill()
    print(f"\n{len(docs)} documents, {len(texts)} chunks, {args.rounds} alternating rounds (median), "
          f"server {args.embed_url} ({args.embedding_model})\n")
    print("| what | chunks/s (median) | ratio |")
    print("| --- | --- | --- |")
    print(f"| raw server /v1/embeddings | {statistics.median(raw):.1f} | 1.00 |")
    print(f"| rag pipeline through the server | {statistics.median(ours):.1f} | "
          f"{statistics.median(ours) / statistics.median(raw):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
