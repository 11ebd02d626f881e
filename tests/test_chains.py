"""Chain logic with a scripted generator that records every prompt it is sent."""

from __future__ import annotations

import json
import re

import pytest

from rag.chains import ChatChain, QAChain, SummarizeChain
from rag.errors import RagError
from rag.prompts import Prompts
from tests.fakes import Hit, RecordingSearch, ScriptedGenerator


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def test_qa_packs_chunks_by_token_budget_and_numbers_the_sources():
    hits = [Hit(1, 0.9, "a.txt", words(40, "a")), Hit(2, 0.8, "b.txt", words(110, "b")),
            Hit(3, 0.7, "c.txt", words(30, "c"), page=3)]
    gen = ScriptedGenerator(["It is a0 [1]."], n_ctx=200, max_tokens=20)
    search = RecordingSearch(hits)
    answer = QAChain(search, gen, k=3, mode="bm25").ask("what is a0?")
    assert "".join(answer) == "It is a0 [1]."
    result = answer.result
    assert search.queries == [("what is a0?", 3, "bm25")]
    # b (110 words) does not fit beside a; c (30) still does, and is numbered 2.
    assert [s["source"] for s in result.sources] == ["a.txt", "c.txt"]
    assert [s["n"] for s in result.sources] == [1, 2]
    assert "[1] (a.txt)" in result.prompt and "[2] (c.txt, page 3)" in result.prompt and "b0" not in result.prompt
    assert result.prompt_tokens == gen.count_tokens(gen.prompts[0])
    assert result.prompt_tokens + 20 <= 200
    assert [h["score"] for h in result.retrieved] == [0.9, 0.8, 0.7]
    assert set(result.timings) >= {"ttft_s", "prompt_tps", "gen_tps"}


def test_sources_and_prompt_are_known_before_the_first_token():
    gen = ScriptedGenerator(["An answer."], n_ctx=200, max_tokens=20)
    answer = QAChain(RecordingSearch([Hit(1, 0.9, "a.txt", words(10, "a"))]), gen, k=1).ask("q?")
    ready = answer.prepared
    assert gen.prompts == []  # nothing generated yet
    assert [s["source"] for s in ready.sources] == ["a.txt"] and "a0" in ready.prompt
    assert ready.prompt_tokens > 0 and ready.answer == ""
    assert "".join(answer) == "An answer." and answer.result.prompt == ready.prompt


def test_qa_default_prompt_has_a_system_message_and_the_question_comes_last():
    gen = ScriptedGenerator(lambda p: "a0 [1].", n_ctx=400)
    chain = QAChain(RecordingSearch([Hit(1, 1.0, "a", words(10, "a"))]), gen)
    first = chain.ask("first question?").run().prompt
    second = chain.ask("another one?").run().prompt
    assert first.startswith("system: You answer questions using only the numbered sources")
    assert "cite its source number like [1]" in first
    assert first.endswith("Question: first question?\nAnswer in a few words taken from the sources.")
    prefix = first[:first.index("Question:")]
    assert second.startswith(prefix)


def test_qa_custom_prompt_is_used_and_a_bad_one_is_refused():
    gen = ScriptedGenerator(lambda p: "ok", n_ctx=400)
    custom = Prompts(qa="Context:\n{context}\nQ: {question}\nA:")
    result = QAChain(lambda q, k, mode: [Hit(1, 1.0, "a", "alpha")], gen, prompts=custom).ask("q?").run()
    assert "user: Context:\n[1] (a)\nalpha" in result.prompt
    with pytest.raises(RagError, match=r"lacks \{context\}"):
        QAChain(lambda q, k, mode: [], gen, prompts=Prompts(qa="Just {question}"))


def test_question_too_long_for_the_context_is_cut_and_the_reader_told():
    gen = ScriptedGenerator(lambda p: "alpha [1].", n_ctx=200, max_tokens=20)
    search = RecordingSearch([Hit(1, 1.0, "a", "alpha")])
    result = QAChain(search, gen).ask(words(900, "q")).run()
    assert len(result.standalone_question.split()) == 50  # a quarter of the 200-token context
    assert result.standalone_question.startswith("q0 q1") and "q50" not in result.standalone_question
    assert len(result.notes) == 1 and "cut to its first" in result.notes[0] and "\n" not in result.notes[0]
    assert search.queries[0][0] == result.standalone_question


def test_empty_question_is_refused():
    with pytest.raises(RagError, match="empty"):
        QAChain(RecordingSearch([]), ScriptedGenerator([])).ask("   ")


def test_chat_condenses_follow_ups_and_retrieves_with_the_standalone_question():
    gen = ScriptedGenerator(["Paris is the capital.", "How many people live in Paris?\nextra", "About 2 million."],
                            n_ctx=400)
    search = RecordingSearch([Hit(1, 1.0, "paris.txt", "Paris has about two million people.")])
    chain = ChatChain(search, gen)
    first = chain.ask("What is the capital of France?", []).run()
    assert first.standalone_question == "What is the capital of France?" and len(gen.prompts) == 1
    second = chain.ask("How many people live there?", [(first.question, first.answer)]).run()
    condense_prompt = gen.prompts[1].split("\n", 1)[1]  # after the QA system line: the condense prompt has none
    assert "Human: What is the capital of France?\nAssistant: Paris is the capital." in condense_prompt
    assert condense_prompt.rstrip().endswith("Follow Up Input: How many people live there?\nStandalone question:")
    assert second.standalone_question == "How many people live in Paris?"
    assert second.question == "How many people live there?"
    assert search.queries[-1][0] == "How many people live in Paris?"
    assert "Question: How many people live in Paris?\nAnswer in a few words" in gen.prompts[2]


def test_chat_drops_oldest_turns_when_history_is_too_long():
    gen = ScriptedGenerator(["What is the follow up?", "answer"], n_ctx=300, max_tokens=20)
    history = [(words(30, f"q{i}_"), words(30, f"a{i}_")) for i in range(6)]
    result = ChatChain(RecordingSearch([]), gen).ask("Why is that?", history).run()
    assert result.abstained and len(gen.prompts) == 1  # nothing found: the model is not asked to answer
    condense = gen.prompts[0]
    assert "q5_0" in condense and "q0_0" not in condense
    assert gen.count_tokens(condense) + ChatChain.condense_max_tokens <= 300


def test_summarize_stuffs_when_it_fits():
    gen = ScriptedGenerator(["Themes: a and b."], n_ctx=300)
    hits = [Hit(1, 1.0, "a", words(20, "a")), Hit(2, 0.5, "b", words(20, "b"))]
    result = SummarizeChain(RecordingSearch(hits), gen).summarize("themes").run()
    assert result.strategy == "stuff" and len(gen.prompts) == 1
    assert gen.prompts[0].startswith("system: You summarise documents faithfully")
    assert gen.prompts[0].endswith("Summarize the main themes of the text above in a few sentences.")
    assert "a19" in gen.prompts[0] and "b19" in gen.prompts[0]
    assert [s["n"] for s in result.sources] == [1, 2]


def test_summarize_map_reduces_text_over_the_budget():
    gen = ScriptedGenerator(lambda p: "summary" if "one or two sentences" in p else "final themes", n_ctx=120,
                            max_tokens=10)
    docs = [("long.txt", words(200, "w"))]
    chain = SummarizeChain(RecordingSearch([]), gen)
    steps = []
    answer = chain.summarize(documents=docs, strategy="map_reduce", progress=lambda *s: steps.append(s))
    assert gen.prompts == []  # the map steps run inside the stream, so Stop can end them
    result = answer.run()
    assert result.strategy == "map_reduce"
    maps = [p for p in gen.prompts if "one or two sentences" in p]
    assert len(maps) == chain.map_calls >= 3
    assert [s for s in steps if s[0] == "map"] == [("map", i, len(maps)) for i in range(1, len(maps) + 1)]
    # every word reached some map prompt, and the final prompt holds the summaries, not the text
    mapped = set(" ".join(maps).split())
    assert {f"w{i}" for i in range(200)} <= mapped
    assert "w0" not in result.prompt and "summary" in result.prompt
    assert result.answer == "final themes"


def test_map_reduce_is_bounded_and_stopping_ends_it():
    gen = ScriptedGenerator(lambda p: "summary" if "one or two sentences" in p else "final", n_ctx=120,
                            max_tokens=10)
    chain = SummarizeChain(RecordingSearch([]), gen)
    chain.max_pieces = 4
    answer = chain.summarize(documents=[("long.txt", words(2000, "w"))], strategy="map_reduce")
    stream = iter(answer)
    next(stream)  # the four maps ran, the reduce began
    assert chain.map_calls == 4
    stream.close()  # Stop
    assert answer.result.stopped and len(gen.prompts) == 5


TIDES = [
    "The tides rise and fall twice a day because the moon pulls on the oceans.",
    "The gravity of the moon raises a bulge of water on the side of the earth that faces it.",
    "A second bulge forms on the far side of the earth, where the moon pulls on the water least.",
    "When the sun and the moon line up, their pulls add together and make the large spring tides.",
    "When the sun and the moon stand at right angles, their pulls partly cancel and make small neap tides.",
    "The shape of a coast and the depth of the sea change how high the tide rises in each harbour.",
    "In the Bay of Fundy the sea rises more than fifteen metres between low tide and high tide.",
    "Tide tables predict the times of high and low water from the positions of the moon and the sun.",
    "Sailors read the tide tables to know when a harbour is deep enough for their boats to enter.",
]
ASIDES = [  # first in the document, so a summary that read it in order, not by centrality, reads these
    "Bread dough needs flour, water, salt and yeast. Knead the dough for ten minutes, let it rise in a warm "
    "kitchen for an hour, shape the loaf, and bake it in a hot oven until the crust is brown and it sounds "
    "hollow when you tap it.",
    "The football club signed a new striker in the summer. He scored twice in his first match, and the fans "
    "sang his name until the final whistle. The coach said the team would play with three forwards this season.",
    "A tax return lists the income of a household for the year. Deductions for pensions and gifts to charity "
    "lower the tax owed, and a return filed after the deadline pays a penalty on top of the tax.",
]


class _Embedded(RecordingSearch):
    """No hits, and the real embedder, as a collection offers it: what the central strategy ranks with."""

    def __init__(self):
        from rag.embedding import get_embedder

        super().__init__([])
        self.embedder = get_embedder()


def test_summarize_reads_the_central_passages_of_a_long_document_once():
    """A document about tides that opens with three asides: the passages read are about tides, the
    document's centre, not its first ones (with no embedder the chain falls back to document order)."""
    gen = ScriptedGenerator(lambda p: "themes", n_ctx=300, max_tokens=20)
    passages = ASIDES + [" ".join(TIDES[(i + j) % len(TIDES)] for j in range(4)) for i in range(len(TIDES))]
    text = "\n\n".join(f"Part {i}\n\n{p}" for i, p in enumerate(passages))
    result = SummarizeChain(_Embedded(), gen).summarize(documents=[("tides.txt", text)], strategy="central").run()
    assert result.strategy == "central" and len(gen.prompts) == 1
    assert gen.count_tokens(gen.prompts[0]) + 20 <= 300
    assert "Read the" in result.notes[0] and "most central" in result.notes[0]
    assert not any(word in gen.prompts[0] for word in ("dough", "striker", "tax return"))
    assert any(sentence in gen.prompts[0] for sentence in TIDES)
    # the passages go in document order
    parts = [int(n) for n in re.findall(r"Part (\d+)", gen.prompts[0])]
    assert parts and parts == sorted(parts)


def test_a_central_summary_leaves_the_whole_reply_its_room_when_passages_count_more_together():
    """A tokenizer whose count for joined text exceeds the sum of its parts' (a blank line between two
    passages costs 5 tokens here, one that ends a text costs nothing, as merges across boundaries can):
    the least central passages go until the prompt and the full reply fit. Found by a newcomer: a
    summary left 45 of its 64 reply tokens."""

    class Joined(ScriptedGenerator):
        def count_tokens(self, text: str) -> int:
            return len(text.split()) + 5 * text.rstrip().count("\n\n")

    gen = Joined(lambda p: "themes", n_ctx=500, max_tokens=20)  # its stream refuses a prompt without room
    text = "\n\n".join(f"Topic {i}\n\n" + words(60, f"t{i}_") for i in range(12))
    result = SummarizeChain(RecordingSearch([]), gen).summarize(documents=[("long.txt", text)], strategy="central").run()
    assert result.strategy == "central" and "most central" in result.notes[0]
    assert gen.count_tokens(gen.prompts[0]) + 20 <= 500


def test_summarize_nothing_is_an_error():
    with pytest.raises(RagError, match="nothing to summarise"):
        SummarizeChain(RecordingSearch([]), ScriptedGenerator([])).summarize("x")


def test_budget_never_overflows_when_tokens_merge_across_blocks():
    class MergingGenerator(ScriptedGenerator):
        # Counting a joined prompt costs more than its parts: packing must re-check the whole.
        def count_tokens(self, text: str) -> int:
            return len(text.split()) + text.count("\n\n") * 3

    gen = MergingGenerator(lambda p: "ok", n_ctx=150, max_tokens=20)
    hits = [Hit(i, 1.0, f"s{i}", words(12, f"h{i}_")) for i in range(10)]
    result = QAChain(RecordingSearch(hits), gen, k=10).ask("q?").run()
    assert gen.count_tokens(gen.prompts[0]) + 20 <= 150
    assert 0 < len(result.sources) < 10


# ---- the commands end to end: a real collection, a real model (stories260K), greedy


@pytest.fixture
def indexed(settings, monkeypatch):
    pytest.importorskip("llama_cpp")
    from rag.collection import Collection
    from rag.documents import Document
    from tests.conftest import shared_data

    model = shared_data("models", "stories260K.gguf")
    Collection.open(settings).add_documents([
        Document("mem://cats", "Cats purr when they are content.\n\nA cat sleeps most of the day.", "Cats"),
        Document("mem://faiss", "FAISS searches dense vectors by inner product.", "FAISS"),
    ], chunk_size=50)
    monkeypatch.setenv("RAG_MODELS_DIR", str(settings.models_dir))
    return ["--index", str(settings.index_dir), "--model", str(model), "--n-ctx", "512", "--max-tokens", "16",
            "--temperature", "0", "-k", "2"]


def test_ask_json_has_the_documented_shape(indexed, capsys):
    from rag.cli import main

    assert main(["ask", "Why do cats purr?", "--json", "--mode", "bm25", *indexed]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"answer", "question", "standalone_question", "sources", "prompt", "prompt_tokens",
            "completion_tokens", "timings"} <= set(out)
    assert set(out["timings"]) >= {"ttft_s", "prompt_tps", "gen_tps"}
    assert out["sources"][0]["source"] == "mem://cats" and out["sources"][0]["n"] == 1
    assert "[1] (Cats)\n" in out["prompt"] and "Cats purr when they are content." in out["prompt"]
    assert "evidence" in out and "abstained" in out and "notes" in out
    assert 0 < out["completion_tokens"] <= 16 and out["prompt_tokens"] > 20


def test_ask_questions_file_in_chat_mode_prints_one_line_per_turn(indexed, tmp_path, capsys):
    from rag.cli import main

    questions = tmp_path / "q.txt"
    questions.write_text("Why do cats purr?\n\nHow long do they sleep?\n")
    assert main(["ask", "--questions", str(questions), "--chat", *indexed]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in lines] == ["Why do cats purr?", "How long do they sleep?"]
    assert lines[0]["standalone_question"] == "Why do cats purr?"
    assert lines[1]["standalone_question"]  # rewritten by the model (or the question itself if it gave nothing)


def test_summarize_whole_document_and_errors_are_one_line(indexed, capsys):
    from rag.cli import main

    assert main(["summarize", "--source", "mem://cats", "--json", *indexed]) == 0
    out = json.loads(capsys.readouterr().out)
    # a tiny model: the document's one part is its most central sentence, quoted, and no model call is made
    assert out["strategy"] == "parts" and out["style"] == "quote" and out["prompt"] == ""
    [part] = out["parts"]
    assert part["heading"] == "Cats" and part["kind"] == "quote" and part["n"] == 1
    assert part["text"] in ("Cats purr when they are content.", "A cat sleeps most of the day.")
    assert out["answer"] == f"**Cats** — “{part['text']}” (quoted from the document)"
    assert out["completion_tokens"] == 0 and out["timings"]["model_calls"] == 0
    assert main(["summarize", "--source", "mem://dogs", *indexed]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["ask", "x", "--backend", "llamacpp", "--model", "/no/such.gguf", *indexed[:2]]) == 1
    assert "does not exist" in capsys.readouterr().err
