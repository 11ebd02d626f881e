import pytest

from rag.chunking import split_document, split_text
from rag.documents import Document
from rag.errors import RagError

TEXT = (
    "Cats purr when content. They also purr when hurt.\n\n"
    "Dogs bark. " + "Word " * 60 + "end.\nA second line here.\n\nLast paragraph."
)


def test_chunks_fit_and_point_at_their_text():
    spans = split_text(TEXT, 60)
    assert spans, "no chunks"
    for a, b in spans:
        assert 0 < b - a <= 60
        assert TEXT[a:b] == TEXT[a:b].strip()
    # Every non-space character is covered when there is no overlap.
    covered = {i for a, b in spans for i in range(a, b)}
    assert all(i in covered for i, ch in enumerate(TEXT) if not ch.isspace())


def test_paragraphs_are_kept_whole_when_they_fit():
    spans = split_text(TEXT, 60)
    assert TEXT[spans[0][0] : spans[0][1]] == "Cats purr when content. They also purr when hurt."
    assert TEXT[spans[-1][0] : spans[-1][1]] == "Last paragraph."


def test_long_paragraph_splits_at_words_not_inside_them():
    for a, b in split_text(TEXT, 60):
        assert a == 0 or not TEXT[a - 1].isalnum(), TEXT[a - 5 : b]
        assert b == len(TEXT) or not TEXT[b].isalnum(), TEXT[a : b + 5]


def test_overlap_repeats_the_end_of_the_previous_chunk():
    spans = split_text("one two three four five six seven eight nine ten", 20, 8)
    for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
        assert a2 < b1, "no overlap"
        assert b1 - a2 <= 8
    assert split_text("one two three four five six seven eight nine ten", 20, 0)[1][0] >= 14


def test_unbroken_text_is_cut_at_the_size():
    assert split_text("x" * 130, 50) == [(0, 50), (50, 100), (100, 130)]


def test_default_is_the_recipe_500_without_overlap():
    text = ("A sentence of moderate length. " * 100).strip()
    spans = split_text(text)
    assert max(b - a for a, b in spans) <= 500
    assert all(a2 >= b1 for (_, b1), (a2, _) in zip(spans, spans[1:]))


def test_pages_follow_the_offsets():
    doc = Document("x.pdf", "page one text\n\npage two text", pages=[(1, 0), (2, 15)])
    chunks = split_document(doc, 14)
    assert [(c.text, c.page) for c in chunks] == [("page one text", 1), ("page two text", 2)]


@pytest.mark.parametrize("size, overlap", [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(size, overlap):
    with pytest.raises(RagError):
        split_text("text", size, overlap)


def test_empty_and_blank_text_give_no_chunks():
    assert split_text("") == []
    assert split_text(" \n\n \t") == []
