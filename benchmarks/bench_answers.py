"""End-to-end answer quality on real questions: our QAChain against the original LangChain recipe.

    python benchmarks/bench_answers.py                  # all 477 questions, recipe measured in the same run
    python benchmarks/bench_answers.py --limit 100      # every n-th answerable question, for quick checks
    python benchmarks/bench_answers.py --no-recipe      # ours only
    RAG_THREADS=1 python benchmarks/bench_answers.py    # both systems read prompts on one thread (a busy machine)
    python benchmarks/bench_answers.py --via app        # ours asked in the notebook: the real app.py, its own API
    python benchmarks/bench_answers.py --via both       # the CLI path and the notebook in one run, and how they agree

Data: ../shared/data/qa/squad-train-subset (45 Wikipedia articles, 477 SQuAD train questions with gold
answers). The articles of a fixed, seeded draw are left out of the corpus until 60 of their questions are
set aside: those are the unanswerable questions, where the right reply is that the documents don't say.
Everything else is ingested with the project's defaults and answered greedily with the default model.

`--via cli` (the default) asks rag's answer path in this process. `--via app` starts `app.py` over the same
index and asks each question in a fresh session of the notebook through gradio's client, with the settings
panel's Apply setting the same temperature, tokens, k, mode and answer style; the answer and sources are read
back from the Chat (benchmarks/app_client.py). `--via both` does both and adds how far the two agree.

Figures (after SQuAD's normalisation: lower case, no punctuation, no articles):
  context recall     a gold answer appears in the sources given to the model
  answer accuracy    a gold answer appears in the answer (an abstention counts as wrong)
  F1                 SQuAD token F1, best over the gold answers
  citation accuracy  of the answers that cite [n], the first cited source holds a gold answer
  abstain (unans.)   how often it says the documents don't answer, on the unanswerable questions
  abstain (ans.)     how often it does so wrongly, on the answerable ones
  ends at a boundary of the answers given, those whose text (without citations, quotation marks or a final
                     ellipsis) ends at . ! ? ; : , ) – — or where a source sentence ends
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATA = ROOT / ".." / "shared" / "data" / "qa" / "squad-train-subset"
UNANSWERABLE = 60
SEED = 13

# The recipe's default prompt says "just say that you don't know"; ours says the documents don't answer.
_ABSTAIN = re.compile(r"\b(i don'?t know|i do not know|don'?t (contain|say|answer|mention)|do not (contain|say|"
                      r"answer|mention)|no (information|mention)|not (mentioned|provided|stated|given) in|"
                      r"cannot answer|can'?t answer|unable to answer)\b", re.IGNORECASE)
_CITE = re.compile(r"\[(\d{1,2})\]")
_QUOTE_MARKS = "\"'“”‘’"


def normalize(text: str) -> str:
    """SQuAD's answer normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains(text: str, answers: list[str]) -> bool:
    haystack = f" {normalize(text)} "
    return any(f" {normalize(a)} " in haystack for a in answers if normalize(a))


def split_questions(questions: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """(answerable, unanswerable, titles left out): whole articles drawn until 60 questions are set aside."""
    titles = sorted({q["title"] for q in questions})
    random.Random(SEED).shuffle(titles)
    left_out: list[str] = []
    for title in titles:
        if sum(q["title"] in left_out for q in questions) >= UNANSWERABLE:
            break
        left_out.append(title)
    unanswerable = [q for q in questions if q["title"] in left_out][:UNANSWERABLE]
    answerable = [q for q in questions if q["title"] not in left_out]
    return answerable, unanswerable, left_out


def sample(items: list, limit: int | None) -> list:
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        return []
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def corpus_files(left_out: list[str]) -> list[Path]:
    """The corpus files whose article is not left out (file names are titles with spaces)."""
    return sorted(p for p in (DATA / "corpus").glob("*.txt") if p.stem.replace(" ", "_") not in left_out)


def score(rows: list[dict]) -> dict:
    """The figures for one system over its rows (each: answers, answer, sources, abstained, cited, seconds)."""
    ans = [r for r in rows if r["answers"]]
    unans = [r for r in rows if not r["answers"]]
    citing = [r for r in ans if r["cited"] and not r["abstained"]]
    cited_ok = [r for r in citing if 1 <= r["cited"][0] <= len(r["sources"])
                and contains(r["sources"][r["cited"][0] - 1], r["answers"])]
    answered = [r for r in ans if not r["abstained"]]
    return {
        "questions": len(rows),
        "context_recall": _mean(contains(" ".join(r["sources"]), r["answers"]) for r in ans),
        "answer_accuracy": _mean(not r["abstained"] and contains(r["answer"], r["answers"]) for r in ans),
        "f1": _mean(0.0 if r["abstained"] else max(token_f1(r["answer"], a) for a in r["answers"]) for r in ans),
        "citation_accuracy": len(cited_ok) / len(citing) if citing else float("nan"),
        "citing": len(citing) / len(ans) if ans else float("nan"),
        "abstain_unanswerable": _mean(r["abstained"] for r in unans),
        "abstain_answerable": _mean(r["abstained"] for r in ans),
        "median_words": statistics.median(len(r["answer"].split()) for r in answered) if answered else 0,
        "ends_at_boundary": _mean(ends_at_boundary(r["answer"], r["sources"]) for r in answered),
        "seconds_per_answer": _mean(r["seconds"] for r in rows),
        "errors": sum(bool(r.get("error")) for r in rows),
    }


def ends_at_boundary(answer: str, sources: list[str]) -> bool:
    """Whether an answer's text (citations, quotation marks and a final ellipsis left out) ends at a sentence
    or clause boundary: . ! ? ; : , ) a dash, or where a source sentence ends (a heading, a list item)."""
    from rag.quote import display
    from rag.text import sentences

    text = _CITE.sub("", answer).strip().strip(_QUOTE_MARKS).strip()
    text = text.removesuffix("…").removesuffix("...").strip().strip(_QUOTE_MARKS).strip()
    if not text:
        return False
    if text[-1] in ".!?;:,)–—":
        return True
    tail = " ".join(text.split()[-4:])
    return any(display(s[a:b]).endswith(tail) for s in sources for a, b in sentences(s))


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else float("nan")


def open_corpus(left_out: list[str], index_dir: Path):
    """The corpus ingested with the project's defaults into `index_dir` (unchanged articles cost nothing)."""
    from rag.collection import Collection
    from rag.settings import load_settings

    settings = load_settings(index_dir=index_dir, collection="squad", temperature=0.0)
    coll = Collection.open(settings, name="squad")
    t0 = time.perf_counter()
    report = coll.ingest([str(p.resolve()) for p in corpus_files(left_out)])
    print(f"ours: ingested {len(corpus_files(left_out))} articles ({report.chunks_added} new chunks) "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return settings, coll


def calibrate(questions: list[dict], left_out: list[str], index_dir: Path) -> str:
    """Retrieval alone (no model): how often each relevance threshold would abstain, on every question."""
    from rag.chains import KEY_RELEVANCE, RELEVANCE
    from rag.evidence import key_sentence

    settings, coll = open_corpus(left_out, index_dir)
    rows = []
    for q in questions:
        hits = coll.search(q["question"], k=settings.k, mode=settings.mode)
        key = key_sentence(q["question"], [h.text for h in hits], coll.embedder.embed) if hits else None
        rows.append({"answers": q["answers"], "top_dense": max((h.dense_score or 0.0 for h in hits), default=0.0),
                     "key": key.score if key else 1.0,
                     "key_holds": bool(key and q["answers"] and contains(key.text, q["answers"])),
                     "recall": contains(" ".join(h.text for h in hits), q["answers"]) if q["answers"] else None})
    ans = [r for r in rows if r["answers"]]
    lines = [f"context recall at k={settings.k} (all answerable): {_mean(r['recall'] for r in ans):.3f}",
             f"the best-matching sentence holds a gold answer: {_mean(r['key_holds'] for r in ans):.3f}",
             f"thresholds in use: chunk {RELEVANCE}, sentence {KEY_RELEVANCE}", calibration(rows)]
    return "\n".join(lines)


def run_ours(questions: list[dict], left_out: list[str], index_dir: Path, rows_out: Path | None) -> list[dict]:
    from rag.chains.path import AnswerPath
    from rag.generators import get_generator

    settings, coll = open_corpus(left_out, index_dir)
    generator = get_generator(settings.backend, settings)
    chain = AnswerPath(coll, generator, settings).qa()
    rows = []
    try:
        for i, q in enumerate(questions, 1):
            t = time.perf_counter()
            result = chain.ask(q["question"]).run()
            rows.append({"id": q["id"], "question": q["question"], "answers": q["answers"], "answer": result.answer,
                         "sources": [s["text"] for s in result.sources],
                         "abstained": bool(getattr(result, "abstained", False)) or bool(_ABSTAIN.search(result.answer)),
                         "cited": [int(n) for n in _CITE.findall(result.answer)],
                         "evidence": getattr(result, "evidence", None), "notes": getattr(result, "notes", []),
                         "top_dense": max((h.get("dense_score") or 0.0 for h in result.retrieved), default=0.0),
                         "seconds": time.perf_counter() - t})
            if i % 10 == 0:
                print(f"ours: {i}/{len(questions)}", file=sys.stderr)
    finally:
        generator.close()
    _write(rows, rows_out)
    return rows


def run_app(questions: list[dict], left_out: list[str], index_dir: Path, workdir: Path,
            rows_out: Path | None) -> list[dict]:
    """Each question asked in the notebook: the real app over the same index, a fresh session a question."""
    from app_client import Notebook

    settings, _ = open_corpus(left_out, index_dir)
    rows = []
    with Notebook(settings, workdir) as app:
        client = app.client()
        for i, q in enumerate(questions, 1):
            t = time.perf_counter()
            turn = app.ask(client, q["question"])
            rows.append({"id": q["id"], "question": q["question"], "answers": q["answers"], "answer": turn["answer"],
                         "sources": turn["sources"],
                         "abstained": turn["abstained"] or bool(_ABSTAIN.search(turn["answer"])),
                         "cited": [int(n) for n in _CITE.findall(turn["answer"])], "status": turn["status"],
                         "error": turn["error"], "seconds": time.perf_counter() - t})
            if i % 10 == 0:
                print(f"app: {i}/{len(questions)}", file=sys.stderr)
    _write(rows, rows_out)
    return rows


def agreement(cli: list[dict], app: list[dict]) -> dict:
    """How far the notebook's answers agree with the CLI's, question by question."""
    pairs = list(zip(cli, app))
    if any(a["id"] != b["id"] for a, b in pairs) or len(cli) != len(app):
        raise ValueError("The CLI's and the app's rows are not the same questions in the same order.")
    ours, theirs = score(cli), score(app)
    return {
        "start_alike": _mean(starts_alike(a["answer"], b["answer"]) for a, b in pairs),
        "same_abstention": _mean(a["abstained"] == b["abstained"] for a, b in pairs),
        "accuracy_difference": theirs["answer_accuracy"] - ours["answer_accuracy"],
        "abstain_unanswerable_difference": theirs["abstain_unanswerable"] - ours["abstain_unanswerable"],
        "abstain_answerable_difference": theirs["abstain_answerable"] - ours["abstain_answerable"],
    }


def starts_alike(a: str, b: str, words: int = 5) -> bool:
    """Whether two answers open with the same words, after SQuAD's normalisation."""
    return normalize(a).split()[:words] == normalize(b).split()[:words]


# The targets: at the same settings the notebook and the CLI give the same answers.
AGREEMENT_TARGETS = {"start_alike": ("≥ 0.90", lambda v: v >= 0.90),
                     "same_abstention": ("", None),
                     "accuracy_difference": ("within 0.04", lambda v: abs(v) <= 0.04),
                     "abstain_unanswerable_difference": ("within 0.1", lambda v: abs(v) <= 0.1),
                     "abstain_answerable_difference": ("within 0.1", lambda v: abs(v) <= 0.1)}


def agreement_table(figures: dict) -> str:
    lines = ["| app against cli | value | target |", "| --- | ---: | --- |"]
    for key, (target, met) in AGREEMENT_TARGETS.items():
        value = figures[key]
        shown = f"{value:+.3f}" if key.endswith("difference") else f"{value:.3f}"
        verdict = "" if met is None else (" (met)" if met(value) else " (**missed**)")
        lines.append(f"| {key.replace('_', ' ')} | {shown} | {target}{verdict} |")
    return "\n".join(lines)


def run_reference(questions: list[dict], left_out: list[str], rows_out: Path | None) -> list[dict]:
    from recipe_runner import run_recipe

    by_id = {q["id"]: q for q in questions}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "questions.jsonl"
        path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
        threads = int(os.environ["RAG_THREADS"]) if os.environ.get("RAG_THREADS") else None
        answers = run_recipe(DATA / "corpus", path, left_out, None, n_threads_batch=threads)
    rows = []
    for a in answers:
        q = by_id[a["id"]]
        text = a.get("answer") or ""
        rows.append({"id": q["id"], "question": q["question"], "answers": q["answers"], "answer": text,
                     "sources": a.get("sources") or [], "abstained": bool(_ABSTAIN.search(text)),
                     "cited": [int(n) for n in _CITE.findall(text)], "seconds": a.get("seconds") or 0.0,
                     "error": a.get("error")})
    _write(rows, rows_out)
    return rows


def calibration(rows: list[dict]) -> str:
    """Abstention rates, unanswerable / answerable, if the chain abstained when the best chunk's cosine is
    under the row's threshold or the best sentence's score is under the column's."""
    ans = [r for r in rows if r["answers"]]
    unans = [r for r in rows if not r["answers"]]
    columns = [x / 100 for x in range(36, 48, 2)] + [0.0]

    def rate(group, chunk, sentence):
        return _mean(r["top_dense"] < chunk or r["key"] < sentence for r in group)

    lines = ["| chunk \\ sentence | " + " | ".join(f"{c:.2f}" if c else "none" for c in columns) + " |",
             "| ---: |" + " ---: |" * len(columns)]
    for chunk in [x / 100 for x in range(34, 52, 2)]:
        lines.append(f"| {chunk:.2f} | " + " | ".join(
            f"{rate(unans, chunk, c):.2f} / {rate(ans, chunk, c):.3f}" for c in columns) + " |")
    return "\n".join(lines)


def _write(rows: list[dict], path: Path | None) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| measure | " + " | ".join(names) + (" | ours / recipe |" if names == ["recipe", "ours"] else " |"),
             "| --- | " + " | ".join("---:" for _ in names) + (" | ---: |" if names == ["recipe", "ours"] else " |")]
    for key in ("context_recall", "answer_accuracy", "f1", "citation_accuracy", "citing", "abstain_unanswerable",
                "abstain_answerable", "median_words", "ends_at_boundary", "seconds_per_answer", "errors", "questions"):
        values = [results[n][key] for n in names]
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in values]
        ratio = ""
        if names == ["recipe", "ours"]:
            ref, ours = results["recipe"][key], results["ours"][key]
            ratio = f" | {ours / ref:.2f}×" if isinstance(ref, (int, float)) and ref and ref == ref else " | "
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + ratio + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="answer this many answerable questions (evenly spread)")
    parser.add_argument("--unanswerable", type=int, default=UNANSWERABLE, help="how many unanswerable ones to ask")
    parser.add_argument("--no-recipe", action="store_true", help="skip the LangChain reference")
    parser.add_argument("--index", type=Path, help="reuse this index directory (default: a temporary one)")
    parser.add_argument("--calibrate", action="store_true",
                        help="retrieval only, every question: abstention rates per relevance threshold")
    parser.add_argument("--rows", type=Path, help="write each system's answers as <ROWS>-<system>.jsonl")
    parser.add_argument("--via", choices=("cli", "app", "both"), default="cli",
                        help="ask rag's answer path here (cli), the notebook through its API (app), or both")
    parser.add_argument("--model", help="answer with this GGUF file (or a name `python -m rag models` lists)")
    parser.add_argument("--backend", choices=("llamacpp", "gpt4all", "openai"), help="the generation backend")
    parser.add_argument("--base-url", help="with --backend openai: the server's API root")
    parser.add_argument("--serve", action="store_true", help="with --backend openai and no --base-url: start "
                        "llama-cpp-python's server on --model (default: the default model) here, on 127.0.0.1")
    args = parser.parse_args(argv)
    server = _choose_model(args)
    try:
        return _run(args)
    finally:
        if server is not None:
            server.kill()


def _choose_model(args):
    """Set the model, backend and server the answer path reads (RAG_MODEL, RAG_BACKEND, RAG_BASE_URL); with
    --serve, start llama-cpp-python's OpenAI-compatible server and return it."""
    for var, value in (("RAG_MODEL", args.model), ("RAG_BACKEND", args.backend), ("RAG_BASE_URL", args.base_url)):
        if value:
            os.environ[var] = value
    if not (args.serve and args.backend == "openai" and not args.base_url):
        return None
    sys.path.insert(0, str(ROOT / "tests"))
    from openai_server import API_KEY, LlamaServer  # the tests' launcher of the server

    from rag.models import resolve_model
    from rag.settings import load_settings

    settings = load_settings()
    model = resolve_model(args.model or "", settings.models_dir)
    server = LlamaServer(model, n_ctx=settings.n_ctx).start()
    os.environ.update(RAG_BASE_URL=server.base_url, RAG_OPENAI_API_KEY=API_KEY, RAG_MODEL="")
    print(f"serving {model.name} at {server.base_url}", file=sys.stderr)
    return server


def _run(args) -> int:
    if not (DATA / "questions.jsonl").exists():
        print(f"skipped: {DATA.resolve()} is absent (the shared data sits beside the checkout)")
        return 0
    questions = [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    answerable, unanswerable, left_out = split_questions(questions)
    for q in unanswerable:
        q["answers"] = []
    asked = sample(answerable, args.limit) + sample(unanswerable, args.unanswerable)
    print(f"{len(asked)} questions: {len(asked) - min(args.unanswerable, len(unanswerable))} answerable, "
          f"{min(args.unanswerable, len(unanswerable))} unanswerable (articles left out: {', '.join(left_out)})",
          file=sys.stderr)
    if args.calibrate:
        with tempfile.TemporaryDirectory() as tmp:
            print(calibrate(answerable + unanswerable, left_out, args.index or Path(tmp)))
        return 0
    out = {}
    rows_path = (lambda name: args.rows.with_name(f"{args.rows.name}-{name}.jsonl")) if args.rows else (lambda _: None)
    if not args.no_recipe:
        out["recipe"] = score(run_reference(asked, left_out, rows_path("recipe")))
    rows = {}
    cli = "ours" if args.via == "cli" else "cli"  # the CLI's column keeps its name when it is the only one
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index or Path(tmp) / "index"
        if args.via in ("cli", "both"):
            rows[cli] = run_ours(asked, left_out, index, rows_path(cli))
        if args.via in ("app", "both"):
            rows["app"] = run_app(asked, left_out, index, Path(tmp) / "app", rows_path("app"))
    out.update({name: score(r) for name, r in rows.items()})
    from rag.settings import load_settings

    used = load_settings()
    print(f"answered with backend {used.backend}, model {used.model or 'the default'}"
          f"{' at ' + used.base_url if used.backend == 'openai' else ''}, answer style {used.answer_style}\n")
    print(table(out))
    if args.via == "both":
        print()
        print(agreement_table(agreement(rows["cli"], rows["app"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
