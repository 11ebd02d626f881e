"""Abstention on questions the documents don't answer, retrieval only (no model): the QA chain's gate
(rag/chains/gate.py) beside the previous one (chunk cosine and sentence score only), in the same run.

    python benchmarks/bench_abstain.py                 # the held-out SQuAD 2.0 half and the SQuAD 1.1 set
    python benchmarks/bench_abstain.py --calibration   # also the half the gate was chosen on
    python benchmarks/bench_abstain.py --rows out.jsonl  # every question with both verdicts and the reason

Data: ../shared/data/qa/squad2-train-subset (the first 10 articles of SQuAD 2.0 train; 348 questions written
by crowd workers against a paragraph to look answerable from it, on 2 of the articles) and
../shared/data/qa/squad-train-subset (bench_answers' 401 answerable questions and its 60 questions about
articles left out of the corpus). Each set is ingested into its own collection with the project's defaults
(k=4, hybrid); every SQuAD 2.0 article is one document, its paragraphs joined by blank lines, as
bench_answers' corpus files are. The SQuAD 2.0 articles are split by article, fixed: those at even positions
in the file are the calibration half, the others are held out. The previous gate's thresholds are
RELEVANCE and KEY_RELEVANCE; the key sentence is found among all k chunks, as bench_answers --calibrate does.

The last table is the trade-off curve: the gate's name and number checks with other sentence thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SQUAD2 = ROOT / ".." / "shared" / "data" / "qa" / "squad2-train-subset" / "train-v2.0-first10.json"
CURVE = (0.36, 0.38, 0.40, 0.42, 0.44, 0.46, 0.48, 0.50, 0.52)


def squad2_questions(articles: list[dict]) -> list[dict]:
    """Every question of the articles, with its article's position (the split) and whether it is answerable."""
    return [{"question": q["question"], "title": a["title"], "half": "calibration" if i % 2 == 0 else "held-out",
             "answerable": not q["is_impossible"]}
            for i, a in enumerate(articles) for p in a["paragraphs"] for q in p["qas"]]


def write_squad2_corpus(articles: list[dict], folder: Path) -> list[str]:
    """One file an article: its title, a blank line, its paragraphs separated by blank lines."""
    paths = []
    for a in articles:
        title = a["title"].replace("_", " ")
        path = folder / f"{title.replace('/', ' ')}.txt"
        path.write_text(title + "\n\n" + "\n\n".join(p["context"].strip() for p in a["paragraphs"]) + "\n",
                        encoding="utf-8")
        paths.append(str(path))
    return paths


def squad1_questions() -> tuple[list[dict], list[str]]:
    """bench_answers' questions (answerable, and unanswerable about left-out articles) and its corpus files."""
    from bench_answers import DATA, UNANSWERABLE, corpus_files, split_questions

    questions = [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    answerable, unanswerable, left_out = split_questions(questions)
    rows = [{"question": q["question"], "title": q["title"], "half": "squad1", "answerable": True} for q in answerable]
    rows += [{"question": q["question"], "title": q["title"], "half": "squad1", "answerable": False}
             for q in unanswerable[:UNANSWERABLE]]
    return rows, [str(p.resolve()) for p in corpus_files(left_out)]


def judge(questions: list[dict], files: list[str], index_dir: Path, name: str) -> list[dict]:
    """Both gates' verdicts on each question, over a collection of `files` built in `index_dir`."""
    from rag.chains.gate import KEY_RELEVANCE, RELEVANCE, answerable, missing_names, missing_numbers, passages
    from rag.collection import Collection
    from rag.evidence import key_sentence
    from rag.settings import load_settings

    settings = load_settings(index_dir=index_dir, collection=name)
    coll = Collection.open(settings, name=name)
    t0 = time.perf_counter()
    report = coll.ingest(files)
    print(f"{name}: {len(files)} documents, {report.chunks_added} chunks in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    embed = coll.embedder.embed
    for i, q in enumerate(questions, 1):
        hits = coll.search(q["question"], k=settings.k, mode=settings.mode)
        key = key_sentence(q["question"], [h.text for h in hits], embed) if hits else None
        dense = max((h.dense_score for h in hits if h.dense_score is not None), default=0.0)
        verdict, texts = answerable(q["question"], hits, key, embed), passages(hits)
        q.update(dense=round(dense, 4), key=key.score if key else None, key_text=key.text if key else "",
                 previous=not hits or dense < RELEVANCE or (key is not None and key.score < KEY_RELEVANCE),
                 gate=not verdict.ok, reason=verdict.reason,
                 lexical=bool(missing_names(q["question"], texts) or missing_numbers(q["question"], texts)))
        if i % 500 == 0:
            print(f"{name}: {i}/{len(questions)}", file=sys.stderr)
    return questions


def _rate(rows: list[dict], abstains) -> str:
    return f"{sum(map(abstains, rows)) / len(rows):.3f}" if rows else "—"


def groups(rows: list[dict], halves: list[str]) -> list[tuple[str, str, list[dict]]]:
    """(label, short label, rows) of each reported set: per SQuAD 2.0 half, the unanswerable, the answerable
    of the articles that have unanswerable ones, and all answerable; then SQuAD 1.1's two kinds."""
    out = []
    for half in halves:
        part = [r for r in rows if r["half"] == half]
        titles = sorted({r["title"] for r in part if not r["answerable"]})
        out += [(f"SQuAD 2.0 {half}: unanswerable, on topic", f"{half} unans.",
                 [r for r in part if not r["answerable"]]),
                (f"SQuAD 2.0 {half}: answerable, same article ({', '.join(titles)})", f"{half} ans. same article",
                 [r for r in part if r["answerable"] and r["title"] in titles]),
                (f"SQuAD 2.0 {half}: answerable, all its articles", f"{half} ans.",
                 [r for r in part if r["answerable"]])]
    squad1 = [r for r in rows if r["half"] == "squad1"]
    out += [("SQuAD 1.1: answerable", "1.1 ans.", [r for r in squad1 if r["answerable"]]),
            ("SQuAD 1.1: unanswerable, article not ingested", "1.1 off topic",
             [r for r in squad1 if not r["answerable"]])]
    return out


def table(rows: list[dict], halves: list[str]) -> str:
    lines = ["| questions | n | previous gate | this gate | the name or number check alone |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for label, _, group in groups(rows, halves):
        lines.append(f"| {label} | {len(group)} | {_rate(group, lambda r: r['previous'])} | "
                     f"{_rate(group, lambda r: r['gate'])} | {_rate(group, lambda r: r['lexical'])} |")
    return "\n".join(lines)


def curve(rows: list[dict], halves: list[str]) -> str:
    """Abstention with the name and number checks and chunk 0.36, per sentence threshold."""
    from rag.chains.gate import RELEVANCE

    sets = groups(rows, halves)
    lines = ["| sentence threshold | " + " | ".join(short for _, short, _ in sets) + " |",
             "| ---: |" + " ---: |" * len(sets)]
    for threshold in CURVE:
        def abstains(r, t=threshold):
            return r["lexical"] or r["dense"] < RELEVANCE or (r["key"] is not None and r["key"] < t)
        lines.append(f"| {threshold:.2f} | " + " | ".join(_rate(g, abstains) for _, _, g in sets) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", action="store_true", help="also report the calibration half")
    parser.add_argument("--rows", type=Path, help="write every question with its verdicts here (JSON lines)")
    args = parser.parse_args(argv)
    if not SQUAD2.exists():
        print(f"skipped: {SQUAD2.resolve()} is absent (the shared data sits beside the checkout)")
        return 0
    articles = json.loads(SQUAD2.read_text(encoding="utf-8"))["data"]
    halves = ["calibration", "held-out"] if args.calibration else ["held-out"]
    squad2 = [q for q in squad2_questions(articles) if q["half"] in halves]
    squad1, squad1_files = squad1_questions()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "squad2"
        corpus.mkdir()
        rows = judge(squad2, write_squad2_corpus(articles, corpus), Path(tmp) / "index", "squad2")
        rows += judge(squad1, squad1_files, Path(tmp) / "index", "squad1")
    if args.rows:
        args.rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(table(rows, halves))
    print()
    print(curve(rows, halves))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
