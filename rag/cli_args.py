"""Flags that more than one command of `python -m rag` takes."""

from __future__ import annotations

import argparse


def add_embedding_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embed-url", metavar="URL", help="embed through a server's /v1/embeddings, e.g. "
                        "http://127.0.0.1:8080/v1 (RAG_EMBED_URL); name its model with --embedding-model")
    parser.add_argument("--embedding-model", metavar="NAME", help="the embedding model: a sentence-transformers "
                        "id, or the server's model name with --embed-url (RAG_EMBEDDING_MODEL)")
