"""Ingest every file in ../shared/data/docs: each is indexed with text or refused with one sentence.

    python benchmarks/bench_docs.py [--big-over 1000000] [--chunk-size 500]

Prints one row per file (outcome, chunks, seconds, progress calls, the error sentence) and, for
files over --big-over bytes, the peak resident memory of a process that ingested only that file
(ru_maxrss of a fresh child, so each figure includes Python, torch and the embedding model). The
small files share one child; its peak is printed too. Target: every big file under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / ".." / "shared" / "data" / "docs"
RSS_LIMIT_MB = 2048


def ingest(files: list[str], index_dir: str, chunk_size: int) -> list[dict]:
    """Ingest each file into a fresh collection of its own; one row per file."""
    sys.path.insert(0, str(ROOT))
    from rag.collection import Collection
    from rag.settings import load_settings

    rows = []
    for n, file in enumerate(files):
        settings = load_settings(environ={}, index_dir=index_dir, chunk_size=chunk_size)
        coll = Collection.open(settings, f"doc{n}")
        calls: dict[str, int] = {}

        def progress(stage: str, done: int, total: int, source: str | None) -> None:
            calls[stage] = calls.get(stage, 0) + 1

        started = time.perf_counter()
        report = coll.ingest([file], progress=progress)
        seconds = time.perf_counter() - started
        (result,) = report.results
        rows.append({"file": Path(file).name, "outcome": result.status, "chunks": result.chunks,
                     "seconds": round(seconds, 1), "progress": calls, "error": result.error,
                     "integrity": coll.store.integrity_problems()})
        coll.store.close()
    return rows


def child_main(args) -> int:
    rows = ingest(args.child, args.index, args.chunk_size)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"rows": rows, "peak_mb": round(peak_mb)}))
    return 0


def run_child(files: list[Path], chunk_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--index", tmp, "--chunk-size", str(chunk_size), "--child", *map(str, files)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"child failed on {[f.name for f in files]}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-over", type=int, default=1_000_000, help="bytes; bigger files get a process each")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    if not DOCS.is_dir():
        print(f"{DOCS} is absent: the shared data sits beside the checkout")
        return 1
    files = sorted(p for p in DOCS.iterdir() if p.is_file())
    small = [f for f in files if f.stat().st_size <= args.big_over]
    big = [f for f in files if f.stat().st_size > args.big_over]
    rows, peaks = [], []
    result = run_child(small, args.chunk_size)
    rows += result["rows"]
    peaks.append((f"{len(small)} small files, one process", result["peak_mb"]))
    for file in big:
        print(f"ingesting {file.name} ({file.stat().st_size / 1e6:.1f} MB) ...", flush=True)
        result = run_child([file], args.chunk_size)
        rows += result["rows"]
        peaks.append((file.name, result["peak_mb"]))

    print(f"\n| file | outcome | chunks | seconds | progress calls | error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: r["file"]):
        calls = ", ".join(f"{k} {v}" for k, v in r["progress"].items())
        print(f"| {r['file']} | {r['outcome']} | {r['chunks']} | {r['seconds']} | {calls} | {r['error']} |")
    print("\n| process | peak RSS (MB) | limit |")
    print("| --- | --- | --- |")
    for name, mb in peaks:
        print(f"| {name} | {mb} | {RSS_LIMIT_MB} |")
    indexed = sum(r["outcome"] == "added" for r in rows)
    refused = [r for r in rows if r["outcome"] == "failed"]
    bad = [r["file"] for r in rows if r["integrity"] or (r["outcome"] == "failed" and
                                                          (not r["error"] or "\n" in r["error"]))]
    over = [name for name, mb in peaks if mb > RSS_LIMIT_MB]
    print(f"\n{len(rows)} files: {indexed} indexed, {len(refused)} refused with one sentence; "
          f"problems: {bad or 'none'}; over {RSS_LIMIT_MB} MB: {over or 'none'}")
    return 0 if not bad and not over else 1


if __name__ == "__main__":
    sys.exit(main())
