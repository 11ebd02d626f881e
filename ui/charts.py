"""The Search step's charts as pandas tables: the hits' scores, and the 2-D map of the collection."""

from __future__ import annotations

from typing import Sequence

from rag.retrieval import MODE_SCORE, scores_for
from ui.escaping import one_line


def scores_frame(hits: Sequence, mode: str = "hybrid"):
    """Table for the scores chart: one bar per hit and score the mode has, each scaled to that score's best.

    The retrievers score on different scales (convex fusion, cosine, BM25), so bars show the share of
    the best score of the same kind; the raw score is in the tooltip and on the cards.
    """
    import pandas as pd

    rows = []
    for name, attr in scores_for(mode):
        values = [getattr(h, attr) for h in hits]
        best = max((v for v in values if v is not None), default=0) or 1.0
        for hit, value in zip(hits, values):
            if value is not None:
                rows.append({"bar": f"#{hit.rank} {name}", "retriever": name,
                             "relative": max(float(value), 0.0) / best, "score": round(float(value), 4)})
    # Gradio's chart fixes its colours to the retrievers of the first frame it draws, and later frames
    # only replace the data: a retriever missing from that first frame would be drawn without fill. So
    # every frame names all three, those the mode lacks as an empty bar under the first real one.
    shown = {row["retriever"] for row in rows}
    first = rows[0]["bar"] if rows else ""
    rows += [{"bar": first, "retriever": name, "relative": 0.0, "score": None}
             for name, _ in MODE_SCORE.values() if name not in shown]
    return pd.DataFrame(rows, columns=["bar", "retriever", "relative", "score"])


def map_frame(projection: dict, hits: Sequence):
    """Table for the 2-D map from `Collection.projection`: every chunk, the hits, and the query."""
    import pandas as pd

    hit_rank = {h.chunk_id: h for h in hits}
    rows = []
    for chunk_id, (x, y) in zip(projection.get("ids", []), projection.get("xy", [])):
        hit = hit_rank.get(chunk_id)
        label = one_line(f"#{hit.rank} {hit.title or hit.source}", 80) if hit else f"chunk {chunk_id}"
        rows.append({"x": float(x), "y": float(y), "kind": "hit" if hit else "chunk", "label": label})
    if projection.get("query_xy") is not None:
        qx, qy = projection["query_xy"]
        rows.append({"x": float(qx), "y": float(qy), "kind": "query", "label": "query"})
    # Hits and the query last, so they are drawn on top of the other chunks.
    rows.sort(key=lambda r: {"chunk": 0, "hit": 1, "query": 2}[r["kind"]])
    return pd.DataFrame(rows, columns=["x", "y", "kind", "label"])
