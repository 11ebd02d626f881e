"""Dense (FAISS), keyword (FTS5 BM25) and hybrid retrieval over a store."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rag.embedding import Embedder
from rag.errors import RagError
from rag.store import Store, top_k

MODES = ("dense", "bm25", "hybrid")
# Hybrid fusion, tuned on half of SciFact's train queries (benchmarks/bench_retrieval.py --tune).
# Convex fusion (0.713 on the tune half) beat the best RRF setting (k=10: 0.699) there.
FUSION = "convex"  # or "rrf": reciprocal-rank fusion
RRF_K = 60
DENSE_WEIGHT = 1.0
BM25_WEIGHT = 1.0
ALPHA = 0.7  # convex fusion: weight of the normalised dense score
CANDIDATES = 100


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
    low, high = min(dense.values(), default=0.0), max(dense.values(), default=0.0)
    top = max(keyword.values(), default=0.0) or 1.0
    spread = (high - low) or 1.0
    return {
        i: alpha * (dense.get(i, low) - low) / spread + (1 - alpha) * keyword.get(i, 0.0) / top
        for i in dense.keys() | keyword.keys()
    }


class Retriever:
    """Searches one store with one embedder; every hit carries both retrievers' scores."""

    def __init__(self, store: Store, embedder: Embedder):
        self.store = store
        self.embedder = embedder

    def search(self, query: str, k: int = 4, mode: str = "hybrid", query_vector=None) -> list[SearchHit]:
        """The `k` best chunks for `query`; `query_vector` may be given when queries are embedded in bulk."""
        check_mode(mode)
        if k < 1:
            raise RagError(f"k must be at least 1; got {k}.")
        if not query.strip():
            raise RagError("The query is empty; type what you are looking for.")
        vector = None
        if mode != "bm25":
            vector = self.embedder.embed_query(query) if query_vector is None else query_vector
        if mode == "dense":
            ranked = self.store.dense(vector, k)
            return self._hits(ranked, vector, self.store.bm25_for(query, [i for i, _ in ranked]))
        keyword = self.store.bm25_scores(query)
        if mode == "bm25":
            ranked = top_k(keyword, k)
        else:
            ranked = self._hybrid(vector, keyword, k)
        return self._hits(ranked, vector, keyword)

    def _hybrid(self, vector, keyword: dict[int, float], k: int) -> list[tuple[int, float]]:
        depth = max(CANDIDATES, k)
        dense = [i for i, _ in self.store.dense(vector, depth)]
        lexical = [i for i, _ in top_k(keyword, depth)]
        if FUSION == "rrf":
            fused = rrf([dense, lexical], [DENSE_WEIGHT, BM25_WEIGHT])
        else:
            ids = list(dict.fromkeys(dense + lexical))
            fused = convex(self.store.dense_scores(vector, ids), {i: keyword[i] for i in ids if i in keyword})
        return top_k(fused, k)

    def _hits(self, ranked: list[tuple[int, float]], vector, keyword: dict[int, float]) -> list[SearchHit]:
        ids = [i for i, _ in ranked]
        rows = self.store.chunks(ids)
        dense = self.store.dense_scores(vector, ids) if vector is not None else {}
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # deleted by another writer between the two reads
                continue
            hits.append(SearchHit(
                rank=len(hits) + 1, score=score, dense_score=dense.get(chunk_id),
                bm25_score=keyword.get(chunk_id, 0.0),
                source=row.source, title=row.title, page=row.page, start=row.start, end=row.end,
                text=row.text, chunk_id=chunk_id,
            ))
        return hits
