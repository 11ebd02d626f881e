"""`python -m rag ask | summarize | models`: the generation commands, registered by rag.cli."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.errors import RagError


def register(subparsers) -> None:
    """Add the ask, summarize and models subcommands to rag.cli's parser."""
    p = subparsers.add_parser("ask", help="answer a question from a collection, with sources")
    p.add_argument("question", nargs="?")
    p.add_argument("--questions", metavar="FILE", help="answer each line; one JSON line per answer")
    p.add_argument("--chat", action="store_true", help="with --questions: the lines are turns of one conversation")
    _add_common(p)
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("summarize", help="summarise retrieved chunks or whole documents")
    p.add_argument("query", nargs="?")
    p.add_argument("--source", action="append", default=[], metavar="SOURCE", help="summarise this whole document")
    _add_common(p)
    p.set_defaults(func=cmd_summarize)

    p = subparsers.add_parser("models", help="list recommended models and those on disk")
    p.add_argument("--download", metavar="NAME", help="download a catalogue model into the models dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR", help="index directory")
    p.add_argument("--collection", metavar="NAME", help="collection name")
    p.add_argument("--backend", choices=["llamacpp", "gpt4all"])
    p.add_argument("--model", metavar="PATH|NAME", help="a .gguf file or a catalogue name (see `models`)")
    p.add_argument("-k", type=int, metavar="N", help="chunks to retrieve")
    p.add_argument("--mode", choices=["dense", "bm25", "hybrid"])
    p.add_argument("--max-tokens", type=int, metavar="N")
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens")
    p.add_argument("--json", action="store_true")


def _settings(args):
    from rag.settings import load_settings

    return load_settings(index_dir=args.index, collection=args.collection, backend=args.backend, model=args.model,
                         k=args.k, mode=args.mode, max_tokens=args.max_tokens, temperature=args.temperature,
                         seed=args.seed, n_ctx=args.n_ctx)


def _open(args):
    """The settings, the collection and the loaded generator for a command."""
    from rag.collection import Collection
    from rag.generators import get_generator

    settings = _settings(args)
    coll = Collection.open(settings, name=args.collection, create=False)
    return settings, coll, get_generator(settings.backend, settings)


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
        where = f", page {s['page']}" if s.get("page") is not None else ""
        print(f"[{s['n']}] {s.get('title') or s.get('source', '')}{where} ({s.get('source', '')})")
    for e in result.evidence:
        print(f"evidence [{e['n']}] {e['text']!r} (score {e['score']:.2f})")
    for sentence in result.unsupported:
        print(f"unsupported: {sentence!r}")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_ask(args) -> int:
    from rag.chains import ChatChain, QAChain

    if not args.question and not args.questions:
        raise RagError("Give a QUESTION or --questions FILE.")
    settings, coll, generator = _open(args)
    try:
        chain_cls = ChatChain if args.chat else QAChain
        chain = chain_cls(coll, generator, k=settings.k, mode=settings.mode, max_tokens=settings.max_tokens)
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
    from rag.chains import SummarizeChain

    settings, coll, generator = _open(args)
    try:
        documents = [(d.title or d.source, d.text) for d in (coll.document(s) for s in args.source)]
        chain = SummarizeChain(coll, generator, k=settings.k, mode=settings.mode, max_tokens=settings.max_tokens)
        answer = chain.summarize(args.query, documents=documents or None)
        _emit(answer, args.json)
        if not args.json:
            print(f"strategy: {answer.result.strategy}", file=sys.stderr)
        return 0
    finally:
        generator.close()


def cmd_models(args) -> int:
    from rag.models import CATALOGUE, download_model, list_local_models
    from rag.settings import load_settings

    settings = load_settings()
    if args.download:
        if args.download not in CATALOGUE:
            raise RagError(f"Unknown model {args.download!r}; available: {', '.join(CATALOGUE)}.")
        print(download_model(CATALOGUE[args.download], settings.models_dir))
        return 0
    local = list_local_models(settings.models_dir)
    on_disk = {p.name: p for p in local}
    rows = [{"name": e.name, "repo": e.repo, "file": e.filename, "size_mb": e.size_mb, "licence": e.licence,
             "description": e.description, "path": str(on_disk[e.filename]) if e.filename in on_disk else None}
            for e in CATALOGUE.values()]
    others = [str(p) for p in local if p.name not in {e.filename for e in CATALOGUE.values()}]
    if args.json:
        print(json.dumps({"catalogue": rows, "other_files": others, "models_dir": str(settings.models_dir)}))
        return 0
    for r in rows:
        print(f"{r['name']:14} {r['size_mb']:>6} MB  {r['licence']:11} {r['path'] or 'not downloaded'}")
        print(f"{'':14} {r['repo']}/{r['file']}  {r['description']}")
    for path in others:
        print(f"{'(local)':14} {path}")
    print(f"models dir: {settings.models_dir}")
    return 0
