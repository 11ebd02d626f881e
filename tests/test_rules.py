"""Each rule has one home, and the places that apply it read it from there: a test per rule, importing
the rule from its home, fails when a second copy drifts."""

from __future__ import annotations

import pytest

from rag.errors import RagError


def _choices(parser, command: str, flag: str) -> tuple:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if flag in a.option_strings).choices)


def test_sampling_defaults_live_in_generation_params():
    from rag.generators.base import GenerationParams
    from rag.settings import load_settings
    from ui.state import ChatSettings

    home, settings, panel = GenerationParams(), load_settings(environ={}), ChatSettings()
    for name in ("temperature", "top_p", "max_tokens", "seed"):
        assert getattr(settings, name) == getattr(home, name), name
    assert (panel.temperature, panel.max_tokens) == (home.temperature, home.max_tokens)
    assert (panel.backend, panel.n_ctx, panel.k, panel.mode, panel.answer_style) == (
        settings.backend, settings.n_ctx, settings.k, settings.mode, settings.answer_style)


def test_search_modes_live_in_retrieval():
    from rag.cli import build_parser
    from rag.retrieval import MODES

    from ui.blocks import MODES as shown

    parser = build_parser()
    assert _choices(parser, "search", "--mode") == MODES
    assert _choices(parser, "ask", "--mode") == _choices(parser, "summarize", "--mode") == MODES
    assert sorted(shown) == sorted(MODES) and shown[0] == "hybrid"  # the notebook's radios, the default first


def test_answer_styles_live_in_quote():
    from rag.cli import build_parser
    from rag.quote import STYLES

    parser = build_parser()
    assert _choices(parser, "ask", "--answer-style") == _choices(parser, "summarize", "--answer-style") == STYLES


def test_the_k_rule_lives_in_limits(settings):
    from rag.chains import QAChain
    from rag.collection import Collection
    from rag.limits import check_k
    from rag.retrieval import Retriever
    from tests.fakes import RecordingSearch, ScriptedGenerator

    assert check_k(100) == 100
    with pytest.raises(RagError) as home:
        check_k(0)
    refusals = [lambda: QAChain(RecordingSearch([]), ScriptedGenerator([]), k=0),
                lambda: Retriever(None, None).search("tides", k=0),
                lambda: Collection.open(settings, "k-rule").search("tides", k=0)]
    for refuse in refusals:
        with pytest.raises(RagError) as caught:
            refuse()
        assert str(caught.value) == str(home.value)


def test_the_question_length_rule_lives_in_limits(settings):
    from rag.collection import Collection
    from rag.limits import MAX_QUESTION_CHARS, check_text
    from ui.search import check_query

    long = "t" * (MAX_QUESTION_CHARS + 1)
    assert check_text("query", "t" * MAX_QUESTION_CHARS)
    with pytest.raises(RagError) as home:
        check_text("question", long)
    with pytest.raises(RagError) as typed:
        check_query(long, "question")
    assert str(typed.value) == str(home.value)
    with pytest.raises(RagError, match=f"the limit is {MAX_QUESTION_CHARS:,}"):
        Collection.open(settings, "question-rule").search(long)


def test_the_chunk_size_lives_in_chunking():
    from rag.chains.outline import PASSAGE_CHARS
    from rag.chunking import CHUNK_OVERLAP, CHUNK_SIZE, split_text
    from rag.settings import load_settings

    settings = load_settings(environ={})
    assert (settings.chunk_size, settings.chunk_overlap) == (CHUNK_SIZE, CHUNK_OVERLAP)
    assert PASSAGE_CHARS == CHUNK_SIZE
    assert max(b - a for a, b in split_text("word " * 1000)) <= CHUNK_SIZE


def test_notes_are_picked_by_their_kind_not_their_words():
    from types import SimpleNamespace

    from rag.chains.base import NOTE, REWRITE, Note
    from ui.chat_format import done_note, standalone_md

    refused = Note("The follow-up was searched with the previous question's subject.", REWRITE)
    other = Note("The citation [1] was added: a rewrite of nothing.", NOTE)
    result = SimpleNamespace(question="Why?", standalone_question="Why?", notes=[refused, other], abstained=False,
                             prompt_tokens=5, retrieved=[{}], sources=[{}], timings={"total_s": 1.0})
    assert "previous question's subject" in standalone_md(result)
    shown = done_note("llamacpp", result)
    assert "previous question's subject" not in shown and "a rewrite of nothing" in shown


def test_the_stopwords_of_keyword_search_live_in_text():
    from rag.store import STOPWORDS as store_stopwords
    from rag.store.keyword_index import query_words
    from rag.store.milvus_schema import ANALYZER
    from rag.text import QUERY_STOPWORDS, STOPWORDS
    from ui.escaping import query_terms

    assert store_stopwords is QUERY_STOPWORDS
    assert ANALYZER["filter"][1]["stop_words"] == sorted(QUERY_STOPWORDS)
    assert QUERY_STOPWORDS < STOPWORDS  # content words drop more; a keyword search still ranks by those
    query = "why do the tides of the moon rise"
    assert query_words(query) == ["why", "tides", "moon", "rise"]
    assert sorted(query_terms(query)) == sorted(query_words(query))


def test_untrusted_text_is_escaped_by_ui_escaping_alone():
    """Every renderer escapes with ui.escaping, the one module a security review reads; none on its own."""
    from pathlib import Path

    ui = Path(__file__).resolve().parents[1] / "ui"
    own = [p.name for p in ui.glob("*.py") if p.name != "escaping.py"
           and any(call in p.read_text(encoding="utf-8") for call in ("html.escape(", "markupsafe", "bleach"))]
    assert own == []
    assert len((ui / "escaping.py").read_text(encoding="utf-8").splitlines()) < 150


def test_the_score_legend_lives_beside_the_retrievers():
    from rag.retrieval import MODES, SCORE_LEGEND, scores_for
    from ui.escaping import escape_html
    from ui.search_format import scores_legend_html

    for mode in MODES:
        legend = scores_legend_html(mode)
        assert all(escape_html(SCORE_LEGEND[name]) in legend for name, _ in scores_for(mode))
    assert [name for name, _ in scores_for("hybrid")] == ["fused", "dense", "bm25"]


def _modules():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = sorted([*(root / "rag").rglob("*.py"), *(root / "ui").rglob("*.py")])
    names = {}
    for path in files:
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def test_no_module_imports_itself_back_through_others():
    """No import cycle in rag/ or ui/, counting imports made inside functions too."""
    import ast

    modules = _modules()
    imports = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        imports[name] = found & modules.keys()

    def reaches(start, target, seen):
        return any(nxt == target or (nxt not in seen and not seen.add(nxt) and reaches(nxt, target, seen))
                   for nxt in imports[start])

    assert [name for name in modules if reaches(name, name, set())] == []


def test_every_module_reads_in_one_sitting():
    too_long = {name: n for name, path in _modules().items()
                if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert too_long == {}
