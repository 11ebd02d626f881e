"""Formats: each file of ../shared/data/formats indexed and found by a phrase of its own text.

    python benchmarks/bench_formats.py [--no-peers] [--k 5]

manifest.json there names a phrase from each file. For the project's loaders, and for the peers in the
same run where `make bench-peers-venv` built them (markitdown's text for the same files; rapidocr for the
files whose phrase is in an image, against our Tesseract):
  indexed     the file loaded and gave chunks (peers: it gave text)
  keyword@k   the phrase, searched by BM25, has the file among the top k hits
  hybrid@k    the same by hybrid search (dense + BM25)
  ocr acc     where the phrase is in an image: 1 - (edit distance of the phrase to its best-matching span
              of the text) / phrase length, on lower-cased text with runs of whitespace made one space
  s/page      seconds to load the file, over its pages (slides, sheets, chapters, frames; 1 otherwise)
Each tool's texts are indexed into a collection of their own, with the same embedding model and chunking.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMATS = ROOT / ".." / "shared" / "data" / "formats"
PEERS_PYTHON = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
PEERS_RUNNER = ROOT / "benchmarks" / "peers_runner.py"


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def ocr_accuracy(phrase: str, text: str) -> float:
    """1 - the phrase's edit distance to its best-matching span of text, over the phrase's length."""
    phrase, text = normalise(phrase), normalise(text)
    if not phrase:
        return 1.0
    previous = [0] * (len(text) + 1)  # a span may start anywhere in the text: row 0 costs nothing
    for i, p in enumerate(phrase, start=1):
        current = [i] + [0] * len(text)
        for j, t in enumerate(text, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (p != t))
        previous = current
    return max(0.0, 1 - min(previous) / len(phrase))


def load_ours(entries: list[dict], settings) -> dict[str, dict]:
    from rag.errors import RagError
    from rag.loaders import load_source

    out = {}
    for entry in entries:
        path = str((FORMATS / entry["file"]).resolve())
        started = time.perf_counter()
        try:
            doc, error = load_source(path, settings), ""
        except RagError as exc:
            doc, error = None, str(exc)
        seconds = time.perf_counter() - started
        pages = max(len(doc.pages), doc.metadata.get("page_count", 1)) if doc else 1
        out[entry["file"]] = {"doc": doc, "text": doc.text if doc else "", "error": error,
                              "seconds": seconds, "pages": max(pages, 1)}
    return out


def run_peers(entries: list[dict], tmp: Path) -> dict[str, dict[str, dict]]:
    """{tool: {file: result}} from the peers' venv, or {} where it is not built."""
    if not PEERS_PYTHON.exists():
        print(f"(peers skipped: {PEERS_PYTHON.relative_to(ROOT)} is absent; make bench-peers-venv)", file=sys.stderr)
        return {}
    files = [str((FORMATS / e["file"]).resolve()) for e in entries]
    images = [_as_image(FORMATS / e["file"], tmp) for e in entries if e["needs_ocr"]]
    done = subprocess.run([str(PEERS_PYTHON), str(PEERS_RUNNER), "--markitdown", *files, "--rapidocr", *images],
                          capture_output=True, text=True, check=True)
    by_tool: dict[str, dict[str, dict]] = {}
    names = {str((FORMATS / e["file"]).resolve()): e["file"] for e in entries}
    names.update({image: e["file"] for image, e in zip(images, [e for e in entries if e["needs_ocr"]])})
    for result in json.loads(done.stdout):
        by_tool.setdefault(result["tool"], {})[names[result["file"]]] = result
    return by_tool


def _as_image(path: Path, tmp: Path) -> str:
    """An image file as it is; a scanned PDF's first page rendered at 300 dpi, as the loader renders it."""
    if path.suffix.lower() != ".pdf":
        return str(path.resolve())
    import pypdfium2

    image = tmp / (path.stem + ".png")
    pypdfium2.PdfDocument(str(path))[0].render(scale=300 / 72).to_pil().save(image)
    return str(image)


def phrase_hits(texts: dict[str, str], entries: list[dict], settings, name: str, k: int) -> dict[str, dict]:
    """Index each file's text as a document, then search each phrase by keyword and hybrid."""
    from rag.collection import Collection
    from rag.documents import Document

    coll = Collection.open(settings, name=name)
    docs = [Document(source=file, text=text, title=Path(file).stem) for file, text in texts.items() if text.strip()]
    report = coll.add_documents(docs)
    indexed = {r.source for r in report.results if r.status in ("added", "unchanged", "replaced") and r.chunks}
    found = {}
    for entry in entries:
        found[entry["file"]] = {"indexed": entry["file"] in indexed}
        for mode in ("bm25", "hybrid"):
            hits = coll.search(entry["phrase"], k=k, mode=mode)
            found[entry["file"]][mode] = any(hit.source == entry["file"] for hit in hits)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-peers", action="store_true", help="only the project's loaders")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()

    from rag.settings import load_settings

    entries = json.loads((FORMATS / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(index_dir=Path(tmp) / "index")
        ours = load_ours(entries, settings)
        tools = {"ours": {file: r["text"] for file, r in ours.items()}}
        peers = {} if args.no_peers else run_peers(entries, Path(tmp))
        if "markitdown" in peers:
            tools["markitdown"] = {file: r["text"] for file, r in peers["markitdown"].items()}
        results = {tool: phrase_hits(texts, entries, settings, f"bench-{tool}", args.k) for tool, texts in tools.items()}
    print(f"{'file':42} {'tool':10} indexed keyword@{args.k} hybrid@{args.k}  s/page  ocr acc")
    for entry in entries:
        file = entry["file"]
        for tool, found in results.items():
            seconds = ours[file]["seconds"] / ours[file]["pages"] if tool == "ours" else peers[tool][file]["seconds"]
            text = tools[tool][file]
            accuracy = f"{ocr_accuracy(entry['phrase'], text):.3f}" if entry["needs_ocr"] else "-"
            print(f"{file:42} {tool:10} {_yes(found[file]['indexed']):7} {_yes(found[file]['bm25']):9} "
                  f"{_yes(found[file]['hybrid']):8} {seconds:7.3f}  {accuracy}")
        if entry["needs_ocr"] and "rapidocr" in peers:
            result = peers["rapidocr"][file]
            print(f"{file:42} {'rapidocr':10} {'':7} {'':9} {'':8} {result['seconds']:7.3f}  "
                  f"{ocr_accuracy(entry['phrase'], result['text']):.3f}")
    print()
    for tool, found in results.items():
        n = len(entries)
        print(f"{tool:10} indexed {sum(f['indexed'] for f in found.values())}/{n}, "
              f"keyword@{args.k} {sum(f['bm25'] for f in found.values())}/{n}, "
              f"hybrid@{args.k} {sum(f['hybrid'] for f in found.values())}/{n}")
    ocr_files = [e for e in entries if e["needs_ocr"]]
    for tool, texts in [("ours", tools["ours"])] + ([("rapidocr", {f: r["text"] for f, r in peers["rapidocr"].items()})]
                                                   if "rapidocr" in peers else []):
        mean = sum(ocr_accuracy(e["phrase"], texts.get(e["file"], "")) for e in ocr_files) / max(len(ocr_files), 1)
        print(f"OCR {tool:9} mean character accuracy {mean:.3f} over {len(ocr_files)} files")
    failed = [f"{file}: {r['error']}" for file, r in ours.items() if r["error"]]
    if failed:
        print("\nnot loaded:\n  " + "\n  ".join(failed))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


if __name__ == "__main__":
    main()
