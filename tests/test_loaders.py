"""Loading files of every supported kind, refusing the rest, expanding folders, and loading URLs."""

from __future__ import annotations

import codecs
import functools
import io
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.loaders import expand_sources, is_url, load_source

DOCS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "docs"


# -- helpers that make real files --------------------------------------------------------------


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]]) -> bytes:
    """A valid PDF with one Helvetica line per string; an empty list makes a page with no text."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
                   b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(pages))), len(pages)),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, lines in enumerate(pages):
        shown = " 0 -16 Td ".join(f"({_pdf_string(line)}) Tj" for line in lines)
        content = f"BT /F1 12 Tf 72 720 Td {shown} ET".encode("latin-1") if lines else b""
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i))
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def rewrite_pdf(data: bytes, title: str | None = None, user_password: str | None = None,
                owner_password: str | None = None) -> bytes:
    """The same PDF passed through pypdf, with a title and/or encryption added."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    if title:
        writer.add_metadata({"/Title": title})
    if user_password is not None:
        writer.encrypt(user_password, owner_password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


THREE_PAGES = [["Page one talks about apples."], ["Page two is about bridges.", "It has two lines."],
               ["Page three covers clocks."]]


# -- text and Markdown ---------------------------------------------------------------------------


def test_utf8_text_file(tmp_path, settings):
    path = tmp_path / "notes.txt"
    path.write_text("Shopping list\n\nBread, milk and café au lait.\n", encoding="utf-8")
    doc = load_source(str(path), settings)
    assert doc.text == "Shopping list\n\nBread, milk and café au lait.\n"
    assert doc.title == "Shopping list"
    assert doc.source == str(path.absolute())
    assert doc.metadata["kind"] == "text"
    assert doc.metadata["size"] == path.stat().st_size
    assert doc.metadata["path"] == str(path.absolute())
    assert doc.metadata["mtime"].endswith("+00:00")
    assert doc.pages == []


def test_utf16_text_with_bom(tmp_path, settings):
    path = tmp_path / "wide.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "Grüße aus Köln\r\nzweite Zeile".encode("utf-16-le"))
    assert load_source(str(path), settings).text == "Grüße aus Köln\nzweite Zeile"


def test_utf16_text_without_bom_is_detected(tmp_path, settings):
    path = tmp_path / "wide-no-bom.txt"
    text = "This is a test document to use for unit tests.\nSecond line with Grüße."
    path.write_bytes(text.encode("utf-16-le"))
    assert load_source(str(path), settings).text == text


def test_binary_data_in_a_text_file_is_refused(tmp_path, settings):
    path = tmp_path / "binary.txt"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(RagError, match="binary.txt doesn't look like text"):
        load_source(str(path), settings)


def test_windows_1252_text(tmp_path, settings):
    text = "Ein “schönes” Café – die Straße kostet 5 €. L’été était très chaud."
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode("cp1252"))
    assert load_source(str(path), settings).text == text


def test_markdown_title_is_its_first_heading(tmp_path, settings):
    path = tmp_path / "readme.md"
    path.write_text("<!-- badge -->\n\n# Project Notes\n\nSome *emphasis* here.\n", encoding="utf-8")
    doc = load_source(str(path), settings)
    assert doc.title == "Project Notes"
    assert "Some *emphasis* here." in doc.text
    assert doc.metadata["kind"] == "markdown"


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  ", codecs.BOM_UTF8])
def test_empty_or_blank_file_has_no_text(tmp_path, settings, content):
    path = tmp_path / "blank.txt"
    path.write_bytes(content)
    with pytest.raises(RagError, match="blank.txt has no text"):
        load_source(str(path), settings)


# -- HTML ----------------------------------------------------------------------------------------


def test_windows_1252_html_uses_its_meta_charset(tmp_path, settings):
    body = "Die schöne Frau sagte: “Das war köstlich!” und bezahlte 15,50 €."
    page = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
            f"<title>Kaffee</title></head><body><h1>Kaffee</h1><p>{body}</p></body></html>")
    path = tmp_path / "page.html"
    path.write_bytes(page.encode("cp1252"))
    doc = load_source(str(path), settings)
    assert body in doc.text
    assert doc.title == "Kaffee"
    assert doc.metadata["kind"] == "html"


def test_html_without_an_article_keeps_its_visible_text(tmp_path, settings):
    path = tmp_path / "form.htm"
    path.write_text("<html><body><header>Welcome to the shop</header><form><label>Your name</label>"
                    "<input></form><script>track()</script></body></html>", encoding="utf-8")
    doc = load_source(str(path), settings)
    assert doc.text == "Welcome to the shop\nYour name"
    assert doc.metadata["extractor"] == "full-text"
    assert doc.title == "form"


def test_html_with_nothing_visible_is_an_error(tmp_path, settings):
    path = tmp_path / "blank.html"
    path.write_text("<html><head><script>x()</script></head><body> </body></html>", encoding="utf-8")
    with pytest.raises(RagError, match="blank.html has no visible text"):
        load_source(str(path), settings)


# -- PDF -----------------------------------------------------------------------------------------


def test_pdf_pages_are_recorded(tmp_path, settings):
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf(THREE_PAGES))
    doc = load_source(str(path), settings)
    assert [number for number, _ in doc.pages] == [1, 2, 3]
    for number, phrase in [(1, "apples"), (2, "bridges"), (2, "two lines"), (3, "clocks")]:
        assert doc.page_at(doc.text.index(phrase)) == number
    assert doc.title == "Page one talks about apples."
    assert doc.metadata["page_count"] == 3


def test_pdf_title_comes_from_its_metadata(tmp_path, settings):
    path = tmp_path / "titled.pdf"
    path.write_bytes(rewrite_pdf(make_pdf(THREE_PAGES), title="Fruit and Infrastructure"))
    assert load_source(str(path), settings).title == "Fruit and Infrastructure"


def test_pages_without_text_are_skipped_but_numbering_is_kept(tmp_path, settings):
    path = tmp_path / "gaps.pdf"
    path.write_bytes(make_pdf([["First page."], [], ["Third page."]]))
    doc = load_source(str(path), settings)
    assert [number for number, _ in doc.pages] == [1, 3]
    assert doc.page_at(doc.text.index("Third")) == 3


def test_password_protected_pdf(tmp_path, settings):
    path = tmp_path / "secret.pdf"
    path.write_bytes(rewrite_pdf(make_pdf(THREE_PAGES), user_password="s3cret"))
    with pytest.raises(RagError, match="secret.pdf is password-protected"):
        load_source(str(path), settings)


def test_pdf_with_only_an_owner_password_still_loads(tmp_path, settings):
    path = tmp_path / "locked-editing.pdf"
    path.write_bytes(rewrite_pdf(make_pdf(THREE_PAGES), user_password="", owner_password="owner"))
    assert "bridges" in load_source(str(path), settings).text


@pytest.mark.parametrize("content", [b"%PDF-1.4\nthis is not really a pdf\n", b"", b"\x00\x01\x02garbage"])
def test_broken_pdf(tmp_path, settings, content):
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    with pytest.raises(RagError, match="broken.pdf could not be read as a PDF"):
        load_source(str(path), settings)


def test_truncated_pdf(tmp_path, settings):
    data = make_pdf(THREE_PAGES)
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(RagError, match="cut.pdf"):
        load_source(str(path), settings)


def test_pdf_without_a_text_layer(tmp_path, settings):
    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf([[], []]))
    with pytest.raises(RagError, match="scan.pdf has no text layer"):
        load_source(str(path), settings)


# -- DOCX ----------------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order(tmp_path, settings):
    import docx

    document = docx.Document()
    document.add_heading("Quarterly report", level=0)
    document.add_paragraph("Sales grew in every region.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["Region", "Q1", "Q2"], ["North", "10", "12"], ["South", "7", "9"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    merged = document.add_table(rows=1, cols=2)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "Totals follow"
    document.add_paragraph("Closing remarks.")
    path = tmp_path / "report.docx"
    document.save(path)

    doc = load_source(str(path), settings)
    assert doc.text == ("Quarterly report\n\nSales grew in every region.\n\n"
                        "Region | Q1 | Q2\nNorth | 10 | 12\nSouth | 7 | 9\n\nTotals follow\n\nClosing remarks.")
    assert doc.title == "Quarterly report"
    assert doc.metadata["kind"] == "docx"


def test_broken_docx(tmp_path, settings):
    path = tmp_path / "fake.docx"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(RagError, match="fake.docx could not be read as a Word document"):
        load_source(str(path), settings)


# -- what can't be loaded --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["archive.zip", "sound.wav", "drawing.SVG"])
def test_unsupported_kinds_name_the_kind_and_the_supported_ones(tmp_path, settings, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 whatever")
    suffix = path.suffix
    with pytest.raises(RagError, match=rf"{name} is a \{suffix} file, which can't be loaded; supported: .bmp"):
        load_source(str(path), settings)


def test_file_without_extension(tmp_path, settings):
    path = tmp_path / "Makefile"
    path.write_text("all:\n", encoding="utf-8")
    with pytest.raises(RagError, match="Makefile is a file with no extension, which can't be loaded"):
        load_source(str(path), settings)


def test_missing_file_and_folder(tmp_path, settings):
    with pytest.raises(RagError, match="does not exist"):
        load_source(str(tmp_path / "nope.txt"), settings)
    with pytest.raises(RagError, match="is a folder"):
        load_source(str(tmp_path), settings)


# -- expanding sources ---------------------------------------------------------------------------


def test_expand_sources_walks_folders_sorted_and_skips_hidden(tmp_path):
    for relative in ["b.txt", "a.md", "sub/c.pdf", "sub/deeper/d.txt", ".hidden.txt", ".git/config",
                     "sub/.cache/e.txt"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x", encoding="utf-8")
    missing = str(tmp_path / "missing.txt")
    sources = ["https://example.com/a", str(tmp_path), missing, str(tmp_path / "b.txt")]
    assert expand_sources(sources) == [
        "https://example.com/a",
        str(tmp_path / "a.md"), str(tmp_path / "b.txt"), str(tmp_path / "sub" / "c.pdf"),
        str(tmp_path / "sub" / "deeper" / "d.txt"),
        missing,
    ]


def test_is_url():
    assert is_url("https://example.com/x") and is_url("HTTP://example.com")
    assert not is_url("notes.txt") and not is_url("ftp://example.com/x") and not is_url("C:/notes.txt")


# -- URLs ----------------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    """A real http.server on 127.0.0.1 serving the folder it yields, with its base URL."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


ARTICLE_HTML = """<html><head><title>Lighthouse keepers | Coast Weekly</title>
<meta property="og:title" content="The last lighthouse keepers"></head><body>
<nav>Home | Archive</nav><article><h1>The last lighthouse keepers</h1>
<p>For forty years the Mor family kept the light on the northern rock, trimming wicks and winding clocks.</p>
<p>When the lamp was automated in 1998 they moved to the mainland, but still watch the beam each night.</p>
<p>Their logbooks, now in the county archive, record every storm and every passing ship by name.</p>
</article><footer>Coast Weekly, all rights reserved</footer></body></html>"""


def test_url_to_html_is_extracted(site, settings):
    root, base = site
    (root / "story.html").write_text(ARTICLE_HTML, encoding="utf-8")
    url = f"{base}/story.html"
    doc = load_source(url, settings.replace(allow_private_urls=True, fetch_timeout=2.0))
    assert doc.source == url
    assert "northern rock" in doc.text and "all rights reserved" not in doc.text
    assert doc.title == "The last lighthouse keepers"
    assert doc.metadata["url"] == url
    assert doc.metadata["kind"] == "html"


def test_url_to_pdf_uses_the_pdf_loader(site, settings):
    root, base = site
    (root / "paper.pdf").write_bytes(make_pdf(THREE_PAGES))
    doc = load_source(f"{base}/paper.pdf", settings.replace(allow_private_urls=True, fetch_timeout=2.0))
    assert doc.page_at(doc.text.index("clocks")) == 3
    assert doc.metadata["kind"] == "pdf"


def test_url_to_plain_text(site, settings):
    root, base = site
    (root / "notes.txt").write_text("Plain notes\nline two", encoding="utf-8")
    doc = load_source(f"{base}/notes.txt", settings.replace(allow_private_urls=True, fetch_timeout=2.0))
    assert doc.text == "Plain notes\nline two"


def test_url_errors_are_rag_errors(site, settings):
    _, base = site
    with pytest.raises(RagError, match="HTTP 404"):
        load_source(f"{base}/missing.html", settings.replace(allow_private_urls=True, fetch_timeout=2.0))


def test_private_urls_are_refused_when_the_settings_say_so(site, settings):
    _, base = site
    with pytest.raises(RagError, match="Refusing to fetch"):
        load_source(f"{base}/story.html", settings.replace(allow_private_urls=False))


# -- every real document in the shared data ------------------------------------------------------

EXPECTED_ERRORS = {
    "password.pdf": "password-protected", "empty.txt": "has no text",
    "fake-text-all-whitespace.txt": "has no text", "simple.zip": "is a .zip file",
    "CantinaBand3.wav": "is a .wav file",
}
SHARED_DOCS = sorted(p.name for p in DOCS.iterdir()) if DOCS.is_dir() else []


@pytest.mark.parametrize("name", SHARED_DOCS or [None])
def test_every_shared_document_loads_or_says_why_not(name, settings):
    if name is None:
        pytest.skip(f"{DOCS} is absent: the shared data sits beside the checkout, not in a user's clone")
    try:
        doc = load_source(str(DOCS / name), settings)
    except RagError as exc:
        assert name in EXPECTED_ERRORS, f"{name} failed unexpectedly: {exc}"
        assert EXPECTED_ERRORS[name] in str(exc)
        return
    assert name not in EXPECTED_ERRORS, f"{name} was expected to fail"
    assert doc.text.strip()
    assert doc.title
