"""`python -m rag`: extract, ingest, search, docs, delete (and the generation commands)."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Iterator

from rag.cli_args import add_embedding_args
from rag.errors import RagError
from rag.locations import OCR_MARK, where
from rag.settings import load_settings


def _add_index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", metavar="DIR", help="index directory (default: $RAG_INDEX_DIR or a per-user data dir)")
    parser.add_argument("--collection", metavar="NAME", help="collection name (default: 'default')")
    parser.add_argument("--store", metavar="URI", help="where collections live: a directory, milvus://host:port, "
                        "milvus+https://host or milvus+lite:///path.db (default: $RAG_STORE, else --index)")
    add_embedding_args(parser)


def settings_from_args(args: argparse.Namespace, **extra):
    """Settings from the environment with the flags that were given on top."""
    return load_settings(index_dir=getattr(args, "index", None), collection=getattr(args, "collection", None),
                         store=getattr(args, "store", None), embed_url=getattr(args, "embed_url", None),
                         embedding_model=getattr(args, "embedding_model", None), **extra)


def _print_json(data) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


# -- extract --------------------------------------------------------------------------------------


def cmd_extract(args) -> int:
    from rag.extract import decode_html, document_json, extract_html
    from rag.fetch import fetch
    from rag.loaders import is_url

    settings = settings_from_args(args)
    if is_url(args.source):
        page = fetch(args.source, settings)
        html = decode_html(page.body, page.headers.get("content-type"))
        doc = extract_html(html, args.url or page.final_url, settings.extractor)
    else:
        path = Path(args.source)
        try:
            html = path.read_bytes()
        except OSError as exc:
            raise RagError(f"Cannot read {path}: {exc.strerror}; check the path.") from None
        doc = extract_html(html, args.url, settings.extractor)
    if args.json:
        _print_json(document_json(doc))
    else:
        print(f"# {doc.title}\n" if doc.title else "", end="")
        print(doc.text)
    return 0


# -- ingest ---------------------------------------------------------------------------------------


def _stderr_progress(stage: str, done: int, total: int, source: str | None = None) -> None:
    if sys.stderr.isatty():
        print(f"\r{stage:8} {done}/{total}", end="", file=sys.stderr, flush=True)


def cmd_ingest(args) -> int:
    from rag.collection import Collection

    settings = settings_from_args(args, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    report = Collection.open(settings).ingest(args.sources, progress=_stderr_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for failure in report.errors:
        print(f"error: {failure['error']}", file=sys.stderr)
    for note in report.warnings:
        print(f"warning: {note['source']}: {note['warning']}", file=sys.stderr)
    if args.json:
        _print_json(report.to_dict())
    else:
        for r in report.results:
            if r.status != "failed":
                print(f"{r.status:9} {r.source}  {r.chunks} chunks  {r.title}")
        print(
            f"{report.documents_added} added, {report.documents_replaced} replaced, "
            f"{report.documents_unchanged} unchanged, {len(report.errors)} failed; "
            f"{report.chunks_added} chunks in {report.seconds:.1f} s"
        )
    return 1 if report.errors else 0


# -- search ---------------------------------------------------------------------------------------


def _queries(path: str) -> Iterator[tuple[str, str]]:
    """(id, text) pairs from a file of one query per line, or JSONL with `_id` and `text`."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"Cannot read queries from {path} ({exc}); give a UTF-8 text or JSONL file.") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
                yield str(item["_id"]), str(item["text"])
            except (ValueError, KeyError):
                raise RagError(f"{path}:{n} is not a JSON object with '_id' and 'text'.") from None
        else:
            yield str(n), line.strip()


def cmd_search(args) -> int:
    from rag.collection import Collection

    if not args.query and not args.queries:
        raise RagError("Give a QUERY or --queries FILE.")
    coll = Collection.open(settings_from_args(args), create=False)
    if args.queries:
        queries = list(_queries(args.queries))
        vectors = [None] * len(queries)
        if args.mode != "bm25":  # one batched pass of the model is much cheaper than a call per query
            vectors = coll.embedder.embed([text for _, text in queries])
        for (query_id, text), vector in zip(queries, vectors):
            hits = coll.search(text, args.k, args.mode, query_vector=vector)
            _print_json({"query_id": query_id, "results": [_result(h) for h in hits]})
        return 0
    hits = coll.search(args.query, args.k, args.mode)
    if args.json:
        _print_json([_result(h) for h in hits])
        return 0
    for h in hits:
        place = (", " + where(h) if where(h) else "") + (f" [{OCR_MARK}]" if h.ocr else "")
        print(f"[{h.rank}] {h.score:.4f}  {h.title or h.source}{place}  ({h.source})")
        print("    " + " ".join(h.text.split())[:300])
    return 0


def _result(hit) -> dict:
    data = hit.to_dict()
    data.pop("chunk_id", None)
    return data


# -- docs, delete, collections --------------------------------------------------------------------


def cmd_docs(args) -> int:
    from rag.collection import Collection

    docs = Collection.open(settings_from_args(args), create=False).documents()
    if args.json:
        _print_json([vars(d) for d in docs])
        return 0
    for d in docs:
        print(f"{d.chunks:6} chunks  {d.source}  {d.title}")
    print(f"{len(docs)} documents")
    return 0


def cmd_delete(args) -> int:
    from rag.collection import Collection
    from rag.loaders import is_url

    coll = Collection.open(settings_from_args(args), create=False)
    source = args.source
    if not coll.store.find(source) and not is_url(source):
        source = str(Path(source).expanduser().absolute())  # files are stored under their absolute path
    if not coll.delete(source):
        raise RagError(f"{args.source!r} is not in collection {coll.name!r}; see `python -m rag docs`.")
    print(f"deleted {args.source}")
    return 0


def cmd_collections(args) -> int:
    """Each collection by the name the CLI takes; one a notebook user made says whose it is and what they call
    it (the store keeps it under a namespaced name, rag.access), and one in the notebook's trash says so."""
    import time

    from rag import access
    from rag.collection import list_collections

    settings = settings_from_args(args)
    for name in list_collections(settings):
        record = access.read(settings, name)
        notes = [f"{record.owner}'s {access.label(name)!r}"] if record and record.owner and name != access.label(name) \
            else []
        if record and record.deleted_at:
            notes.append(f"in the trash since {time.strftime('%Y-%m-%d %H:%M', time.localtime(record.deleted_at))}")
        print(name + (f"  ({'; '.join(notes)})" if notes else ""))
    return 0


# -- parser and main ------------------------------------------------------------------------------


# The CLI checks no owner (rag/access.py): whoever runs it can read the store's files anyway.
DESCRIPTION = ("Local retrieval-augmented generation. On a notebook's collections the CLI acts as its admin: it "
               "reads, changes and deletes every collection in --index or --store, whoever owns it under the "
               "notebook's --auth, and a collection it creates belongs to the admin.")


def build_parser() -> argparse.ArgumentParser:
    from rag import limits
    from rag.retrieval import MODES

    parser = argparse.ArgumentParser(prog="python -m rag", description=DESCRIPTION, epilog=limits.describe())
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", help="extract the article from a URL or a saved .html file")
    p.add_argument("source")
    p.add_argument("--url", help="the original address of a saved page")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("ingest", help="add URLs, files and directories to a collection")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    _add_index_args(p)
    p.add_argument("--chunk-size", type=int, metavar="N")
    p.add_argument("--chunk-overlap", type=int, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="search a collection")
    p.add_argument("query", nargs="?")
    p.add_argument("--queries", metavar="FILE", help="one query per line, or JSONL with _id and text")
    _add_index_args(p)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--mode", choices=MODES, default="hybrid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("docs", help="list the documents in a collection")
    _add_index_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("delete", help="delete a document and its vectors")
    p.add_argument("source")
    _add_index_args(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("collections", help="list the collections")
    _add_index_args(p)
    p.set_defaults(func=cmd_collections)

    from rag.cli_generate import register

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RagError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
