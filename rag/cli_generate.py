"""`python -m rag ask | summarize | models`: the generation commands, registered by rag.cli."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.cli_args import add_embedding_args
from rag.errors import RagError
from rag.generators import available_backends
from rag.locations import OCR_MARK, is_ocr, where
from rag.quote import STYLES
from rag.retrieval import MODES


def register(subparsers) -> None:
    """Add the ask, summarize and models subcommands to rag.cli's parser."""
    p = subparsers.add_parser("ask", help="answer a question from a collection, with sources")
    p.add_argument("question", nargs="?")
    p.add_argument("--questions", metavar="FILE", help="answer each line; one JSON line per answer")
    p.add_argument("--chat", action="store_true", help="with --questions: the lines are turns of one conversation")
    p.add_argument("--source", action="append", default=[], metavar="SOURCE",
                   help="search only this document (repeat for several), as ticking it in the notebook does")
    p.add_argument("--answer-style", choices=STYLES,
                   help="quote: the answer is whole source sentences or clauses, quoted, that the model chose; free: "
                   "the model writes it; auto (default): quote with small models (RAG_ANSWER_STYLE)")
    _add_common(p)
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("summarize", help="summarise retrieved chunks or whole documents")
    p.add_argument("query", nargs="?")
    p.add_argument("--source", action="append", default=[], metavar="SOURCE", help="summarise this whole document "
                   "part by part, one labelled line per main part (repeat for several)")
    p.add_argument("--answer-style", choices=STYLES,
                   help="for --source: quote: each part's line is its most central sentence, quoted; free: the model "
                   "writes each line; auto (default): quote with small models (RAG_ANSWER_STYLE)")
    _add_common(p)
    p.set_defaults(func=cmd_summarize)

    p = subparsers.add_parser("models", help="list the models on this machine and the recommended ones")
    p.add_argument("--download", metavar="NAME", help="download a catalogue model into the models dir")
    p.add_argument("--n-ctx", type=int, metavar="N", help="context size for the RAM figures (default: each model's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR", help="index directory")
    p.add_argument("--store", metavar="URI", help="a directory or milvus://host:port (RAG_STORE)")
    p.add_argument("--collection", metavar="NAME", help="collection name")
    add_embedding_args(p)
    p.add_argument("--backend", choices=available_backends())
    p.add_argument("--model", metavar="PATH|NAME",
                   help="a .gguf file or a name `models` lists; with --backend openai, the server's model")
    p.add_argument("--base-url", metavar="URL", help="with --backend openai: the server's API root, e.g. "
                   "http://127.0.0.1:8080/v1 (RAG_BASE_URL); the key comes from RAG_OPENAI_API_KEY")
    p.add_argument("--api-key-file", metavar="FILE", help="with --backend openai: a file holding the API key")
    p.add_argument("--timeout", type=float, metavar="S", help="with --backend openai: seconds to wait for the "
                   "first token (RAG_REQUEST_TIMEOUT, default 120)")
    p.add_argument("-k", type=int, metavar="N", help="chunks to retrieve")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--max-tokens", type=int, metavar="N")
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens")
    p.add_argument("--json", action="store_true")


def _settings(args):
    from rag.settings import load_settings

    return load_settings(index_dir=args.index, store=args.store, collection=args.collection, backend=args.backend,
                         model=args.model, k=args.k, mode=args.mode, max_tokens=args.max_tokens,
                         temperature=args.temperature, seed=args.seed, n_ctx=args.n_ctx, base_url=args.base_url,
                         api_key_file=args.api_key_file, request_timeout=args.timeout,
                         answer_style=getattr(args, "answer_style", None), embed_url=args.embed_url,
                         embedding_model=args.embedding_model)


def _open(args):
    """The settings, the collection and the loaded generator for a command."""
    from rag.collection import Collection
    from rag.generators import get_generator

    settings = _settings(args)
    coll = Collection.open(settings, name=args.collection, create=False)
    generator = get_generator(settings.backend, settings)
    if note := first_run_note(settings, generator):
        print(note, file=sys.stderr)
    return settings, coll, generator


def first_run_note(settings, generator) -> str | None:
    """Once per models dir, when the tiny default model answers: say so, and what else there is."""
    from rag.models import DEFAULT_MODEL, default_model_path, discover, is_default_model

    default = default_model_path()
    marker = Path(settings.models_dir) / ".told-about-the-default-model"
    path = getattr(generator, "model_path", None)
    if default is None or path is None or not is_default_model(path) or marker.exists():
        return None
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # then the note is shown again next time, which is harmless
    others = [m.name for m in discover(settings.models_dir) if m.path != default][:5]
    offer = (f"models found on this machine: {', '.join(others)} (use --model NAME)" if others else
             "no other models were found on this machine; `python -m rag models` lists recommended ones to "
             "download, and --backend openai uses a server")
    return (f"note: answering with the default {DEFAULT_MODEL}, a tiny model meant for tests and first runs, "
            f"so expect weak answers; {offer}.")


def _emit(answer, as_json: bool) -> None:
    """Stream the answer's text to stdout, or print its result as one JSON line."""
    if as_json:
        result = answer.run()
        print(json.dumps(result.to_dict(), ensure_ascii=False, default=str), flush=True)
        return
    for piece in answer:
        sys.stdout.write(piece)
        sys.stdout.flush()
    print()
    result = answer.result
    if result.abstained or result.citations_added or result.notes:
        # What was streamed may differ from the final answer (an abstention, a citation added, a loop cut).
        print(f"answer: {result.answer}")
    for s in result.sources:
        place = (", " + where(s) if where(s) else "") + (f" [{OCR_MARK}]" if is_ocr(s) else "")
        print(f"[{s['n']}] {s.get('title') or s.get('source', '')}{place} ({s.get('source', '')})")
    for e in result.evidence:
        print(f"evidence [{e['n']}] {e['text']!r} (score {e['score']:.2f})")
    for sentence in result.unsupported:
        print(f"unsupported: {sentence!r}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_ask(args) -> int:
    from rag.chains.path import AnswerPath

    if not args.question and not args.questions:
        raise RagError("Give a QUESTION or --questions FILE.")
    settings, coll, generator = _open(args)
    try:
        path = AnswerPath(coll, generator, settings, sources=args.source or None)
        chain = path.chat() if args.chat else path.qa()
        if not args.questions:
            _emit(chain.ask(args.question), args.json)
            return 0
        history: list[tuple[str, str]] = []
        for question in _lines(args.questions):
            answer = chain.ask(question, history) if args.chat else chain.ask(question)
            _emit(answer, True)
            history.append((question, answer.result.answer))
        return 0
    finally:
        generator.close()


def _lines(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"Cannot read questions from {path} ({exc}); give a UTF-8 text file.") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise RagError(f"{path} holds no questions; write one per line.")
    return lines


def cmd_summarize(args) -> int:
    from rag.chains.path import AnswerPath

    settings, coll, generator = _open(args)
    try:
        documents = [coll.document(s) for s in args.source]
        chain = AnswerPath(coll, generator, settings).summary()
        answer = chain.summarize(args.query, documents=documents or None)
        if args.json or answer.prepared.strategy != "parts":
            _emit(answer, args.json)
        else:
            _emit_parts(answer)
        if not args.json:
            print(f"strategy: {answer.result.strategy}", file=sys.stderr)
        return 0
    finally:
        generator.close()


def _emit_parts(answer) -> None:
    """Stream a summary made part by part, one labelled line a part; then, on stderr, what the model wrote
    and what was quoted, its tokens and times summed over the model's calls, and its notes."""
    streamed = []
    for piece in answer:
        sys.stdout.write(piece)
        sys.stdout.flush()
        streamed.append(piece)
    result = answer.result
    if result.answer != "".join(streamed).strip():  # a line cut where the model began repeating itself
        print(f"summary:\n{result.answer}")
    quoted = sum(p["kind"] == "quote" for p in result.parts)
    t = result.timings
    calls = (f"{t['model_calls']} model calls, answer {result.completion_tokens} tokens, time to first token "
             f"{t.get('ttft_s') or 0:.2f} s (first call; {t.get('ttft_sum_s', 0):.2f} s over all)"
             if t.get("model_calls") else "no model call")
    print(f"parts: {len(result.parts)} ({quoted} quoted from the document, {len(result.parts) - quoted} written by "
          f"the model); {calls}; total {t['total_s']:.2f} s", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_models(args) -> int:
    from rag.models import CATALOGUE, discover, download_model, memory_mb
    from rag.settings import load_settings

    settings = load_settings()
    if args.download:
        if args.download not in CATALOGUE:
            raise RagError(f"Unknown model {args.download!r}; available: {', '.join(CATALOGUE)}.")
        print(download_model(CATALOGUE[args.download], settings.models_dir))
        return 0
    total, free = memory_mb()
    found = discover(settings.models_dir, getattr(args, "n_ctx", None))
    on_disk = {m.path.name: m for m in found}
    catalogue = [{"name": e.name, "repo": e.repo, "file": e.filename, "size_mb": e.size_mb, "licence": e.licence,
                  "ram_mb": e.ram_mb, "fits": e.fits(total), "description": e.description,
                  "path": str(on_disk[e.filename].path) if e.filename in on_disk else None}
                 for e in CATALOGUE.values()]
    if args.json:
        print(json.dumps({"found": [m.to_dict() for m in found], "catalogue": catalogue, "ram_total_mb": total,
                          "ram_free_mb": free, "models_dir": str(settings.models_dir)}))
        return 0
    print(f"On this machine ({_mb(free)} of {_mb(total)} RAM free):")
    for m in found:
        fits = "" if free is None or m.ram_mb <= free else "  (needs more RAM than is free)"
        print(f"  {m.name:40} {m.quantisation:8} {_mb(m.size_mb):>8}  ctx {m.context_length or '?':>6}  "
              f"RAM {_mb(m.ram_mb):>8}  {m.source}{fits}")
        print(f"  {'':40} {m.path}")
    if not found:
        print("  no GGUF models found")
    print("\nRecommended (download with `python -m rag models --download NAME`):")
    for r in catalogue:
        fits = {True: "fits", False: "too big", None: "?"}[r["fits"]]
        print(f"  {r['name']:14} {_mb(r['size_mb']):>8}  RAM {_mb(r['ram_mb']):>8} {fits:8} {r['licence']:11} "
              f"{'on disk' if r['path'] else ''}")
        print(f"  {'':14} {r['repo']}/{r['file']}: {r['description']}")
    print(f"models dir: {settings.models_dir}")
    return 0


def _mb(mb: int | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb} MB"
