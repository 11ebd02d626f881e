"""Formats beyond text, HTML, PDF and Word: real files from the shared set, and hostile ones made here."""

from __future__ import annotations

import io
import json
import shutil
import unicodedata
import zipfile
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from rag.collection import Collection
from rag.errors import RagError
from rag.loaders import expand_sources, load_source
from tests.conftest import shared_data

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="OCR needs Debian's tesseract-ocr, which `make install` brings")


def _manifest() -> list[dict]:
    try:
        path = shared_data("formats", "manifest.json")
    except pytest.skip.Exception:
        return []
    return json.loads(path.read_text())


def _words(text: str) -> str:
    """Lower-cased words only, so a phrase matches across line breaks and table cell separators."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


@pytest.mark.parametrize("entry", _manifest() or [None], ids=lambda e: e["file"] if e else "absent")
def test_every_shared_format_file_holds_its_phrase(entry, settings):
    if entry is None:
        shared_data("formats", "manifest.json")
    if entry["needs_ocr"] and shutil.which("tesseract") is None:
        pytest.skip("OCR needs Debian's tesseract-ocr, which `make install` brings")
    doc = load_source(str(shared_data("formats", entry["file"])), settings)
    assert _words(entry["phrase"]) in _words(doc.text)
    assert doc.title
    assert bool(doc.metadata.get("ocr_pages")) == entry["needs_ocr"]


def test_slides_are_pages_with_their_titles(settings):
    doc = load_source(str(shared_data("formats", "simple.pptx")), settings)
    assert [number for number, _ in doc.pages] == [1, 2]
    assert [h["text"] for h in doc.metadata["headings"]] == ["Title Slide", "Things to think about"]
    assert doc.page_at(doc.text.index("Where have all the flowers gone")) == 2
    assert doc.metadata["location"] == "slide"


def test_a_ppt_that_is_really_pptx_is_read_and_its_notes_kept(settings):
    doc = load_source(str(shared_data("formats", "eng_spa_mult.ppt")), settings)
    assert doc.title == "Testing multiple languages"
    assert "Notes: This is a slide note." in doc.text


def test_workbook_blocks_carry_sheet_rows_and_header(settings, tmp_path):
    doc = load_source(str(shared_data("formats", "2023-half-year-analyses-by-segment.xlsx")), settings)
    assert doc.metadata["location"] == "sheet"
    assert [h["text"] for h in doc.metadata["headings"]][:2] == ["OS-Rev.and results 30 06 2023",
                                                                   "OS-Other information 30 06 2023"]
    at = doc.text.index("Mainly corporate and research and development assets")
    assert doc.page_at(at) == 2  # the second sheet
    blocks = [b for b in doc.text.split("\n\n") if b.startswith("OS-Rev.and results 30 06 2023, rows")]
    header = blocks[1].split("\n")[1]
    assert "Sales (a)" in header and len(blocks) > 3
    assert all(block.split("\n")[1] == header for block in blocks[1:])


def test_csv_header_repeats_in_every_block(settings, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("name;city;age\n" + "".join(f"person {i};town {i};{i}\n" for i in range(1, 201)))
    doc = load_source(str(path), settings)
    blocks = doc.text.split("\n\n")
    assert len(blocks) > 5
    assert all(block.split("\n")[1] == "name | city | age" for block in blocks)
    assert blocks[0].startswith("people, rows 2–") and "person 1 | town 1 | 1" in blocks[0]
    last_row = blocks[-1].split("\n")[0]
    assert last_row.endswith("–201:")


def test_epub_chapters_and_rst_and_org_headings(settings):
    epub = load_source(str(shared_data("formats", "eng_spa_mult.epub")), settings)
    assert epub.metadata["location"] == "chapter" and epub.pages[0] == (1, 0)
    rst = load_source(str(shared_data("formats", "README-w-include.rst")), settings)
    org = load_source(str(shared_data("formats", "README.org")), settings)
    assert rst.title == org.title == "Example Docs"


def _email(subject: str, body: str, attachments: list[tuple[str, bytes, str]] = ()) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ann@example.com", "bob@example.com", subject
    message["Date"] = "Tue, 01 Oct 2024 12:34:56 -0500"
    message.set_content(body)
    for name, data, kind in attachments:
        maintype, subtype = kind.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def test_email_headers_body_and_attachments_as_their_own_documents(settings, tmp_path):
    inner = _email("Minutes", "See the notes.", [("notes.txt", b"The budget line is forty-two.", "text/plain")])
    path = tmp_path / "mail.eml"
    path.write_bytes(_email("Quarterly figures", "Hello Bob, the figures are attached.",
                            [("figures.csv", b"region,sales\nnorth,17\nsouth,23\n", "text/csv"),
                             ("minutes.eml", inner, "application/octet-stream")]))
    sources = expand_sources([str(tmp_path)])
    base = str(path.absolute())
    assert sources == [base, base + "::figures.csv", base + "::minutes.eml", base + "::minutes.eml::notes.txt"]
    message = load_source(sources[0], settings)
    assert message.title == "Quarterly figures"
    assert "From: ann@example.com" in message.text and "Hello Bob" in message.text
    figures = load_source(sources[1], settings)
    assert figures.source == sources[1] and "north | 17" in figures.text
    assert figures.title.endswith("attachment of Quarterly figures")
    notes = load_source(sources[3], settings)
    assert "forty-two" in notes.text and notes.title.endswith("attachment of Minutes")


def test_a_loop_of_attached_messages_stops_at_the_depth_limit(settings, tmp_path):
    message = _email("level 0", "the bottom")
    for level in range(1, 30):
        message = _email(f"level {level}", "wrapper", [(f"m{level}.eml", message, "application/octet-stream")])
    path = tmp_path / "deep.eml"
    path.write_bytes(message)
    sources = expand_sources([str(path)])
    assert len(sources) == 4  # the message and three levels of attachments
    with pytest.raises(RagError, match="nested deeper than 3 messages"):
        load_source(sources[-1] + "::m25.eml", settings)


def test_msg_reads_its_headers_and_body(settings):
    doc = load_source(str(shared_data("formats", "fake-email.msg")), settings)
    assert doc.title == "Test Email" and "Roses are red" in doc.text and "From:" in doc.text


# -- hostile input, one sentence each ---------------------------------------------------------------


def _docx_bytes(text: str) -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_zip_bomb_inside_a_docx_is_refused(settings, tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_docx_bytes("hello")), "r") as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            bomb.writestr(info, source.read(info))
        with bomb.open("word/media/zeros.bin", "w") as member:
            for _ in range(100):
                member.write(bytes(1024 * 1024))
    path = tmp_path / "bomb.docx"
    path.write_bytes(out.getvalue())
    with pytest.raises(RagError, match=r"bomb\.docx would unpack to 10[0-9] MB .* \(a zip bomb or a damaged file\)"):
        load_source(str(path), settings)


def test_an_encrypted_office_file_is_refused(settings, tmp_path):
    ooxml = pytest.importorskip("msoffcrypto.format.ooxml", reason="encrypting a test file needs msoffcrypto-tool")
    plain = tmp_path / "plain.docx"
    plain.write_bytes(_docx_bytes("secret plans"))
    encrypted = tmp_path / "locked.docx"
    with plain.open("rb") as source, encrypted.open("wb") as target:
        ooxml.OOXMLFile(source).encrypt("pw", target)
    with pytest.raises(RagError, match=r"locked\.docx is encrypted or in the old binary format"):
        load_source(str(encrypted), settings)


def test_a_one_pixel_image_is_refused(settings, tmp_path):
    from PIL import Image

    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), "white").save(path)
    with pytest.raises(RagError, match=r"dot\.png is only 1×1 pixels, too small to hold readable text"):
        load_source(str(path), settings)


def test_a_workbook_of_too_many_sheets_is_refused(settings, tmp_path):
    xlsxwriter = pytest.importorskip("xlsxwriter", reason="writing a test workbook needs xlsxwriter")
    path = tmp_path / "many.xlsx"
    book = xlsxwriter.Workbook(str(path))
    for n in range(501):
        book.add_worksheet().write(0, 0, n)
    book.close()
    with pytest.raises(RagError, match=r"many\.xlsx has 501 sheets, more than the 500 that are read"):
        load_source(str(path), settings)


def test_copy_protected_pdf_is_read_and_a_password_is_named(settings, tmp_path):
    from tests.test_loaders import make_pdf, rewrite_pdf
    import pypdf

    source = make_pdf([["Copy protection keeps the text readable."]])
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(source)))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    protected = tmp_path / "protected.pdf"
    protected.write_bytes(out.getvalue())
    assert "keeps the text readable" in load_source(str(protected), settings).text
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(rewrite_pdf(source, user_password="open sesame"))
    with pytest.raises(RagError, match=r"locked\.pdf is password-protected"):
        load_source(str(locked), settings)


def test_pdf_title_is_its_largest_type_not_a_first_line(settings):
    doc = load_source(str(shared_data("docs", "layout-parser-paper-fast.pdf")), settings)
    assert unicodedata.normalize("NFKC", doc.title) == (
        "LayoutParser: A Unified Toolkit for Deep Learning Based Document Image Analysis")


# -- OCR ----------------------------------------------------------------------------------------


def _page_image(lines: list[str]):
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1700, 2200), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=48)
    for i, line in enumerate(lines):
        draw.text((150, 200 + 90 * i), line, fill="black", font=font)
    return image


@needs_tesseract
def test_a_scanned_pdf_is_read_page_by_page_with_progress(settings, tmp_path):
    pages = [_page_image([f"Page {n} speaks of the {word} harbour."]) for n, word in
             enumerate(["northern", "eastern", "southern"], start=1)]
    path = tmp_path / "scan.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=200)
    seen = []
    doc = load_source(str(path), settings, lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert doc.metadata["ocr_pages"] == [1, 2, 3]
    assert doc.page_at(doc.text.lower().index("southern")) == 3


@needs_tesseract
def test_every_page_of_a_tiff_is_read(settings, tmp_path):
    pages = [_page_image(["The first page is about apples."]), _page_image(["The second page is about pears."])]
    path = tmp_path / "two.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    doc = load_source(str(path), settings)
    assert "apples" in doc.text and "pears" in doc.text
    assert [n for n, _ in doc.pages] == [1, 2] and doc.metadata["ocr_pages"] == [1, 2]


def test_a_batch_keeps_its_good_files_when_others_are_bad(settings, tmp_path):
    from PIL import Image

    (tmp_path / "good.csv").write_text("animal,legs\nspider,8\n")
    (tmp_path / "good.rst").write_text("Title\n=====\n\nA paragraph about rivers.\n")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "broken.epub").write_bytes(b"nothing")
    report = Collection.open(settings).ingest([str(tmp_path)])
    status = {r.source.rsplit("/", 1)[-1]: r for r in report.results}
    assert {name for name, r in status.items() if r.status == "added"} == {"good.csv", "good.rst"}
    for name in ("dot.png", "broken.xlsx", "broken.epub"):
        assert status[name].status == "failed" and name in status[name].error
        assert status[name].error.count(". ") == 0 and "\n" not in status[name].error


def test_an_old_word_file_is_read_from_its_piece_table_and_a_foreign_one_refused(settings, tmp_path):
    doc = load_source(str(shared_data("formats", "simple.doc")), settings)
    assert "This is my first thought. This is my second thought." in doc.text
    assert doc.title == "These are a few of my favorite things:"
    foreign = tmp_path / "mail.doc"
    foreign.write_bytes(shared_data("formats", "fake-email.msg").read_bytes())
    with pytest.raises(RagError, match=r"mail\.doc could not be read as a Word 97-2003 document"):
        load_source(str(foreign), settings)


# -- any bytes, and damaged real files: a document or one sentence ------------------------------------

NEW_SUFFIXES = [".pptx", ".ppt", ".xlsx", ".xls", ".ods", ".csv", ".tsv", ".odt", ".rtf", ".doc", ".epub", ".eml",
                ".msg", ".org", ".rst", ".png", ".bmp", ".tiff"]
_FUZZ = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _loads_or_says_why(path, data: bytes, settings) -> None:
    path.write_bytes(data)
    try:
        doc = load_source(str(path), settings)
    except RagError as exc:
        assert str(exc).strip() and "\n" not in str(exc) and path.name in str(exc)
        return
    assert doc.text.strip()
    doc.text.encode("utf-8")  # storable: no lone surrogates


@_FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(NEW_SUFFIXES))
def test_any_bytes_in_a_new_format_load_or_say_why(tmp_path, settings, data, suffix):
    _loads_or_says_why(tmp_path / ("input" + suffix), data, settings)


@pytest.mark.parametrize("entry", [e for e in _manifest() if not e["needs_ocr"]] or [None],
                         ids=lambda e: e["file"] if e else "absent")
def test_damaged_real_files_load_or_say_why(entry, tmp_path, settings):
    if entry is None:
        shared_data("formats", "manifest.json")
    original = shared_data("formats", entry["file"]).read_bytes()

    @_FUZZ
    @given(cut=st.integers(0, len(original)), start=st.integers(0, len(original)), junk=st.binary(max_size=64))
    def damaged(cut, start, junk):
        data = original[:start] + junk + original[start + len(junk):]
        _loads_or_says_why(tmp_path / entry["file"], data[:max(cut, 1)] if cut % 2 else data, settings)

    damaged()


@needs_tesseract
def test_the_preview_says_which_pages_were_read_by_ocr(settings, tmp_path):
    from ui.library import Library
    from ui.runtime import Runtime
    from ui.state import Session

    path = tmp_path / "note.png"
    _page_image(["A handwritten note about the garden gate."]).save(path)
    status, shown, text, meta, _ = Library(Runtime(settings)).preview("", [str(path)], Session())
    assert "garden gate" in text
    assert next(iter(meta)) == "read by OCR" and meta["read by OCR"].startswith("page 1: text recognised")
    assert status.startswith("**Read by OCR** (page 1: text recognised from an image")  # above the text too


@needs_tesseract
def test_a_scanned_page_with_a_stamp_in_its_text_layer_is_still_read_by_ocr(settings, tmp_path):
    import pypdf

    from tests.test_loaders import make_pdf

    scan = io.BytesIO()
    _page_image(["The lighthouse keeper logged every storm."]).save(scan, format="PDF", resolution=200)
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(scan))
    writer.pages[0].merge_page(pypdf.PdfReader(io.BytesIO(make_pdf([["Bates 0001"]]))).pages[0])
    path = tmp_path / "stamped.pdf"
    with path.open("wb") as out:
        writer.write(out)
    doc = load_source(str(path), settings)
    assert "lighthouse keeper" in doc.text and doc.metadata["ocr_pages"] == [1]


@needs_tesseract
def test_an_ingested_scan_reports_each_page_and_is_found_on_its_page(settings, tmp_path):
    words = ["copper", "walnut", "saffron", "granite"]
    filler = [f"Line {i} of the clerk's daily record of goods and prices." for i in range(12)]
    pages = [_page_image([f"Chapter {n}: the {word} ledger.", *filler]) for n, word in enumerate(words, start=1)]
    path = tmp_path / "ledgers.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=200)
    stages = []
    coll = Collection.open(settings)
    # splits of about a line, so the one that names the ledger starts on its own page
    report = coll.ingest([str(path)], progress=lambda stage, done, total, source: stages.append((stage, done, total)),
                         chunk_size=60)
    assert report.results[0].status == "added"
    assert [s for s in stages if s[0] == "ocr"] == [("ocr", n, 4) for n in range(1, 5)]
    hits = coll.search("saffron ledger", k=1, mode="bm25")
    assert hits[0].page == 3


def test_an_opendocument_spreadsheet_reads_each_sheet_with_its_header(settings, tmp_path):
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    book = OpenDocumentSpreadsheet()
    for name, rows in [("Fruit", [["name", "colour"], ["apple", "red"], ["banana", "yellow"]]),
                       ("Stock", [["item", "count"], ["crates", "12"]])]:
        table = Table(name=name)
        for row in rows:
            cells = TableRow()
            for value in row:
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=value))
                cells.addElement(cell)
            table.addElement(cells)
        book.spreadsheet.addElement(table)
    path = tmp_path / "shop.ods"
    book.save(str(path))
    doc = load_source(str(path), settings)
    assert doc.text == "Fruit, rows 2–3:\nname | colour\napple | red\nbanana | yellow\n\nStock, row 2:\nitem | count\ncrates | 12"
    assert [number for number, _ in doc.pages] == [1, 2] and doc.metadata["sheets"] == ["Fruit", "Stock"]


@needs_tesseract
def test_a_page_that_cannot_be_read_costs_only_itself(settings, tmp_path):
    from PIL import Image

    path = tmp_path / "mixed.tiff"
    _page_image(["The readable page speaks of otters."]).save(
        path, save_all=True, append_images=[Image.new("RGB", (3, 3), "white")])
    doc = load_source(str(path), settings)
    assert "otters" in doc.text
    assert doc.metadata["ocr_pages"] == [1] and doc.metadata["unreadable_pages"] == [2]


@needs_tesseract
def test_a_long_scan_is_searchable_before_its_last_page_is_read(settings, tmp_path, monkeypatch):
    from rag.loaders import pdf

    monkeypatch.setattr(pdf, "EARLY_PAGES", 2)  # a "long" scan of five pages, its first parts every two
    words = ["amber", "birch", "cobalt", "dune", "ember"]
    pages = [_page_image([f"The {word} report, page {n}."]) for n, word in enumerate(words, start=1)]
    path = tmp_path / "reports.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=200)
    coll = Collection.open(settings)
    found_while_reading = []

    def progress(stage, done, total, source):
        if stage == "ocr" and done == 4:  # the fifth page not read yet
            found_while_reading.extend(hit.source for hit in coll.search("amber report", k=1, mode="bm25"))

    report = coll.ingest([str(path)], progress=progress)
    assert found_while_reading == [str(path)]
    assert [(r.status, r.source) for r in report.results] == [("added", str(path))]
    (doc,) = coll.documents()
    assert "partial" not in doc.metadata and doc.metadata["ocr_pages"] == [1, 2, 3, 4, 5]
    assert "ember report, page 5" in coll.search("ember report", k=1, mode="bm25")[0].text


def test_a_title_is_the_first_line_that_reads_like_one_not_a_stamp_or_a_broken_line():
    from rag.loaders.common import first_line_title

    assert first_line_title(["arXiv:2103.15348v2 [cs.CV] 21 Jun 2021", "Seeing in the Dark", "Abstract"]) == \
        "Seeing in the Dark"
    assert first_line_title(["GPO,", "Annual Report on Printing"]) == "Annual Report on Printing"
    assert first_line_title(["12 / 48", "COVID-19: the 2020 Report"]) == "COVID-19: the 2020 Report"
    assert first_line_title(["- 3 -", "1999"]) == ""
