"""Citations in a document's own units: a chunk stays on its slide, sheet or chapter, and every hit, prompt,
export and card names that place the one way rag.locations says it."""

from __future__ import annotations

import shutil

import pytest

from rag.chunking import split_document
from rag.collection import Collection
from rag.documents import Document
from rag.locations import OCR_MARK, OCR_NOTE, read_by_ocr, unit_label, unit_spans, where
from rag.prompts import format_source
from tests.conftest import shared_data
from ui.chat_format import sources_md
from ui.conversation_export import export_markdown
from ui.escaping import escape_html
from ui.passage_viewer import passage_html
from ui.search_format import hit_card_html


def _slides(*bodies: str) -> Document:
    text, pages, offset = "", [], 0
    for number, body in enumerate(bodies, start=1):
        pages.append((number, offset))
        text += body + "\n\n"
        offset = len(text)
    return Document("deck.pptx", text.rstrip(), metadata={"location": "slide"}, pages=pages)


def test_a_chunk_never_crosses_from_one_slide_to_the_next():
    doc = _slides("Short first slide.", "Second slide words. " * 3, "Third.")
    chunks = split_document(doc, chunk_size=500)
    assert [(c.page, c.text) for c in chunks] == [(1, "Short first slide."), (2, ("Second slide words. " * 3).strip()),
                                                   (3, "Third.")]
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    pdf = Document("a.pdf", doc.text, pages=doc.pages)  # a PDF's paragraphs run on across its pages
    assert len(split_document(pdf, chunk_size=500)) == 1


def test_unit_spans_cover_the_text_and_only_for_units():
    assert unit_spans({"location": "chapter"}, [(1, 0), (2, 10)], 25) == [(0, 10), (10, 25)]
    assert unit_spans({}, [(1, 0), (2, 10)], 25) == [(0, 25)]


def test_labels_in_each_documents_own_units():
    sheets = {"location": "sheet", "sheets": ["Notes", "Budget"]}
    block = "Budget, rows 2–20:\nitem | cost\nrent | 5\n\nBudget, rows 21–40:\nitem | cost\nfood | 3"
    assert unit_label(sheets, 2, block) == "sheet 'Budget', rows 2–40"
    assert unit_label(sheets, 2, "Budget, row 7:\nitem | cost") == "sheet 'Budget', row 7"
    assert unit_label(sheets, 2, "a long row cut in two") == "sheet 'Budget'"
    assert unit_label({"location": "slide"}, 3) == "slide 3"
    assert unit_label({"location": "chapter", "chapters": ["", "The Title"]}, 2) == "chapter 'The Title'"
    assert unit_label({"location": "chapter", "chapters": ["", "The Title"]}, 1) == "chapter 1"
    assert unit_label({}, 4) == "page 4" and unit_label({}, None) == ""
    # a source saved before places were named still says its page
    assert where({"page": 4}) == "page 4" and where({"page": None}) == "" and where({"where": "slide 2"}) == "slide 2"


def test_ocr_marks_pages_read_from_images():
    assert read_by_ocr({"ocr_pages": [2]}, 2) and not read_by_ocr({"ocr_pages": [2]}, 1)
    assert read_by_ocr({"ocr_pages": [1]}, None)  # one photo: no pages, all of it read by OCR
    assert not read_by_ocr({}, 3)


def _hit(coll: Collection, query: str):
    hits = coll.search(query, k=1, mode="bm25")
    assert hits, f"nothing found for {query!r}"
    return hits[0]


@pytest.fixture
def formats_collection(settings):
    files = ["simple.pptx", "2023-half-year-analyses-by-segment.xlsx", "eng_spa_mult.epub"]
    paths = [str(shared_data("formats", name)) for name in files]
    coll = Collection.open(settings)
    report = coll.ingest(paths)
    assert report.documents_added == 3, report.errors
    return coll


def test_real_files_are_cited_by_slide_sheet_and_chapter(formats_collection):
    slide = _hit(formats_collection, "Where have all the flowers gone")
    assert slide.source.endswith("simple.pptx") and slide.where == "slide 2" and not slide.ocr
    assert "Title Slide" not in slide.text  # the first slide's words stay in the first slide's chunk
    sheet = _hit(formats_collection, "Mainly corporate and research and development assets")
    sheets = formats_collection.document(sheet.source).metadata["sheets"]
    assert sheet.where == f"sheet '{sheets[sheet.page - 1]}', rows 12–20"  # the phrase's block on sheet 4
    assert sheet.text.startswith(f"{sheets[sheet.page - 1]}, rows 12–20:\n")
    chapter = _hit(formats_collection, "born free and equal in dignity")
    assert chapter.where == "chapter 'Untitled document'"

    # every place a citation is shown says the same
    assert format_source(1, slide).startswith(f"[1] ({slide.title}, slide 2)\n")
    source = {"n": 1, **slide.to_dict()}
    assert "slide 2" in sources_md([source]) and "page" not in sources_md([source])
    assert "slide 2" in hit_card_html(slide, []) and "page 2" not in hit_card_html(slide, [])
    exported = export_markdown([{"question": "q", "answer": "a", "sources": [source]}], "default")
    assert "simple.pptx, slide 2 " in exported
    doc = formats_collection.document(slide.source)
    viewer = passage_html(source, doc.text, doc.pages)
    assert "Slide 2 of the document." in viewer and "With a subtitle" not in viewer  # slide 1 is not shown
    sheet_viewer = passage_html({"n": 2, **sheet.to_dict()}, *_text_and_pages(formats_collection, sheet.source))
    assert escape_html(f"{sheet.where[:1].upper()}{sheet.where[1:]} of the document.") in sheet_viewer


def _text_and_pages(coll: Collection, source: str):
    doc = coll.document(source)
    return doc.text, doc.pages


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="OCR needs Debian's tesseract-ocr")
def test_a_hit_read_by_ocr_is_marked(settings):
    coll = Collection.open(settings)
    scan, text = (str(shared_data("formats", name)) for name in ("layout-parser-paper-fast.tiff", "simple.pptx"))
    assert coll.ingest([scan, text]).errors == []
    read = _hit(coll, "A Unified Toolkit for Deep Learning")
    typed = _hit(coll, "Where have all the flowers gone")
    assert read.source == scan and read.ocr and read.where == "" and not typed.ocr  # one image: no pages
    card = hit_card_html(read, [])
    assert f'title="{escape_html(OCR_NOTE)}">{OCR_MARK}</span>' in card and OCR_MARK not in hit_card_html(typed, [])
    assert f"({OCR_NOTE})" in sources_md([{"n": 1, **read.to_dict()}])


def test_a_smaller_chunk_size_keeps_every_table_chunk_labelled(settings, tmp_path):
    """The loader cuts a sheet's blocks of rows by the chunk size the ingest asks for, so no chunk loses the
    label and header of its block."""
    path = tmp_path / "people.csv"
    path.write_text("name;city;age\n" + "".join(f"person {i};town {i};{i}\n" for i in range(1, 101)))
    coll = Collection.open(settings)
    coll.ingest([str(path)], chunk_size=150)
    hits = coll.search("person town", k=50, mode="bm25")
    assert len(hits) > 10 and all(h.where.startswith("sheet 'people', row") for h in hits)
    assert all(h.text.split("\n")[1] == "name | city | age" for h in hits)
