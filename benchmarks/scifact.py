"""BEIR SciFact helpers shared by the retrieval benchmarks: loading, the tune/held-out split, nDCG@10."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scifact"


def require_data() -> Path:
    if not (DATA / "corpus.jsonl").exists():
        print(f"skipped: SciFact not found at {DATA.resolve()} (it sits in ../shared/data beside the checkout)")
        sys.exit(0)
    return DATA


def load_corpus() -> list[dict]:
    with open(DATA / "corpus.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def load_queries() -> dict[str, str]:
    with open(DATA / "queries.jsonl", encoding="utf-8") as fh:
        return {q["_id"]: q["text"] for q in map(json.loads, fh)}


def load_qrels(split: str = "train") -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(DATA / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def split_queries(qrels: dict) -> tuple[list[str], list[str]]:
    """A fixed half of the train queries to tune on and the other half held out, by hash of the id."""
    tune, held = [], []
    for qid in sorted(qrels):
        (tune if hashlib.sha256(qid.encode()).digest()[0] % 2 == 0 else held).append(qid)
    return tune, held


def ndcg_at_10(ranked_docs: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked_docs[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def doc_ranking(chunk_ranking: list[tuple[str, float]]) -> list[str]:
    """Documents ordered by their best chunk (the input is already best-first)."""
    return list(dict.fromkeys(source for source, _ in chunk_ranking))


def mean_ndcg(rankings: dict[str, list[str]], qrels: dict, qids: list[str]) -> float:
    return sum(ndcg_at_10(rankings.get(q, []), qrels[q]) for q in qids) / len(qids)
