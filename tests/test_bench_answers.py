"""bench_answers.py --via app reads answers back from the Chat's Markdown: the parser must follow what
ui/chat_format.py and ui/escaping.py write, so these strings are built by those modules themselves."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from ui import chat_format, escaping
from ui.state import Turn

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app_client = _load("app_client")

SOURCES = [{"n": 1, "title": "Ferry", "source": "/docs/ferry.txt", "text": "The ferry leaves at 7 * daily [sic]."},
           {"n": 2, "title": "<b>Keeper</b>", "source": "https://example.com/a_b",
            "text": "Ann_Smith\n1. paints it\n- red & white"}]
ANSWERS = [
    '"The ferry leaves at seven." [1]',
    "Ann_Smith paints the lamp (red & white) [2] and *never* blue [1].",
    "1. first\n- second\n# not a heading, <b>not bold</b> \\ `code` $x$ [3]",
    "See https://example.com/a_b?x=1 [2]",
]


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("style,stopped", [("free", False), ("quote", False), ("free", True)])
def test_the_answer_read_back_from_the_chat_is_the_chains_answer(answer, style, stopped):
    turns = [Turn("Earlier?", answer="Before [1].", sources=SOURCES),
             Turn("When does the ferry leave?", answer=answer, sources=SOURCES, style=style, stopped=stopped)]
    status = "Answered by **llamacpp** from **2** of 4 retrieved chunks in 1.2 s. Click a [n] in the answer."
    turn = app_client.read_turn(chat_format.chat_messages(turns), status)
    assert turn["answer"] == answer
    assert turn["sources"] == [s["text"] for s in SOURCES]
    assert turn["abstained"] is False and turn["error"] is None


def test_an_abstention_is_read_from_the_status_line():
    result = SimpleNamespace(abstained=True, prompt_tokens=0, retrieved=[{}] * 4, sources=SOURCES, notes=[],
                             timings={"total_s": 0.02})
    turns = [Turn("Who won in 1998?", answer="The documents don't answer this question.", sources=SOURCES,
                  abstained=True)]
    turn = app_client.read_turn(chat_format.chat_messages(turns), chat_format.done_note("llamacpp", result))
    assert turn["abstained"] is True and turn["answer"] == "The documents don't answer this question."


def test_an_error_in_the_status_line_is_the_rows_error():
    status = "⚠️ " + escaping.escape_markdown("Collection 'squad' is empty; ingest [files].")
    turn = app_client.read_turn([], status)
    assert turn["error"] == "Collection 'squad' is empty; ingest [files]."


def test_answers_start_alike_on_their_first_five_words_after_normalisation():
    bench = _load("bench_answers")
    assert bench.starts_alike('"The ferry leaves at seven o\'clock," it says [1]',
                              "the ferry leaves at Seven o'clock. [2]")
    assert not bench.starts_alike("The ferry leaves at seven", "The ferry leaves at eight")
