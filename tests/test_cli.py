"""`python -m rag` as scripts use it: real processes, a real HTTP server on 127.0.0.1, the real model."""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ARTICLE = """<!doctype html><html><head><title>Honeybees dance | Nature Notes</title>
<meta name="author" content="Ada Field"><meta property="article:published_time" content="2024-05-02">
</head><body><nav>Home | About | Subscribe</nav><article><h1>Honeybees dance</h1>
<p>Honeybees perform a waggle dance to tell their sisters where flowers are. The angle of the dance
relative to the sun gives the direction, and its length gives the distance to the food.</p>
<p>Scientists decoded this language in the twentieth century, and it remains one of the most studied
forms of animal communication. Foragers repeat the dance many times inside the dark hive.</p>
</article><footer>Copyright Nature Notes</footer></body></html>"""


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "bees.html").write_text(ARTICLE, encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def rag(*args, index=None, check=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAG_INDEX_DIR", None)
    cmd = [sys.executable, "-m", "rag", *args] + (["--index", str(index)] if index else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


@pytest.fixture
def corpus(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "tea.txt").write_text("Green tea is made from unoxidised leaves.\n\nBlack tea is fully oxidised.")
    (docs / "sub" / "rust.md").write_text("# Rust\n\nRust's borrow checker prevents data races at compile time.")
    (docs / "sub" / "archive.zip").write_bytes(b"PK\x03\x04not really")
    return docs


def test_extract_url_json(site):
    out = json.loads(rag("extract", f"{site}/bees.html", "--json", check=0).stdout)
    assert set(out) == {"title", "text", "authors", "published", "url"}
    assert "waggle dance" in out["text"] and "Subscribe" not in out["text"]
    assert out["url"] == f"{site}/bees.html"


def test_extract_saved_file_with_original_url(tmp_path):
    page = tmp_path / "saved.html"
    page.write_text(ARTICLE)
    out = json.loads(rag("extract", str(page), "--url", "https://example.org/bees", "--json", check=0).stdout)
    assert out["url"] == "https://example.org/bees" and "Honeybees" in out["title"]


def test_ingest_search_docs_delete(tmp_path, site, corpus):
    index = tmp_path / "index"
    proc = rag("ingest", str(corpus), f"{site}/bees.html", "--json", index=index, check=1)
    report = json.loads(proc.stdout)
    assert (report["documents_added"], report["documents_unchanged"], report["documents_replaced"]) == (3, 0, 0)
    assert report["chunks_added"] >= 3 and report["seconds"] > 0
    assert [e["source"] for e in report["errors"]] == [str(corpus / "sub" / "archive.zip")]

    again = json.loads(rag("ingest", str(corpus / "tea.txt"), "--json", index=index, check=0).stdout)
    assert (again["documents_added"], again["documents_unchanged"], again["errors"]) == (0, 1, [])

    results = json.loads(rag("search", "how do bees communicate", "-k", "2", "--json", index=index, check=0).stdout)
    assert results[0]["source"] == f"{site}/bees.html" and results[0]["rank"] == 1
    assert set(results[0]) == {"rank", "score", "dense_score", "bm25_score", "source", "title", "page",
                               "start", "end", "text", "where", "ocr"}

    docs = json.loads(rag("docs", "--json", index=index, check=0).stdout)
    assert len(docs) == 3
    rag("delete", str(corpus / "tea.txt"), index=index, check=0)
    assert len(json.loads(rag("docs", "--json", index=index, check=0).stdout)) == 2
    proc = rag("delete", str(corpus / "tea.txt"), index=index, check=1)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_search_queries_file_prints_one_line_per_query(tmp_path, corpus):
    index = tmp_path / "index"
    rag("ingest", str(corpus / "tea.txt"), str(corpus / "sub" / "rust.md"), index=index, check=0)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q1", "text": "oxidised leaves"}\n{"_id": "q2", "text": "borrow checker"}\n')
    lines = rag("search", "--queries", str(queries), "--mode", "bm25", "-k", "1", index=index, check=0).stdout.splitlines()
    got = [json.loads(line) for line in lines]
    assert [g["query_id"] for g in got] == ["q1", "q2"]
    assert got[1]["results"][0]["source"].endswith("rust.md")
    plain = tmp_path / "q.txt"
    plain.write_text("black tea\n")
    line = json.loads(rag("search", "--queries", str(plain), index=index, check=0).stdout)
    assert line["query_id"] == "1" and line["results"]


@pytest.mark.parametrize("args, message", [
    (["ingest", "http://127.0.0.1:9/nothing-listens-here"], "127.0.0.1:9"),
    (["ingest", "/no/such/file.txt"], "file.txt"),
    (["search", "anything", "--collection", "missing"], "ingest something"),
    (["ingest", "x.txt", "--chunk-size", "0"], "Chunk size"),
    (["search", "q", "--collection", "../etc"], "Collection name"),
])
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    proc = rag(*args, index=tmp_path / "index")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_usage_errors_exit_2():
    assert rag("search", "--mode", "fuzzy", "q").returncode == 2
    assert rag().returncode == 2


def test_ask_takes_the_answer_style_and_the_documents_to_read(tmp_path, corpus):
    """Found by a newcomer: `rag ask --answer-style free` was refused (the flag sat on `models`). Ask with the
    real default model, reading only the ticked document, as the notebook's Sources panel does."""
    pytest.importorskip("llama_cpp")
    index = tmp_path / "index"
    rag("ingest", str(corpus / "tea.txt"), str(corpus / "sub" / "rust.md"), index=index, check=0)
    proc = rag("ask", "What does the borrow checker prevent?", "--answer-style", "free", "--max-tokens", "24",
               "--source", str(corpus / "sub" / "rust.md"), "--json", index=index, check=0)
    result = json.loads(proc.stdout)
    assert result["style"] == "free"
    assert {s["source"] for s in result["sources"]} == {str(corpus / "sub" / "rust.md")}
    assert "--answer-style" not in rag("models", "--help", check=0).stdout
