"""Sentences as a reader sees them: a PDF's wrapped lines joined, list items and headings apart,
abbreviations kept inside, and offsets into the original text."""

from __future__ import annotations

import pytest

from rag.text import is_fragment, sentences


def split(text: str) -> list[str]:
    return [text[a:b] for a, b in sentences(text)]


def test_a_line_break_inside_a_paragraph_does_not_end_a_sentence():
    # layout-parser-paper-fast.pdf as the loader gives it: one visual line a line of text
    text = ("Recent advances in document image analysis (DIA) have been\nprimarily driven by the application of "
            "neural networks. Ideally, research\noutcomes could be easily deployed in production and extended "
            "for further\ninvestigation.")
    assert split(text) == [
        "Recent advances in document image analysis (DIA) have been\nprimarily driven by the application of "
        "neural networks.",
        "Ideally, research\noutcomes could be easily deployed in production and extended for further\ninvestigation."]


def test_a_blank_line_ends_a_sentence_even_without_a_full_stop():
    assert split("A caption without a stop\n\nthe next paragraph starts here.") == [
        "A caption without a stop", "the next paragraph starts here."]


def test_each_list_item_is_a_sentence_without_its_marker():
    text = ("There are two types of hallucination:\n- In-context hallucination: the output should match the "
            "source.\n- Extrinsic hallucination: the output should be grounded\nby the pre-training data.\n"
            "* Memory\n• Planning\n1. Tool use\n2) Reflection\na) Action\n(b) Observation")
    assert split(text) == [
        "There are two types of hallucination:",
        "In-context hallucination: the output should match the source.",
        "Extrinsic hallucination: the output should be grounded\nby the pre-training data.",
        "Memory", "Planning", "Tool use", "Reflection", "Action", "Observation"]


def test_a_heading_is_its_own_sentence():
    text = ("Approaches differ a lot.\nTask Decomposition\nChain of thought has become a standard technique.\n"
            "1 Introduction\nDeep learning is the state of the art.\n## Memory\nShort-term memory is in-context.")
    assert split(text) == [
        "Approaches differ a lot.", "Task Decomposition", "Chain of thought has become a standard technique.",
        "1 Introduction", "Deep learning is the state of the art.", "## Memory", "Short-term memory is in-context."]


def test_a_wrapped_line_before_a_name_is_no_heading():
    # Short lines in a two-column PDF: the line ends in "the" or a hyphen, so the next line continues it.
    text = "Consider the villain Sauron in the\nLord of the Rings trilogy. A strong Lucene-\nBM25 system wins."
    assert split(text) == ["Consider the villain Sauron in the\nLord of the Rings trilogy.",
                           "A strong Lucene-\nBM25 system wins."]


@pytest.mark.parametrize("text, expected", [
    ("Self-consistency sampling (Wang et al. 2022a) samples many outputs. Dr. J. Smith agrees, e.g. here.",
     ["Self-consistency sampling (Wang et al. 2022a) samples many outputs.", "Dr. J. Smith agrees, e.g. here."]),
    ("The U.S. Senate met at 3 p.m. on Friday. It voted.", ["The U.S. Senate met at 3 p.m. on Friday.", "It voted."]),
    ("Better than heuristics (e.g. Does X answer the question?) in most cases. Fine.",
     ["Better than heuristics (e.g. Does X answer the question?) in most cases.", "Fine."]),
    ('Use task-specific instructions; e.g. "Write a story outline." for writing a novel. Then plan.',
     ['Use task-specific instructions; e.g. "Write a story outline." for writing a novel.', "Then plan."]),
    ("Its value is 3.5 m (about 11 ft.) in all. Version 2.0 followed.",
     ["Its value is 3.5 m (about 11 ft.) in all.", "Version 2.0 followed."]),
])
def test_abbreviations_initials_and_numbers_end_no_sentence(text, expected):
    assert split(text) == expected


@pytest.mark.parametrize("text", [
    "Café owners in Zürich — about 1,200 — agreed.\r\nThe rest\u00a0did not!\n\n\n“Why?” she asked.\tNo.",
    "汶川大地震 was strong. It hit Sichuan.\n- Item one\n- Item two\x00 and a control character.",
    "", "   \n\n  ", "no punctuation at all", "....", "- ", "1.",
])
def test_offsets_point_into_the_original_text(text):
    spans = sentences(text)
    assert spans == sorted(spans) and all(0 <= a < b <= len(text) for a, b in spans)
    assert all(b <= c for (_, b), (c, _) in zip(spans, spans[1:]))  # no overlaps
    for a, b in spans:
        assert text[a:b] == text[a:b].strip() and text[a:b]


def test_every_word_lands_in_a_sentence():
    """Only a list item's marker is left out."""
    text = "Title Here\nFirst line of a\nwrapped paragraph. Second one!\n- item\n\nLast words"
    spans = sentences(text)
    inside = {i for a, b in spans for i in range(a, b)}
    marker = text.index("- item")
    assert all(i in inside for i, ch in enumerate(text) if not ch.isspace() and i != marker)


@pytest.mark.parametrize("sentence, fragment", [
    ("Memory", True), ("Task Decomposition", True), ("There are two types of hallucination:", False),
    ("Sentiment:", True),
    ("Chain of thought has become a standard technique.", False), ("What Causes Hallucinations?", False),
    ("An off-the-shelf toolkit for applying DL models for layout detection and other DIA tasks", False),
])
def test_headings_and_bare_list_items_are_fragments(sentence, fragment):
    assert is_fragment(sentence) is fragment
