"""Answers people can trust: evidence, citations, abstention, loops, follow-up rewrites, bad input."""

from __future__ import annotations

import pytest

from rag.chains import ChatChain, QAChain, leans_on_history, rewrite_problem
from rag.chains.base import REWRITE
from rag.errors import RagError
from rag.evidence import cited, find_support
from rag.prompts import NO_ANSWER
from rag.repetition import loop_start
from rag.text import sentences
from tests.fakes import Hit, RecordingSearch, ScriptedGenerator

LOURDES = ("Immediately behind the basilica is the Grotto, a Marian place of prayer and reflection. It is a "
           "replica of the grotto at Lourdes, France where the Virgin Mary reputedly appeared to Saint "
           "Bernadette Soubirous in 1858. At the end of the main drive is a simple, modern stone statue of Mary.")
DOME = "Atop the Main Building's gold dome is a golden statue of the Virgin Mary. Next to it is the Basilica."


# ---- sentences and evidence


def test_sentences_are_offsets_into_the_text():
    spans = sentences(LOURDES)
    assert len(spans) == 3
    assert LOURDES[spans[1][0]:spans[1][1]].startswith("It is a replica")
    assert LOURDES[spans[1][0]:spans[1][1]].endswith("in 1858.")


def test_evidence_is_the_supporting_sentence_with_offsets_into_its_chunk():
    support = find_support("The Virgin Mary appeared to Saint Bernadette Soubirous [2].", [DOME, LOURDES])
    assert support.supported and not support.unsupported
    [e] = support.evidence
    assert e.n == 2 and LOURDES[e.start:e.end] == e.text and "Bernadette Soubirous in 1858" in e.text
    assert 0.5 <= e.score <= 1.0


def test_an_answer_sentence_without_support_is_marked():
    answer = "Mary appeared to Saint Bernadette Soubirous. Penguins invented the steam engine in Peru."
    support = find_support(answer, [DOME, LOURDES])
    assert [e.sentence for e in support.evidence] == [0]
    assert support.unsupported == [1]


def test_citations_are_read_in_order_once():
    assert cited("A [2] and B [1], again [2].") == [2, 1]
    assert cited("No citation here.") == []


# ---- the QA chain: grounding, citation added, abstention


def _chain(reply, hits, **kw):
    gen = ScriptedGenerator(reply if callable(reply) else [reply], n_ctx=400, max_tokens=30)
    return QAChain(RecordingSearch(hits), gen, k=len(hits), **kw), gen


def test_an_uncited_answer_with_clear_evidence_gets_its_citation_added_and_says_so():
    chain, _ = _chain("Mary appeared to Saint Bernadette Soubirous.",
                      [Hit(1, 0.9, "dome.txt", DOME, dense_score=0.6), Hit(2, 0.8, "grotto.txt", LOURDES, dense_score=0.5)])
    result = chain.ask("To whom did the Virgin Mary appear at Lourdes?").run()
    assert result.answer == "Mary appeared to Saint Bernadette Soubirous. [2]"
    assert result.citations_added == [2] and "[2] was added" in result.notes[0]
    assert result.evidence[0]["n"] == 2 and not result.abstained


def test_the_models_own_citation_is_kept():
    chain, _ = _chain("Saint Bernadette Soubirous [2].",
                      [Hit(1, 0.9, "dome.txt", DOME, dense_score=0.6), Hit(2, 0.8, "grotto.txt", LOURDES, dense_score=0.5)])
    result = chain.ask("To whom did Mary appear?").run()
    assert result.answer == "Saint Bernadette Soubirous [2]." and result.citations_added == []


def test_irrelevant_retrieval_abstains_without_asking_the_model():
    chain, gen = _chain("never asked", [Hit(1, 0.9, "dome.txt", DOME, dense_score=0.05)])
    answer = chain.ask("What is the boiling point of tungsten?")
    assert "".join(answer) == NO_ANSWER
    result = answer.result
    assert result.abstained and gen.prompts == []
    assert [s["source"] for s in result.sources] == ["dome.txt"]  # the closest passages are still shown


def test_an_answer_no_source_supports_becomes_an_abstention_and_the_model_text_is_kept_in_a_note():
    chain, _ = _chain("Penguins invented the steam engine.", [Hit(1, 0.9, "dome.txt", DOME, dense_score=0.6)])
    result = chain.ask("Who invented the steam engine?").run()
    assert result.abstained and result.answer == NO_ANSWER
    assert "Penguins invented the steam engine." in result.notes[0]


def test_the_model_saying_the_documents_dont_say_is_an_abstention():
    chain, _ = _chain("The documents don't say.", [Hit(1, 0.9, "dome.txt", DOME, dense_score=0.6)])
    assert chain.ask("Who built it?").run().abstained


# ---- bad input


def test_empty_and_whitespace_questions_are_one_sentence():
    chain, gen = _chain("x", [Hit(1, 0.9, "dome.txt", DOME)])
    for question in ("", "   \n\t "):
        with pytest.raises(RagError, match="empty") as err:
            chain.ask(question)
        assert "\n" not in str(err.value)
    assert gen.prompts == []


def test_a_collection_with_no_documents_is_one_sentence():
    class Empty(RecordingSearch):
        def documents(self):
            return []

    chain = QAChain(Empty([]), ScriptedGenerator(["x"], n_ctx=400))
    with pytest.raises(RagError, match="no documents yet; ingest"):
        chain.ask("What is in here?")


def test_a_model_that_produces_nothing_is_one_sentence():
    chain, _ = _chain("", [Hit(1, 0.9, "dome.txt", DOME, dense_score=0.6)])
    answer = chain.ask("What is atop the dome?")
    with pytest.raises(RagError, match="returned no text"):
        answer.run()


# ---- loops


def test_a_repeating_generation_is_found_where_the_repetition_began():
    text = "The main themes are games. Super Mario is a game. Super Mario is a game. Super Mario is a game."
    cut = loop_start(text)
    assert text[:cut].rstrip() == "The main themes are games. Super Mario is a game."
    assert loop_start("no no no no no no no") == 3
    assert loop_start("A list: red apples, green apples, yellow apples and ripe apples.") is None


def test_the_chain_stops_a_loop_keeps_what_came_before_and_says_so():
    loop = "Mario is a plumber [1]. " + "Super Mario Bros is a game. " * 8
    chain, _ = _chain(loop.strip(), [Hit(1, 0.9, "mario.txt", "Mario is a plumber. Super Mario Bros is a game.",
                                        dense_score=0.7)])
    result = chain.ask("Who is Mario?").run()
    assert result.answer == "Mario is a plumber [1]. Super Mario Bros is a game."
    assert any("repeating itself" in n for n in result.notes)


# ---- follow-ups


@pytest.mark.parametrize("question, rewrite, problem", [
    ("Which one needs human help?", "Which approach to task decomposition needs human help?", None),
    ("Which one needs human help?", "Task decomposition can be done by LLM prompting.", "not a question"),
    ("What is ReAct?", "What is Chain of Thought?", "drops 'react'"),
    ("And its size?", "What is the size of the dome?", None),
    ("Why?", "", "empty"),
])
def test_a_rewrite_must_be_a_question_that_keeps_the_users_key_terms(question, rewrite, problem):
    found = rewrite_problem(question, rewrite)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("question, rewrite, problem", [
    # Found by a newcomer: a model that echoes "what about X?" or answers "why?" with the last question.
    ("what about extrinsic?", "What about extrinsic?", "adds nothing from the conversation"),
    ("Why?", "What are the two types of hallucination?", "previous question over again"),
    ("why does it happen?", "Why does it happen?", "adds nothing from the conversation"),
    ("And what is Chain of Thought?", "What is Chain of Thought?", None),
    ("What about its cost?", "What is the cost of the Eiffel Tower?", None),
    ("Who won the 1998 World Cup?", "who won the 1998 world cup?", None),
])
def test_a_rewrite_that_brings_nothing_from_the_conversation_is_not_used(question, rewrite, problem):
    found = rewrite_problem(question, rewrite, previous="What are the two types of hallucination?")
    assert (found is None) if problem is None else (problem in found), found


def test_a_follow_up_rewritten_into_the_previous_question_gets_its_subject_instead():
    replies = iter(["What are the two types of hallucination?", "Because the data is noisy [1]."])
    gen = ScriptedGenerator(lambda p: next(replies), n_ctx=600, max_tokens=30)
    search = RecordingSearch([Hit(1, 0.9, "h.txt", "Hallucination comes from noisy training data.", dense_score=0.6)])
    history = [("What are the two types of hallucination?", "Intrinsic and extrinsic [1].")]
    result = ChatChain(search, gen).ask("Why?", history).run()
    assert result.standalone_question == 'Why? (following "What are the two types of hallucination?")'
    assert search.queries[-1][0] == result.standalone_question
    assert "previous question over again" in result.notes[0] and result.notes[0].kind == REWRITE


def test_a_follow_up_naming_its_own_subject_is_searched_alone_without_asking_the_model_to_rewrite():
    """Found by a newcomer: "What about memory?" after a task-decomposition question was searched with the
    previous question too, and got four task-decomposition chunks."""
    gen = ScriptedGenerator(lambda p: "Memory holds past observations [1].", n_ctx=600, max_tokens=30)
    search = RecordingSearch([Hit(1, 0.9, "agent.txt", "Memory holds past observations of the agent.",
                                  dense_score=0.6)])
    history = [("What are the approaches to task decomposition?", "LLM prompting [1].")]
    result = ChatChain(search, gen).ask("What about memory?", history).run()
    assert [q for q, _, _ in search.queries] == ["What about memory?"]
    assert result.standalone_question == "What about memory?" and len(gen.prompts) == 1  # no rewrite asked


def test_a_bad_rewrite_falls_back_to_the_users_words_and_never_reaches_the_next_turn():
    replies = iter(["Task decomposition is done by LLM prompting.",   # condense: a statement, not a question
                    "It needs human help [1].",                        # the answer
                    "Which approach to task decomposition needs a retriever?",  # condense, next turn: accepted
                    "None needs a retriever [1]."])
    gen = ScriptedGenerator(lambda p: next(replies), n_ctx=600, max_tokens=30)
    hits = [Hit(1, 0.9, "agent.txt", "Task decomposition can use human help. Retrieval needs a retriever.",
                dense_score=0.6)]
    search = RecordingSearch(hits)
    chain = ChatChain(search, gen)
    history = [("What are the approaches to task decomposition?", "LLM prompting [1].")]
    second = chain.ask("Which one needs human help?", history).run()
    assert second.standalone_question == ('Which one needs human help? (following "What are the approaches to '
                                          'task decomposition?")')
    assert search.queries[-1][0] == second.standalone_question
    assert "was not used (it is not a question)" in second.notes[0]
    history.append((second.question, second.answer, second.standalone_question))
    third = chain.ask("Which of them needs a retriever?", history).run()
    condense_prompt = gen.prompts[2]
    assert "Human: Which one needs human help?" in condense_prompt
    assert "Task decomposition is done by LLM prompting" not in condense_prompt
    assert third.standalone_question == "Which approach to task decomposition needs a retriever?"


def test_a_follow_up_that_stands_on_its_own_is_searched_as_written():
    gen = ScriptedGenerator(lambda p: "France [1].", n_ctx=600, max_tokens=30)
    search = RecordingSearch([Hit(1, 0.9, "cup.txt", "France won the 1998 World Cup.", dense_score=0.6)])
    history = [("What is few-shot prompting?", "Examples in the prompt [1].")]
    result = ChatChain(search, gen).ask("Who won the 1998 World Cup?", history).run()
    assert search.queries[-1][0] == "Who won the 1998 World Cup?" and not result.notes[:-1]


def test_a_follow_up_never_quotes_again_what_an_earlier_answer_quoted():
    """Found by a newcomer: "Why?" was rewritten into the first question and its quote repeated word for word."""
    from rag.chains.candidates import candidates

    text = "Task decomposition uses prompting. It can also use human inputs. Tools help too."
    masked = candidates([text], ['"Task decomposition uses prompting." [1]'])[0]
    assert len(masked) == len(text) and "prompting" not in masked and "human inputs" in masked
    assert candidates([text], ["Yes [1]"]) == [text]  # too short to be a quote of anything


def test_a_bibliography_entry_is_not_an_answer_but_the_text_that_cites_it_is():
    from rag.chains.candidates import candidates

    entry = "[7] Wei et al. “Chain of thought prompting elicits reasoning in large language models.” NeurIPS 2022"
    text = "Chain-of-thought (CoT) prompting (Wei et al. 2022) generates a sequence of short sentences."
    assert candidates([entry, text], []) == [" " * len(entry), text]
    assert candidates([entry], []) == [entry]  # nothing else to answer from: left as it is


@pytest.mark.parametrize("question, needs", [
    ("What about memory?", False), ("What is ReAct?", False), ("Why?", True), ("Tell me more.", True),
    ("Which one needs human help?", True), ("What about its cost?", True), ("And self-consistency?", False),
    ("What is Toolformer and how is it trained?", False),  # "it" is Toolformer, named before it
    ("How does it work?", True), ("How many people live there?", True),
    ("What is chain-of-thought and why does it help?", False),
])
def test_which_follow_ups_take_their_subject_from_the_conversation(question, needs):
    from rag.chains.followups import needs_subject

    assert needs_subject(question) is needs


@pytest.mark.parametrize("previous, subject", [
    ("What are the approaches to Task Decomposition?", "What are the approaches to Task Decomposition?"),
    ('Why? (following "What are the approaches to Task Decomposition?")',
     "What are the approaches to Task Decomposition?"),
])
def test_a_follow_up_continues_the_question_before_it_whole(previous, subject):
    """Found by a newcomer: a subject cut out of "How does self-consistency sampling pick the final answer?" by
    rule read "(about self-consistency sampling pick the final answer)"."""
    from rag.chains.followups import subject_of, with_subject

    assert subject_of(previous) == subject
    assert with_subject("Why?", previous) == f'Why? (following "{subject}")'


@pytest.mark.parametrize("question, leans", [
    ("Which one needs human help?", True), ("What about that?", True), ("What is ReAct?", True),
    ("Who won the 1998 World Cup?", False), ("How is chain-of-thought prompting evaluated?", False),
])
def test_which_follow_ups_lean_on_the_previous_turn(question, leans):
    assert leans_on_history(question) is leans


# ---- a real conversation: the default model on a real article


# Each turn, and the section of the article its answer must come from (any heading under it counts).
CONVERSATION = [
    ("What is few-shot learning?", {"Few-shot", "Tips for Example Selection", "Tips for Example Ordering"}),
    ("How should the examples be selected?", {"Tips for Example Selection"}),
    ("What about chain-of-thought prompting?", {"Chain-of-Thought (CoT)", "Types of CoT prompts",
                                                "Tips and Extensions"}),
    ("Why?", {"Chain-of-Thought (CoT)", "Types of CoT prompts", "Tips and Extensions"}),
    ("What about retrieval?", {"Retrieval", "Augmented Language Models"}),
    ("Tell me more.", {"Retrieval", "Augmented Language Models"}),
]


def _section(headings: list[dict], offset: int) -> str:
    """The heading of the part of the document `offset` lies in."""
    before = [h for h in headings if h["start"] <= offset]
    return before[-1]["text"] if before else ""


def _answer_offset(result) -> int:
    """Where in the document the answer comes from: its evidence sentence, else the first source."""
    if result.evidence:
        e = result.evidence[0]
        return result.sources[e["n"] - 1]["start"] + e["start"]
    return result.sources[0]["start"]


@pytest.mark.slow
def test_a_six_turn_conversation_on_a_real_article_keeps_each_turns_subject(settings):
    """The default model, the notebook's answer path, and a conversation that changes subject: each turn's
    answer comes from the section it asks about, and no answer repeats an earlier one."""
    pytest.importorskip("llama_cpp")
    from rag.chains.path import AnswerPath
    from rag.collection import Collection
    from rag.generators import get_generator
    from tests.conftest import shared_data

    page = shared_data("articles", "2023-03-15-prompt-engineering", "index.html")
    settings = settings.replace(temperature=0.0, max_tokens=64)
    coll = Collection.open(settings)
    coll.ingest([str(page)])
    headings = coll.document(coll.documents()[0].source).metadata["headings"]
    generator = get_generator(settings.backend, settings)
    chain, history, answers, found = AnswerPath(coll, generator, settings).chat(), [], [], []
    try:
        for question, expected in CONVERSATION:
            result = chain.ask(question, history).run()
            found.append((question, result.standalone_question, _section(headings, _answer_offset(result))))
            assert found[-1][2] in expected, found
            assert result.abstained or result.answer not in answers, f"turn {question!r} repeated an answer"
            answers.append(result.answer)
            history.append((question, result.answer, result.standalone_question))
    finally:
        generator.close()
    assert [turn[0] for turn in history] == [q for q, _ in CONVERSATION]  # the user's words, never a rewrite


def test_a_whole_document_summary_gives_each_of_the_documents_own_headings_a_line():
    """The summary once ended with the headings appended, unlabelled, as if the model had covered them."""
    from rag.chains import SummarizeChain

    text = ("Basic Prompting\nZero-shot and few-shot learning are the two most basic approaches.\n"
            "Chain-of-Thought\nChain-of-thought prompting asks the model for reasoning steps first.")
    gen = ScriptedGenerator(["Two basic approaches.", "Reasoning steps first."], n_ctx=400)
    result = SummarizeChain(RecordingSearch([]), gen).summarize(documents=[("Prompting", text)]).run()
    assert result.outline == ["Basic Prompting", "Chain-of-Thought"]
    assert result.answer == ("**Basic Prompting** — Two basic approaches. (written by the model)\n"
                             "**Chain-of-Thought** — Reasoning steps first. (written by the model)")
    assert "Sections of the document" not in result.answer


def test_abbreviations_do_not_end_a_sentence():
    text = "Self-consistency sampling (Wang et al. 2022a) samples many outputs. Dr. J. Smith agrees, e.g. here."
    assert [text[a:b] for a, b in sentences(text)] == [
        "Self-consistency sampling (Wang et al. 2022a) samples many outputs.", "Dr. J. Smith agrees, e.g. here."]


def test_a_citation_of_a_source_that_was_not_given_is_removed_and_said():
    chain, _ = _chain("Saint Bernadette Soubirous [9].", [Hit(1, 0.9, "grotto.txt", LOURDES, dense_score=0.6)])
    result = chain.ask("To whom did Mary appear?").run()
    assert "[9]" not in result.answer and result.answer.endswith("[1]")
    assert any("[9] named no source" in n for n in result.notes)


@pytest.mark.parametrize("text, end", [
    ("The approaches are:\n\n1. Prompting [1].\n\n2. Human inputs [2].", None),
    ("The approaches are:\n\n1. Prompting [1].\n\n2. Human inputs [2].\n\nI hope this helps!",
     len("The approaches are:\n\n1. Prompting [1].\n\n2. Human inputs [2].")),
    ("Paris [1].\n\nNote: I am a model.", 10),
    ("Paris [1].\n\n", None),  # too little after the blank line to tell
    ("- one\n\n- two", None),
])
def test_a_free_answer_ends_at_a_blank_line_but_not_inside_a_list(text, end):
    """Found by a newcomer: "The approaches to Task Decomposition are: [4]" and nothing after."""
    from rag.chains.qa import answer_end

    assert answer_end(text) == end


def test_a_rewrite_that_takes_an_older_turns_subject_is_not_used():
    """Found on a real conversation: "Why?" after a chain-of-thought question was rewritten by the default
    model into the first turn's question, about few-shot learning."""
    last = "What about chain-of-thought prompting? It generates reasoning chains [1]."
    assert "earlier turn" in rewrite_problem("Why?", "What is few-shot learning?", "What about chain-of-thought "
                                             "prompting?", last)
    assert rewrite_problem("Why?", "Why does chain-of-thought prompting help?", "What about chain-of-thought "
                           "prompting?", last) is None
