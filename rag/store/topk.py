"""The k best of a set of scores."""

from __future__ import annotations

import heapq


def top_k(scores: dict[int, float], k: int) -> list[tuple[int, float]]:
    """The `k` highest-scoring (id, score) pairs, best first (ties by id, for stable results)."""
    return heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))
