"""A collection's three Milvus collections, their schemas, names and manifest.

Collection `name` is kept in `rag_<name>_docs` (one row per document, keyed by a hash of its source:
the current version and what `documents()` lists; one more row holds the manifest and the last
change), `rag_<name>_chunks` (chunk text with a BM25 function, vectors, offsets, pages; each row tagged
with its document's version) and `rag_<name>_texts` (each version's whole text and pages, in pieces).
Milvus names allow letters, digits and '_', so the '-', '.' and '_' of our names are written as '_h',
'_d' and '__'.
"""

from __future__ import annotations

import hashlib
import time

from rag.store.keyword_index import STOPWORDS
from rag.store.manifest import check_found

PREFIX = "rag_"
KINDS = ("chunks", "texts", "docs")  # created in this order: the docs collection last, with the manifest
MAX_VARCHAR = 65_535  # bytes in one Milvus VARCHAR value
MAX_SOURCE = 8_192
TEXT_PIECE = MAX_VARCHAR // 4  # characters of a document's text per row (UTF-8 takes up to 4 bytes each)
# The key of the docs row holding the manifest (in its metadata) and, as its version, the last change's.
HEAD_KEY = 0
# The key of the docs row holding the access record (rag.access) in its metadata.
ACCESS_KEY = -1
RESERVED_KEYS = (HEAD_KEY, ACCESS_KEY)
# The analyzer of the keyword index: lite and a server both accept it (lite rejects "english"), and the
# stopwords are the local store's, so both stores drop the same words.
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": sorted(STOPWORDS)}]}
_ESCAPES = {"_": "__", "-": "_h", ".": "_d"}


def doc_key(source: str) -> int:
    """A document's row key: 64 bits of a hash of its source (integer keys, because pymilvus writes string
    keys into its filters without escaping them, and a source may hold any character)."""
    digest = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True) or 1


def physical_name(name: str, kind: str) -> str:
    """The Milvus collection holding `kind` (chunks, texts, docs) of collection `name`."""
    return f"{PREFIX}{''.join(_ESCAPES.get(c, c) for c in name)}_{kind}"


def logical_name(physical: str) -> str | None:
    """The collection name of a docs collection's Milvus name, or None for other collections."""
    if not (physical.startswith(PREFIX) and physical.endswith("_docs")):
        return None
    encoded, out, i = physical[len(PREFIX) : -len("_docs")], [], 0
    reverse = {v[1]: k for k, v in _ESCAPES.items()}
    while i < len(encoded):
        if encoded[i] == "_":
            if encoded[i + 1 : i + 2] not in reverse:
                return None
            out.append(reverse[encoded[i + 1]])
            i += 2
        else:
            out.append(encoded[i])
            i += 1
    return "".join(out)


def chunks_schema(client, dimension: int):
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE)
    schema.add_field("version", DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True, analyzer_params=ANALYZER)
    schema.add_field("start", DataType.INT64)
    schema.add_field("end", DataType.INT64)
    schema.add_field("page", DataType.INT64)  # -1: no page
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    index.add_index("version", index_type="INVERTED")
    return schema, index


def texts_schema(client):
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("version", DataType.INT64)
    schema.add_field("ord", DataType.INT64)
    schema.add_field("body", DataType.VARCHAR, max_length=MAX_VARCHAR)
    _placeholder_vector(schema)
    index = client.prepare_index_params()
    index.add_index("_v", index_type="FLAT", metric_type="L2")
    index.add_index("version", index_type="INVERTED")
    return schema, index


def docs_schema(client):
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)  # doc_key(source)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE)
    schema.add_field("version", DataType.INT64)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=256)
    schema.add_field("chunking", DataType.VARCHAR, max_length=256)
    schema.add_field("title", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("metadata", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("added_at", DataType.DOUBLE)
    schema.add_field("chunks", DataType.INT64)
    _placeholder_vector(schema)
    index = client.prepare_index_params()
    index.add_index("_v", index_type="FLAT", metric_type="L2")
    return schema, index


def _placeholder_vector(schema) -> None:
    # Milvus wants a vector field in every collection; these rows are only ever read by key or filter.
    from pymilvus import DataType

    schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)


PLACEHOLDER = [0.0, 0.0]


FORMAT_VERSION = 1  # a Milvus collection's format (the local store's is in manifest.py)


def new_manifest(model_id: str, dimension: int) -> dict:
    return {"format_version": FORMAT_VERSION, "embedding_model": model_id, "dimension": dimension,
            "created_at": time.time()}


def check_manifest(name: str, found: dict, model_id: str, dimension: int | None) -> int:
    """The collection's dimension, or a RagError when its manifest is of another format or model."""
    return check_found(found, f"Collection {name!r} on the Milvus server", name, model_id, dimension,
                       version=FORMAT_VERSION, readable=(FORMAT_VERSION,))
