"""Hostile input, generated: the splitter keeps its invariants, loaders and search answer or say why.

"Say why" means a RagError; any other exception is a bug. Example counts are bounded so the file
runs in well under a minute on two cores.
"""

from __future__ import annotations

import contextlib
import json
import io
import zipfile

import pytest
from hypothesis import HealthCheck, assume, example, given, settings as hsettings, strategies as st

from rag.chunking import split_text
from rag.cli import main as cli_main
from rag.collection import Collection
from rag.documents import Document
from rag.errors import RagError
from rag.loaders import load_file
from rag.settings import load_settings

BOUNDED = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that exercises every separator level: paragraphs, lines, sentences, words and long unbroken runs.
TEXTS = st.text(alphabet=st.sampled_from(list("ab .!?\n\t\u00a0\u3000x")) | st.characters(), max_size=1500)


# -- the splitter -------------------------------------------------------------------------------


@BOUNDED
@given(text=TEXTS, size=st.integers(1, 200), overlap_share=st.floats(0, 0.9))
@example(text="a" * 10 + "\n\n" + "b " * 30, size=7, overlap_share=0.5)
def test_split_spans_are_bounded_trimmed_ordered_and_cover_the_text(text, size, overlap_share):
    overlap = min(int(size * overlap_share), size - 1)
    spans = split_text(text, size, overlap)
    for a, b in spans:
        assert 0 <= a < b <= len(text)
        assert b - a <= size
        assert not text[a].isspace() and not text[b - 1].isspace()
    assert [a for a, _ in spans] == sorted({a for a, _ in spans})  # starts strictly increase
    assert [b for _, b in spans] == sorted({b for _, b in spans})  # and so do ends
    covered = set()
    for a, b in spans:
        covered.update(range(a, b))
    assert {i for i, c in enumerate(text) if not c.isspace()} <= covered
    if overlap == 0:
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


# -- loaders on arbitrary and damaged bytes ----------------------------------------------------------


def _valid_pdf() -> bytes:
    from test_loaders import make_pdf

    return make_pdf([["Page one talks about apples."], ["Page two (with parens) is about bridges."]])


def _valid_docx_parts() -> dict[str, bytes]:
    import docx

    document = docx.Document()
    document.add_heading("Harbour report", level=1)
    document.add_paragraph("Ships came in at dawn and left before noon.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(1, 1).text = "tonnage", "1200"
    buffer = io.BytesIO()
    document.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


PDF = _valid_pdf()
DOCX_PARTS = _valid_docx_parts()


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` with a few bytes overwritten, a piece cut out, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        a = draw(st.integers(0, len(out)))
        del out[a : a + draw(st.integers(0, 200))]
    return bytes(out[: draw(st.integers(len(out) // 2, len(out)))])


@st.composite
def damaged_docx(draw) -> bytes:
    """A well-zipped .docx whose document.xml (the text) is damaged, so the XML parser and python-docx see it."""
    parts = dict(DOCX_PARTS)
    parts["word/document.xml"] = draw(damaged(parts["word/document.xml"]))
    return _zip(parts)


def _loads_or_says_why(tmp_path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        doc = load_file(path, load_settings(environ={}))
    except RagError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
        return
    assert doc.text.strip()
    doc.text.encode("utf-8")  # storable: no lone surrogates
    assert doc.content_hash


@BOUNDED
@given(data=st.binary(max_size=4000), suffix=st.sampled_from([".txt", ".md", ".html", ".pdf", ".docx"]))
@example(data=b"\xff\xfe\x00\xd8a\x00", suffix=".txt")  # UTF-16 with a lone surrogate
@example(data=b"%PDF-1.4\n", suffix=".pdf")
@example(data=b"PK\x05\x06" + b"\x00" * 18, suffix=".docx")  # an empty zip
def test_arbitrary_bytes_load_or_say_why(tmp_path, data, suffix):
    _loads_or_says_why(tmp_path, "input" + suffix, data)


@BOUNDED
@given(data=st.text(max_size=3000), suffix=st.sampled_from([".txt", ".md", ".html"]))
def test_arbitrary_text_loads_or_says_why(tmp_path, data, suffix):
    _loads_or_says_why(tmp_path, "input" + suffix, data.encode("utf-8"))


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged(PDF))
def test_damaged_pdf_loads_or_says_why(tmp_path, data):
    _loads_or_says_why(tmp_path, "damaged.pdf", data)


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged(_zip(DOCX_PARTS)) | damaged_docx())
def test_damaged_docx_loads_or_says_why(tmp_path, data):
    _loads_or_says_why(tmp_path, "damaged.docx", data)


# -- search on arbitrary query strings ----------------------------------------------------------------

FTS_SYNTAX = list('"\'*^-+:(){}[],.NEAROTAD \t\n\x00\u200b') + ["NEAR(", "OR", "AND", "NOT", "🙂", "👩‍👩‍👧", "\udcff"]
QUERIES = (st.text(max_size=200)
           | st.lists(st.sampled_from(FTS_SYNTAX + ["cats", "purr", "bridge"]), max_size=12).map("".join)
           | st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "So", "Zs"]), max_size=20))


@pytest.fixture(scope="module")
def searchable(tmp_path_factory):
    settings = load_settings(environ={}, index_dir=tmp_path_factory.mktemp("props") / "index")
    coll = Collection.open(settings)
    coll.add_documents([
        Document("mem://cats", "Cats purr when they are content. NEAR the fire, \"quoted\" words and a-b-c.", "Cats"),
        Document("mem://bridge", "The bridge * spans the river ^ since 1901; 🙂 emoji and ü umlauts.", "Bridge"),
    ])
    yield coll
    coll.store.close()


@hsettings(max_examples=80, deadline=None)
@given(query=QUERIES, mode=st.sampled_from(["dense", "bm25", "hybrid"]))
@example(query='"unterminated', mode="bm25")
@example(query="NEAR(cats purr, 2)", mode="hybrid")
@example(query="-cats ^purr * OR", mode="bm25")
@example(query="cats\x00purr", mode="hybrid")
@example(query="\udcff\udcfe cats", mode="hybrid")  # undecodable bytes from a command line
def test_any_query_gives_results_or_says_why(searchable, query, mode):
    try:
        hits = searchable.search(query, k=3, mode=mode)
    except RagError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
        return
    assert len(hits) <= 3
    assert all(h.source in ("mem://cats", "mem://bridge") for h in hits)


@hsettings(max_examples=30, deadline=None)
@given(query=QUERIES)
@example(query="\udcff\udcfe")
@example(query="--k")
def test_search_command_gives_json_or_one_error_line(searchable, query):
    assume(not query.startswith("-"))  # an option, not a query: argparse's usage error is tested elsewhere
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["search", query, "--index", str(searchable.settings.index_dir), "--json", "-k", "2"])
    if code == 0:
        assert err.getvalue() == ""
        assert len(json.loads(out.getvalue())) <= 2
    else:
        assert code == 1 and err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
