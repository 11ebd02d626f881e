"""SciFact nDCG@10 per retrieval mode, through the project's own ingest and search.

    python benchmarks/bench_retrieval.py [--index DIR] [--tune]

Documents are the 5,183 abstracts (title + text), chunked as users' documents are; a document's score
is its best chunk's. Only `qrels/train.tsv` is present: fusion is tuned on a fixed half of its queries
(`--tune`) and reported on the other half, which tuning never sees. Reference points (BEIR test split,
published): all-MiniLM-L6-v2 0.645, BM25 0.687; target for hybrid: >= 0.70. With bm25 among the
modes, a last row scores bare tantivy over whole abstracts, to tell the keyword engine from chunking.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scifact  # noqa: E402

from rag import retrieval  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.documents import Document  # noqa: E402
from rag.settings import load_settings  # noqa: E402

DEPTH = 100  # chunks retrieved per query before grouping them by document


def build(index_dir: str, chunk_size: int) -> Collection:
    settings = load_settings(index_dir=index_dir, collection=f"scifact-{chunk_size}", chunk_size=chunk_size)
    coll = Collection.open(settings)
    docs = [Document(source=d["_id"], title=d["title"], text=f"{d['title']}\n\n{d['text']}") for d in scifact.load_corpus()]
    started = time.perf_counter()
    report = coll.add_documents(docs)
    print(f"indexed: {report.documents_added} added, {report.documents_unchanged} unchanged, "
          f"{coll.store.count_chunks()} chunks, {time.perf_counter() - started:.1f} s")
    return coll


def run_mode(coll: Collection, queries: dict, qids: list[str], mode: str) -> dict[str, list[str]]:
    vectors = coll.embedder.embed([queries[q] for q in qids])  # in bulk, as `search --queries` does
    return {
        q: scifact.doc_ranking([(h.source, h.score) for h in coll.search(queries[q], DEPTH, mode, vector)])
        for q, vector in zip(qids, vectors)
    }


def candidate_lists(coll: Collection, queries: dict, qids: list[str]) -> dict:
    """Per query, the raw dense and BM25 rankings and both scores of every candidate, for cheap tuning."""
    out = {}
    for q, vector in zip(qids, coll.embedder.embed([queries[q] for q in qids])):
        dense = [i for i, _ in coll.store.dense(vector, DEPTH)]
        keyword = [i for i, _ in coll.store.bm25(queries[q], DEPTH)]
        ids = list(dict.fromkeys(dense + keyword))
        out[q] = (dense, keyword, coll.store.dense_scores(vector, ids), coll.store.bm25_for(queries[q], ids))
    return out


def _score(lists: dict, source_of: dict, qrels: dict, qids: list[str], fuse) -> float:
    rankings = {}
    for q, parts in lists.items():
        ordered = sorted(fuse(*parts).items(), key=lambda item: -item[1])
        rankings[q] = scifact.doc_ranking([(source_of[i], s) for i, s in ordered])
    return scifact.mean_ndcg(rankings, qrels, qids)


def tune(coll: Collection, queries: dict, qrels: dict, qids: list[str]) -> None:
    lists = candidate_lists(coll, queries, qids)
    ids = {i for d, b, _, _ in lists.values() for i in d + b}
    source_of = {i: c.source for i, c in coll.store.chunks(list(ids)).items()}
    results = []
    for k, w_dense, depth in itertools.product([5, 10, 30, 60], [0.7, 1.0, 1.3, 1.6], [50, 100]):
        fuse = lambda d, b, ds, bs: retrieval.rrf([d[:depth], b[:depth]], [w_dense, 1.0], k)  # noqa: E731
        results.append((_score(lists, source_of, qrels, qids, fuse), f"rrf k={k} w_dense={w_dense} depth={depth}"))
    for alpha in [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]:
        fuse = lambda d, b, ds, bs: retrieval.convex(ds, bs, alpha)  # noqa: E731
        results.append((_score(lists, source_of, qrels, qids, fuse), f"convex alpha={alpha} depth={DEPTH}"))
    results.sort(reverse=True)
    print("\nfusion tuning on the tune half (nDCG@10):")
    for score, name in results[:10]:
        print(f"  {score:.4f}  {name}")


def whole_document_bm25(queries: dict, qids: list[str]) -> dict[str, list[str]]:
    """Reference: bare tantivy BM25 over whole abstracts (no chunking, as the published BM25 figure
    is), with the store's analysis (English stemmer) and query words, top 10 per query."""
    import tantivy

    from rag.store.keyword_index import query_words

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("doc", stored=True, tokenizer_name="raw")
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem", index_option="freq")
    schema = builder.build()
    index = tantivy.Index(schema, path=tempfile.mkdtemp(prefix="scifact-bm25-"))
    writer = index.writer(100_000_000)
    for d in scifact.load_corpus():
        writer.add_document(tantivy.Document(doc=d["_id"], text=f"{d['title']}\n\n{d['text']}"))
    writer.commit()
    index.reload()
    searcher = index.searcher()
    analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.remove_long(40))
                .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.stemmer("english")).build())
    rankings = {}
    for qid in qids:
        terms = dict.fromkeys(t for w in query_words(queries[qid]) for t in analyzer.analyze(w))
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in terms])
        rankings[qid] = [searcher.doc(a)["doc"][0] for _, a in searcher.search(query, 10).hits] if terms else []
    return rankings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", help="keep the built index here and reuse it on later runs")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--tune", action="store_true", help="grid-search the fusion on the tune half")
    parser.add_argument("--modes", nargs="+", default=list(retrieval.MODES), choices=retrieval.MODES)
    args = parser.parse_args()
    scifact.require_data()
    index_dir = args.index or tempfile.mkdtemp(prefix="scifact-")
    coll = build(index_dir, args.chunk_size)
    queries, qrels = scifact.load_queries(), scifact.load_qrels("train")
    tune_ids, held_ids = scifact.split_queries(qrels)
    if args.tune:
        tune(coll, queries, qrels, tune_ids)
    print(f"\nSciFact nDCG@10, train qrels ({len(tune_ids)} tune / {len(held_ids)} held-out queries), "
          f"chunk size {args.chunk_size}, fusion {retrieval.FUSION} (rrf_k={retrieval.RRF_K}, "
          f"w_dense={retrieval.DENSE_WEIGHT}, alpha={retrieval.ALPHA}), candidates={retrieval.CANDIDATES}\n")
    print("| mode | held-out half | tune half | all train | ms/query | reference (BEIR test) |")
    print("| --- | --- | --- | --- | --- | --- |")
    reference = {"dense": "MiniLM 0.645", "bm25": "BM25 0.687", "hybrid": "target >= 0.70"}
    for mode in args.modes:
        started = time.perf_counter()
        rankings = run_mode(coll, queries, tune_ids + held_ids, mode)
        ms = (time.perf_counter() - started) * 1000 / len(rankings)
        held, tuned = scifact.mean_ndcg(rankings, qrels, held_ids), scifact.mean_ndcg(rankings, qrels, tune_ids)
        every = scifact.mean_ndcg(rankings, qrels, tune_ids + held_ids)
        print(f"| {mode} | {held:.4f} | {tuned:.4f} | {every:.4f} | {ms:.1f} | {reference[mode]} |")
    if "bm25" in args.modes:
        rankings = whole_document_bm25(queries, tune_ids + held_ids)
        held, tuned = scifact.mean_ndcg(rankings, qrels, held_ids), scifact.mean_ndcg(rankings, qrels, tune_ids)
        every = scifact.mean_ndcg(rankings, qrels, tune_ids + held_ids)
        print(f"| reference: bare tantivy BM25 over whole abstracts (unchunked) | {held:.4f} | {tuned:.4f} | "
              f"{every:.4f} | | BM25 0.687 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
