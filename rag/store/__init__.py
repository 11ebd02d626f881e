"""Stores: where a collection's documents, chunks, vectors and keyword index live.

`base.ChunkStore` is the interface `Collection` and `Retriever` use; `local.LocalStore` is the
default implementation (SQLite + tantivy + FAISS in a directory). The other modules are its parts:
`schema`, `manifest`, `lock`, `vector_index`, `keyword_index`, `topk`, `errors`, `integrity`.
"""

from rag.store.base import ChunkStore, DocumentInfo, Found, StoredChunk
from rag.store.errors import storage_error
from rag.store.keyword_index import STOPWORDS, query_words
from rag.store.local import LocalStore
from rag.store.manifest import FORMAT_VERSION, validate_collection_name
from rag.store.topk import top_k

Store = LocalStore  # the name callers used before there was a second store

__all__ = ["ChunkStore", "DocumentInfo", "Found", "StoredChunk", "LocalStore", "Store", "STOPWORDS",
           "FORMAT_VERSION", "query_words", "storage_error", "top_k", "validate_collection_name"]
