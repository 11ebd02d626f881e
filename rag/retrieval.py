"""Dense (FAISS), keyword (tantivy BM25) and hybrid retrieval over a store."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from rag import limits
from rag.embedding import Embedder
from rag.errors import RagError
from rag.locations import read_by_ocr, unit_label
from rag.store import ChunkStore, top_k

MODES = ("dense", "bm25", "hybrid")
# Hybrid fusion, tuned on half of SciFact's train queries (benchmarks/bench_retrieval.py --tune).
# Convex fusion (0.713 on the tune half) beat the best RRF setting (k=10: 0.699) there.
FUSION = "convex"  # or "rrf": reciprocal-rank fusion
RRF_K = 60
DENSE_WEIGHT = 1.0
BM25_WEIGHT = 1.0
ALPHA = 0.7  # convex fusion: weight of the normalised dense score
CANDIDATES = 100
MAX_DEPTH = 1000  # the most hits a search reads to find k that are not a document repeating itself

# What each retriever's score means, for whoever shows one: they score on different scales.
SCORE_LEGEND = {
    "fused": "fused: the dense and keyword scores of the candidates, each scaled, then combined; 0 to 1",
    "dense": "dense: cosine similarity of the query and chunk embeddings, −1 to 1",
    "bm25": "bm25: keyword score (BM25), 0 and up, comparable only within one query",
}
# The score a mode ranks by: its name in SCORE_LEGEND and the SearchHit attribute that holds it.
MODE_SCORE = {"hybrid": ("fused", "score"), "dense": ("dense", "dense_score"), "bm25": ("bm25", "bm25_score")}


def scores_for(mode: str) -> list[tuple[str, str]]:
    """(name, attribute) of the scores a hit of `mode` carries: the one it ranks by, and for hybrid its two parts."""
    if mode == "hybrid":
        return [MODE_SCORE["hybrid"], MODE_SCORE["dense"], MODE_SCORE["bm25"]]
    return [MODE_SCORE.get(mode, MODE_SCORE["hybrid"])]


@dataclass
class SearchHit:
    rank: int
    score: float
    dense_score: float | None
    bm25_score: float | None
    source: str
    title: str
    page: int | None
    start: int
    end: int
    text: str
    chunk_id: int
    where: str = ""  # its place in the document's own units (rag.locations.unit_label): "slide 3", "page 4"
    ocr: bool = False  # its words were read by OCR from an image, and may be misread

    def to_dict(self) -> dict:
        return asdict(self)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise RagError(f"Unknown search mode {mode!r}; available: {', '.join(MODES)}.")
    return mode


def rrf(rankings: list[list[int]], weights: list[float], k: float = RRF_K) -> dict[int, float]:
    """Reciprocal-rank fusion: each list adds weight / (k + rank) to the ids it ranks."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return fused


def convex(dense: dict[int, float], keyword: dict[int, float], alpha: float = ALPHA) -> dict[int, float]:
    """alpha * min-max-normalised cosine + (1 - alpha) * BM25 / best BM25, over the same candidates."""
    ids = list(dense.keys() | keyword.keys())
    if not ids:
        return {}
    cos = np.array([dense.get(i, np.nan) for i in ids], dtype=np.float64)
    low, high = (np.nanmin(cos), np.nanmax(cos)) if dense else (0.0, 0.0)
    cos = np.where(np.isnan(cos), low, cos)
    bm25 = np.array([keyword.get(i, 0.0) for i in ids], dtype=np.float64)
    top = bm25.max() or 1.0
    fused = alpha * (cos - low) / ((high - low) or 1.0) + (1 - alpha) * bm25 / top
    return dict(zip(ids, fused.tolist()))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads that run the keyword query while the caller embeds the query and searches vectors."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rag-keyword")
        return _POOL


def _without_repeats(hits: list[SearchHit]) -> list[SearchHit]:
    """The hits less any whose document already has a hit of the same text."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for hit in hits:
        if (hit.source, hit.text) not in seen:
            seen.add((hit.source, hit.text))
            kept.append(hit)
    return kept


class Retriever:
    """Searches one store with one embedder. Each hit carries the scores its retrievers gave: both in
    dense and hybrid mode, BM25 only in bm25 mode (`dense_score` is None there: nothing computed it)."""

    def __init__(self, store: ChunkStore, embedder: Embedder):
        self.store = store
        self.embedder = embedder

    def search(self, query: str, k: int = 4, mode: str = "hybrid", query_vector=None,
               sources: Sequence[str] | None = None) -> list[SearchHit]:
        """The `k` best chunks for `query`; `query_vector` may be given when queries are embedded in bulk.
        With `sources`, the `k` best among those documents' chunks (None: every document). A passage its
        document repeats word for word is one hit (the first): the copies say nothing new, and crowded other
        documents holding the same words out of the top k."""
        check_mode(mode)
        limits.check_k(k)
        if not query.strip():
            raise RagError("The query is empty; type what you are looking for.")
        want = k
        while True:
            hits, query_vector = self._ranked(query, want, mode, query_vector, sources)
            unique = _without_repeats(hits)
            if len(unique) >= k or len(hits) < want or want >= MAX_DEPTH:
                return [replace(hit, rank=rank) for rank, hit in enumerate(unique[:k], start=1)]
            want = min(want + 2 * (len(hits) - len(unique)), MAX_DEPTH)

    def _ranked(self, query: str, k: int, mode: str, query_vector, sources) -> tuple[list[SearchHit], object]:
        """The k best hits, and the query's vector (embedded here, while the keyword search runs)."""
        if mode == "bm25":
            ranked = self.store.bm25(query, k, sources=sources)
            return self._hits(ranked, None, dict(ranked)), query_vector
        depth = max(CANDIDATES, k) if mode == "hybrid" else k
        lexical = _pool().submit(self.store.bm25, query, depth, sources=sources) if mode == "hybrid" else None
        try:
            vector = self.embedder.embed_query(query) if query_vector is None else query_vector
            dense_ranked = self.store.dense(vector, depth, sources=sources)
        finally:
            keyword_ranked = lexical.result() if lexical is not None else []
        dense, keyword = dict(dense_ranked), dict(keyword_ranked)
        if mode == "dense":
            return self._hits(dense_ranked, dense, self.store.bm25_for(query, list(dense))), vector
        if FUSION == "rrf":
            ranked = top_k(rrf([list(dense), [i for i, _ in keyword_ranked]], [DENSE_WEIGHT, BM25_WEIGHT]), k)
            keyword.update(self.store.bm25_for(query, [i for i, _ in ranked if i not in keyword]))
            return self._hits(ranked, dense, keyword), vector
        dense.update(self.store.dense_scores(vector, [i for i in keyword if i not in dense]))
        complete = len(keyword_ranked) < depth  # every keyword match is in the list; the rest score 0
        keyword.update(self._needed_bm25(query, dense, keyword, k, 0.0 if complete else keyword_ranked[-1][1]))
        return self._hits(top_k(convex(dense, keyword), k), dense, keyword), vector

    def _needed_bm25(self, query: str, dense: dict, keyword: dict, k: int, bound: float) -> dict[int, float]:
        """BM25 of the dense candidates that could still reach the top k, in one statement.

        A dense candidate outside the keyword list scores at most `bound` (the list's last score),
        so only those whose fused score with that bound could beat the k-th best need their own.
        """
        unknown = [i for i in dense if i not in keyword]
        if not unknown or bound <= 0:
            return {}
        floor = convex(dense, keyword)  # unknown ones counted as 0, their lowest
        kth = sorted(floor.values(), reverse=True)[min(k, len(floor)) - 1]
        headroom = (1 - ALPHA) * bound / (max(keyword.values(), default=0.0) or bound)
        return self.store.bm25_for(query, [i for i in unknown if floor[i] + headroom >= kth])

    def _hits(self, ranked: list[tuple[int, float]], dense: dict[int, float] | None,
              keyword: dict[int, float]) -> list[SearchHit]:
        rows = self.store.chunks([i for i, _ in ranked])
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # deleted by another writer between the two reads
                continue
            hits.append(SearchHit(
                rank=len(hits) + 1, score=float(score),
                dense_score=None if dense is None else dense.get(chunk_id),
                bm25_score=keyword.get(chunk_id, 0.0),
                source=row.source, title=row.title, page=row.page, start=row.start, end=row.end,
                text=row.text, chunk_id=chunk_id, where=unit_label(row.metadata, row.page, row.text),
                ocr=read_by_ocr(row.metadata, row.page),
            ))
        return hits
