"""The answerability gate: names and numbers the passages lack, similarity, and the QA chain's abstention."""

from __future__ import annotations

import pytest

from rag.chains import QAChain
from rag.chains.gate import answerable, missing_names, missing_numbers, names
from rag.evidence import key_sentence
from rag.prompts import NO_ANSWER
from tests.fakes import Hit, RecordingSearch, ScriptedGenerator

SPECTRE = ("Spectre (2015) is the twenty-fourth James Bond film produced by Eon Productions. It features Daniel "
           "Craig in his fourth performance as James Bond, and Christoph Waltz as Ernst Stavro Blofeld. Spectre "
           "was released on 26 October 2015 in the United Kingdom on the same night as the world premiere at the "
           "Royal Albert Hall in London. With a budget around $245 million, it is the most expensive Bond film.")
ZELDA = ("The Legend of Zelda: Twilight Princess is an action-adventure game developed and published by "
         "Nintendo for the GameCube and Wii home video game consoles. Link uses a sword and shield in combat, "
         "complemented with secondary weapons such as the Clawshot, a bow and arrows, and bombs.")
SICHUAN = "The Beichuan Fault slipped by 3.5 metres. More than 69,000 people died in the 2008 Sichuan earthquake."


@pytest.fixture(scope="module")
def embed():
    from rag.embedding import get_embedder

    return get_embedder().embed


def _verdict(question: str, text: str, title: str, embed):
    """The gate's verdict on one retrieved chunk, scored by the real embedding model as retrieval scores it."""
    vectors = embed([question, text])
    hit = Hit(1, 1.0, f"{title}.txt", text, title=title, dense_score=float(vectors[0] @ vectors[1]))
    return answerable(question, [hit], key_sentence(question, [text], embed), embed)


# ---- the features


def test_names_are_runs_of_capitalised_words_without_the_first_word_acronyms_or_possessives():
    assert names("What genre of games is Clawshot Princess?") == ["Clawshot Princess"]
    assert names("Which Nintendo console ran The Legend of Zelda: Twilight Princess?") == [
        "Nintendo", "Legend", "Zelda", "Twilight Princess"]
    assert names("What is the name of Estonia's Navy in NYC?") == ["Estonia", "Navy"]
    assert names("Daniel Craig stars in what film?") == ["Craig"]
    # A follow-up made standalone quotes the question it follows: its first word starts a question too.
    assert names('Why did she paint the lamp room violet? (following "Tell me everything about Gull Point")') == [
        "Gull Point"]
    assert names("Who wrote it? Marisol Vantreeck?") == ["Vantreeck"]


def test_a_name_is_missing_when_no_passage_holds_its_words_in_a_run():
    assert missing_names("What genre of games is Clawshot Princess?", [ZELDA]) == ["Clawshot Princess"]
    assert missing_names("What genre of games is Twilight Princess?", [ZELDA]) == []
    assert missing_names("Who uses the Clawshot?", [ZELDA]) == []


def test_accents_possessives_and_one_slip_in_a_long_word_still_match_but_a_short_word_must_be_exact():
    passage = "Beyoncé's album B'Day followed. " + SICHUAN
    assert missing_names("Who produced Beyonce's second album?", [passage]) == []
    assert missing_names("How far did the Beichaun Fault slip?", [passage]) == []
    assert missing_names("How far did the Baichaun Fault slip?", [passage]) == ["Baichaun Fault"]
    assert missing_names("Who plays Eva Moneypenny?", ["Naomie Harris plays Eve Moneypenny."]) == ["Eva Moneypenny"]


def test_numbers_of_two_digits_or_more_must_appear_and_thousands_separators_do_not_count():
    assert missing_numbers("How many of the 69000 died in 2008?", [SICHUAN]) == []
    assert missing_numbers("What happened on 16 October 2015?", [SPECTRE]) == ["16"]
    assert missing_numbers("Who were the 3 people?", [SPECTRE]) == []


# ---- the verdict, with the real embedding model


def test_a_question_naming_what_the_passage_lacks_abstains_and_says_what(embed):
    verdict = _verdict("What genre of games is Clawshot Princess?", ZELDA, "Twilight Princess", embed)
    assert not verdict.ok
    assert "'Clawshot Princess'" in verdict.reason
    assert _verdict("What genre of games is Twilight Princess?", ZELDA, "Twilight Princess", embed).ok


def test_a_swapped_number_abstains_and_the_right_one_passes(embed):
    verdict = _verdict("What James Bond film was released on 16 October 2015?", SPECTRE, "Spectre", embed)
    assert not verdict.ok and "'16'" in verdict.reason
    assert _verdict("What James Bond film was released on 26 October 2015?", SPECTRE, "Spectre", embed).ok


def test_an_off_topic_question_abstains_on_similarity(embed):
    verdict = _verdict("At what temperature does tungsten boil?", SPECTRE, "Spectre", embed)
    assert not verdict.ok and "close in meaning" in verdict.reason


def test_without_an_embedder_only_the_chunk_similarity_is_checked(embed):
    question = "Which fault moved when the Qinghai quake struck?"
    key = key_sentence(question, [SICHUAN])
    hit = Hit(1, 1.0, "s.txt", SICHUAN, dense_score=0.5)
    assert key is not None and key.score < 0.42  # word overlap alone, on another scale
    assert answerable(question, [hit], key, None).ok
    assert "'Qinghai'" in answerable(question, [hit], key, embed).reason
    assert not answerable(question, [Hit(1, 1.0, "s.txt", SICHUAN, dense_score=0.2)], key, None).ok
    assert not answerable(question, [], None, None).ok


# ---- the QA chain


class _Collection(RecordingSearch):
    """Fixed hits, with the real embedder, as a collection offers it."""

    def __init__(self, hits):
        from rag.embedding import get_embedder

        super().__init__(hits)
        self.embedder = get_embedder()


def test_the_chain_abstains_without_asking_the_model_and_tells_the_reader_why():
    gen = ScriptedGenerator(["never asked"], n_ctx=400, max_tokens=30)
    chain = QAChain(_Collection([Hit(1, 0.9, "zelda.txt", ZELDA, dense_score=0.6)]), gen, k=1)
    answer = chain.ask("What genre of games is Clawshot Princess?")
    assert "".join(answer) == NO_ANSWER
    assert answer.result.abstained and gen.prompts == []
    assert any("'Clawshot Princess'" in note for note in answer.result.notes)


def test_the_chain_asks_the_model_when_the_passage_names_what_the_question_does():
    gen = ScriptedGenerator(["An action-adventure game [1]."], n_ctx=400, max_tokens=30)
    chain = QAChain(_Collection([Hit(1, 0.9, "zelda.txt", ZELDA, dense_score=0.6)]), gen, k=1, style="free")
    result = chain.ask("What genre of game is Twilight Princess?").run()
    assert not result.abstained and len(gen.prompts) == 1
