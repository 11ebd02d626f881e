"""Runs the loaders' peers on files, in benchmarks/.venv-peers (`make bench-peers-venv`); prints JSON.

    .venv-peers/bin/python peers_runner.py --markitdown FILE... --rapidocr IMAGE...

For each file: {"tool", "file", "text", "seconds", "error"}. Standard library and the peers only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def markitdown(paths: list[str]) -> list[dict]:
    from markitdown import MarkItDown

    converter = MarkItDown()
    return [_timed("markitdown", path, lambda p: converter.convert(p).text_content) for path in paths]


def rapidocr(paths: list[str]) -> list[dict]:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    engine(paths[0]) if paths else None  # the first call loads the models: not counted

    def read(path: str) -> str:
        result, _ = engine(path)
        return "\n".join(line[1] for line in result or [])

    return [_timed("rapidocr", path, read) for path in paths]


def _timed(tool: str, path: str, read) -> dict:
    started = time.perf_counter()
    try:
        text, error = read(path), ""
    except Exception as exc:  # a peer's failure on one file is a result, not the end of the run
        text, error = "", f"{type(exc).__name__}: {str(exc)[:200]}"
    return {"tool": tool, "file": path, "text": text, "seconds": time.perf_counter() - started, "error": error}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markitdown", nargs="*", default=[])
    parser.add_argument("--rapidocr", nargs="*", default=[])
    args = parser.parse_args()
    json.dump(markitdown(args.markitdown) + rapidocr(args.rapidocr), sys.stdout)


if __name__ == "__main__":
    main()
